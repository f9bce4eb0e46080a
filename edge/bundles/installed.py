"""Bundles installed on a board, switched atomically, with the previous one kept for rollback.

``$EDGE_FACE_HOME/bundles/`` holds each installed bundle in its own folder and two symbolic links, ``current``
and ``previous``. Installing copies the bundle into a staging folder, checks every file against its manifest and
loads its models the way the kiosk will; only then is ``current`` replaced, by renaming a new link over it (one
atomic step: a kiosk starting at any moment sees the old bundle or the new one, never half of either).
"""
from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

from edge.base.errors import UserError
from edge.base.paths import bundles_dir
from edge.runtime.manifest import read_manifest

CURRENT, PREVIOUS = "current", "previous"


def current_bundle() -> Path:
    """The bundle the kiosk runs (the ``current`` link), refused when none is installed."""
    link = bundles_dir() / CURRENT
    if not link.exists():
        raise UserError(f"no bundle installed in {bundles_dir()}: python -m edge bundle install DIR (or pass "
                        f"--bundle DIR)")
    return link


def install(source: Path, check) -> Path:
    """Copies ``source`` in, runs ``check(folder)`` on the copy (it raises to refuse), then switches to it."""
    manifest = read_manifest(source, verify_files=False)            # its board; the copy's files are checked
    root = bundles_dir()
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    target = root / f"{manifest.board}-{stamp}"
    staging = root / f".staging-{stamp}"
    try:
        shutil.copytree(source, staging)                            # a copy cut short by Ctrl+C goes too
        read_manifest(staging)                                      # every file of the copy matches its sha256
        check(staging)                                              # and its models load on this board
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(target)
    old = (root / CURRENT).resolve() if (root / CURRENT).exists() else None
    _point(root / CURRENT, target)
    if old is not None:
        _point(root / PREVIOUS, old)
    return target


def rollback() -> Path:
    """Makes ``previous`` current again (and the current one previous)."""
    root = bundles_dir()
    if not (root / PREVIOUS).exists():
        raise UserError(f"no previous bundle in {root} to roll back to")
    back, now = (root / PREVIOUS).resolve(), (root / CURRENT).resolve()
    _point(root / CURRENT, back)
    _point(root / PREVIOUS, now)
    return back


def _point(link: Path, target: Path) -> None:
    """Points ``link`` at ``target`` in one rename (a new link made beside it, then moved over it)."""
    fresh = link.with_name(f".{link.name}.new")
    if fresh.is_symlink() or fresh.exists():
        fresh.unlink()
    fresh.symlink_to(target.name)
    os.replace(fresh, link)
