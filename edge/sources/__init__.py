"""Frame sources, one factory by URI: a video file, an image folder, ``synthetic://``, ``v4l2:///dev/videoN``,
``rtsp://``, ``csi://N`` (Jetson) and ``picam://N`` (Raspberry Pi).

``read()`` returns a Frame, or None on a timeout; it raises on a fatal error. ``ended`` turns True when a
finite source is exhausted. Sources are context managers and iterate until they end; live cameras sit behind
one newest-frame grabber (``edge.sources.live``) that reconnects with backoff.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from edge.base.errors import UserError
from edge.base.registry import Registry
from edge.sources.base import FrameSource

SOURCES = Registry("source scheme", {
    "file": "edge.sources.files:VideoFileSource",
    "folder": "edge.sources.files:ImageFolderSource",
    "synthetic": "edge.sources.synthetic:SyntheticSource",
    "v4l2": "edge.sources.camera:v4l2_source",
    "rtsp": "edge.sources.camera:rtsp_source",
    "csi": "edge.sources.camera:csi_source",
    "picam": "edge.sources.picam:picam_source",
})


def source_scheme(uri: str) -> str:
    """``synthetic://...`` -> synthetic; a plain path -> file or folder; ``file://`` is a file."""
    scheme = urlparse(uri).scheme
    if scheme and len(scheme) > 1:                       # one letter would be a Windows drive
        return scheme
    path = Path(uri)
    if not path.exists():
        raise UserError(f"source {uri!r} is neither an existing file or folder nor a URI "
                        f"(schemes: {', '.join(SOURCES.names())})")
    return "folder" if path.is_dir() else "file"


def check_source(uri: str) -> None:
    """Refuses in one line, before anything is opened or loaded, a source that is neither a path that exists nor a
    URI of a known scheme."""
    SOURCES.target(source_scheme(uri))


def open_source(uri: str) -> FrameSource:
    source = SOURCES.get(source_scheme(uri))(uri)
    source.open()
    return source
