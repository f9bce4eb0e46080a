"""Presentation-attack clips rendered from photos (and videos) of real people, for liveness checks to be measured on:
``print`` (the photo on paper), ``replay`` (the photo on a phone or tablet) and ``video_replay`` (a video on one),
each held up to the camera by a hand, filmed and stored as an .mp4 with a JSON of its parameters and per-frame truth.

The renderer is the ``synthetic_faces`` package (``synthetic_faces.attacks``), loaded on demand as ``edge``'s
``synthetic://`` source loads it; here photos are found, checked for a face with the packaged detector, and the
clips, their meta files and a summary are written into a folder that appears whole or not at all.
"""
from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.interrupts import check_folder_target, complete_or_absent
from edge.base.paths import refuse_output_over_input
from edge.base.progress import progress_bar
from edge.faces.align import largest
from edge.sources.synthetic import face_renderer

PHOTO_KINDS = ("print", "replay")
VIDEO_KINDS = ("video_replay",)
SUMMARY = "summary.json"


@dataclass(frozen=True)
class AttackOptions:
    images: Path | None
    out: Path
    videos: tuple[Path, ...] = ()
    kinds: tuple[str, ...] = ()           # empty: every kind the given sources allow
    clips_per_photo: int = 4
    seed: int = 0
    width: int = 640
    height: int = 480
    fps: float = 15.0
    seconds: float = 2.0
    max_photos: int = 0                   # 0: every photo
    clips_per_video: int | None = None    # None: clips_per_photo

    @property
    def video_clips(self) -> int:
        return self.clips_per_photo if self.clips_per_video is None else self.clips_per_video


@dataclass
class AttackSummary:
    clips: dict[str, int] = field(default_factory=dict)
    photos_used: int = 0
    videos_used: int = 0
    skipped: dict[str, list[str]] = field(default_factory=lambda: {"unreadable": [], "no_face": []})

    def as_dict(self, options: AttackOptions) -> dict:
        return {"clips": self.clips, "photos_used": self.photos_used, "videos_used": self.videos_used,
                "skipped": {reason: {"count": len(names), "files": names} for reason, names in self.skipped.items()},
                "seed": options.seed, "clips_per_source": options.clips_per_photo,
                "clips_per_video": options.video_clips,
                "size": [options.width, options.height], "fps": options.fps, "seconds": options.seconds}


def chosen_kinds(options: AttackOptions) -> tuple[str, ...]:
    """The kinds to render; a kind whose source was not given is refused."""
    kinds = options.kinds or ((PHOTO_KINDS if options.images else ()) + (VIDEO_KINDS if options.videos else ()))
    unknown = [k for k in kinds if k not in PHOTO_KINDS + VIDEO_KINDS]
    if unknown:
        raise UserError(f"--kinds {','.join(unknown)}: unknown; choose from {', '.join(PHOTO_KINDS + VIDEO_KINDS)}")
    if any(k in PHOTO_KINDS for k in kinds) and options.images is None:
        raise UserError("print and replay clips are rendered from photos: give --images DIR")
    if any(k in VIDEO_KINDS for k in kinds) and not options.videos:
        raise UserError("video_replay clips are rendered from videos: give --videos FILE ...")
    if not kinds:
        raise UserError("nothing to render: give --images DIR, --videos FILE ..., or both")
    return tuple(kinds)


def render_attacks(options: AttackOptions) -> AttackSummary:
    """Writes ``options.out/<kind>/<name>.mp4`` and ``.json`` per clip, and ``summary.json``."""
    kinds = chosen_kinds(options)
    sources = ([options.images] if options.images else []) + list(options.videos)
    for source in sources:
        if not Path(source).exists():
            raise UserError(f"{source} does not exist")
    refuse_output_over_input(options.out, sources)
    check_folder_target(options.out)
    renderer = face_renderer()
    from edge.faces.packaged_detector import load_packaged_detector

    detector = load_packaged_detector()
    summary = AttackSummary(clips={kind: 0 for kind in kinds})
    shape = renderer.ClipShape(options.width, options.height, options.fps, max(1, round(options.seconds * options.fps)))
    with complete_or_absent(options.out, folder=True) as partial:
        photo_kinds = [k for k in kinds if k in PHOTO_KINDS]
        if photo_kinds:
            _render_photos(options, photo_kinds, renderer, detector, shape, partial, summary)
        if VIDEO_KINDS[0] in kinds:
            _render_videos(options, renderer, detector, shape, partial, summary)
        (partial / SUMMARY).write_text(json.dumps(summary.as_dict(options), indent=2) + "\n")
    return summary


