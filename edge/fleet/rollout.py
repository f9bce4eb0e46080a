"""A bundle rolled out to a fleet: packed at the desk into one archive the server keeps, unpacked on each kiosk for
its own atomic install and golden check (edge.bundles, called by the kiosk's command through a callback).

A bundle is named by the sha256 of its manifest (which holds every file's sha256), so a kiosk knows whether it runs
the target already; unpacking takes regular files and folders under one root only.
"""
from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

from edge.base.errors import UserError
from edge.runtime.manifest import MANIFEST_NAME, read_manifest

ROOT = "bundle"


def bundle_id(folder: Path) -> str:
    return hashlib.sha256((Path(folder) / MANIFEST_NAME).read_bytes()).hexdigest()


def pack(folder: Path) -> tuple[str, str, bytes]:
    """(id, board, gzip-compressed tar) of a bundle whose every file matches its manifest."""
    manifest = read_manifest(folder)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file() or path.is_dir():
                archive.add(path, arcname=f"{ROOT}/{path.relative_to(folder)}", recursive=False)
    return bundle_id(folder), manifest.board, buffer.getvalue()


def unpack(data: bytes, into: Path) -> Path:
    """The bundle folder unpacked under ``into``; an archive with anything but files and folders under its root
    (a link, a device, an absolute path, a "..") is refused whole."""
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            parts = Path(member.name).parts
            if not (member.isfile() or member.isdir()) or not parts or parts[0] != ROOT or ".." in parts \
                    or Path(member.name).is_absolute():
                raise UserError(f"the rolled-out archive holds {member.name!r}, which is not a bundle's file: refused")
        for member in members:
            target = into / member.name
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return into / ROOT