def _render_photos(options, kinds, renderer, detector, shape, partial: Path, summary: AttackSummary) -> None:
    root = Path(options.images)
    paths = list_images(root)
    if 0 < options.max_photos < len(paths):
        chosen = np.random.default_rng(options.seed).choice(len(paths), options.max_photos, replace=False)
        paths = [paths[i] for i in sorted(chosen)]
    if not paths:
        raise UserError(f"{root} holds no images (.jpg, .png, .pgm, ...)")
    for path in progress_bar(paths, desc="attacks", unit="photo"):
        name = path.relative_to(root).as_posix()
        photo = read_image(path)
        if photo is None:
            summary.skipped["unreadable"].append(name)
            continue
        found = largest(detector.detect(photo))
        if found is None:
            summary.skipped["no_face"].append(name)
            continue
        face = renderer.Face(found.box, found.keypoints)
        summary.photos_used += 1
        for kind in kinds:
            for number in range(options.clips_per_photo):
                clip = renderer.AttackClip(kind, (photo.shape[1], photo.shape[0]), face,
                                           clip_seed(options.seed, kind, name, number), shape)
                _write_clip(partial / kind / f"{_flat(name)}_{number:02d}", clip, name, lambda i: photo,
                            lambda i: face)
                summary.clips[kind] += 1
    if not summary.photos_used:
        raise UserError(f"no face found in any of the {len(paths)} images under {root} "
                        f"({len(summary.skipped['unreadable'])} unreadable); nothing written")


def _render_videos(options, renderer, detector, shape, partial: Path, summary: AttackSummary) -> None:
    kind = VIDEO_KINDS[0]
    for video in progress_bar(list(options.videos), desc="video attacks", unit="video"):
        name = Path(video).name
        frames = _read_video(Path(video))
        if not frames:
            summary.skipped["unreadable"].append(str(video))
            continue
        rendered = 0
        for number in range(options.video_clips):
            seed = clip_seed(options.seed, kind, str(video), number)
            start = int(np.random.default_rng(seed).integers(len(frames)))
            window = [frames[(start + i) % len(frames)] for i in range(shape.frames)]
            faces = [_face(renderer, largest(detector.detect(frame))) for frame in window]
            known = [f for f in faces if f is not None]
            if not known:
                continue
            typical = renderer.Face(np.median([f.box for f in known], axis=0), np.median([f.points for f in known], 0))
            size = (window[0].shape[1], window[0].shape[0])
            clip = renderer.AttackClip(kind, size, typical, seed, shape)
            _write_clip(partial / kind / f"{_flat(name)}_{number:02d}", clip, str(video), window.__getitem__,
                        faces.__getitem__)
            summary.clips[kind] += 1
            rendered += 1
        if rendered:
            summary.videos_used += 1
        else:
            summary.skipped["no_face"].append(str(video))


def _face(renderer, detection):
    return None if detection is None else renderer.Face(detection.box, detection.keypoints)


def _read_video(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            frames.append(frame)
    finally:
        capture.release()
    return frames


def _write_clip(stem: Path, clip, source: str, content_at, face_at) -> None:
    """``stem``.mp4 (OpenCV's mp4v) and ``stem``.json: the clip's parameters and each frame's truth."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    shape = clip.shape
    writer = cv2.VideoWriter(str(stem.with_suffix(".mp4")), cv2.VideoWriter_fourcc(*"mp4v"), shape.fps,
                             (shape.width, shape.height))
    if not writer.isOpened():
        raise UserError(f"OpenCV cannot write the video {stem.with_suffix('.mp4')} (its build lacks mp4v)")
    truth = []
    try:
        for frame, frame_truth in clip.render(content_at, face_at):
            writer.write(frame)
            truth.append(frame_truth)
    finally:
        writer.release()
    meta = {"type": clip.kind, "source": source, **clip.meta(), "per_frame": truth}
    stem.with_suffix(".json").write_text(json.dumps(meta) + "\n")


def clip_seed(seed: int, kind: str, source: str, number: int) -> int:
    """One clip's seed: the same for the same run seed, kind, source and number on every machine."""
    return zlib.crc32(f"{seed}:{kind}:{source}:{number}".encode())


def _flat(name: str) -> str:
    """A relative path as one file name: ``s1/1.pgm`` -> ``s1__1``."""
    return Path(name).with_suffix("").as_posix().replace("/", "__")
