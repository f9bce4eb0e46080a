"""Ctrl+C and SIGTERM end every command the same way: one line on stderr, exit code 130, never a traceback; and
what the command was writing is either complete or absent (``complete_or_absent``), never half there.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from edge.base.errors import UserError

INTERRUPTED = 130          # the shell's code for a command ended by SIGINT


def stop_on_sigterm() -> Callable | int | None:
    """SIGTERM (systemd's stop, ``kill``) raises KeyboardInterrupt in the main thread, so it unwinds exactly like
    Ctrl+C: ``finally`` blocks clean up. Returns the handler it replaced (None off the main thread, where Python
    cannot set one)."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


def interruptible(command: str, body: Callable[[], int]) -> int:
    """``body()``'s exit code; on Ctrl+C or SIGTERM, one line naming ``command`` and 130."""
    previous = stop_on_sigterm()
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{command}: interrupted; stopped, and nothing it was writing is left half-written", file=sys.stderr)
        return INTERRUPTED
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def complete_or_absent(target: str | Path, folder: bool = False) -> Iterator[Path]:
    """A temporary path beside ``target`` to write into (a file, or with ``folder`` a folder); it becomes ``target``
    in one rename when the block ends normally, and is removed when it ends any other way (an error, Ctrl+C).
    ``target`` must not exist yet: nothing is written over."""
    target = Path(target)
    try:
        if not (folder and target.is_dir() and not any(target.iterdir())):      # an empty folder may be filled
            refuse_existing(target, "folder" if folder else "file")
        make_folder(target.parent)
        if folder:
            partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        else:
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.partial-", suffix=target.suffix,
                                            dir=target.parent)
            partial = Path(name)
            os.close(handle)
    except OSError as err:              # unwritable, a name too long
        raise UserError(f"cannot write {_shown(target)}: {err.strerror or err}") from None
    try:
        yield partial
        partial.rename(target)
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise


def refuse_existing(target: str | Path, what: str, flag: str = "") -> Path:
    """The one refusal of an output that already exists (``flag``: the option that named it, for the message)."""
    target = Path(target)
    if target.exists():
        named = f"{flag} {target}" if flag else str(target)
        raise UserError(f"{named} exists; choose a new {what} (nothing is written over)")
    return target


def check_folder_target(folder: str | Path) -> Path:
    """Refuses, before any work, a folder to write into that a file stands in the way of (the folder itself or one
    above it); creates nothing."""
    folder = Path(folder)
    try:
        blocking = next((p for p in (folder, *folder.parents) if p.exists()), None)
    except OSError as err:
        raise UserError(f"cannot write into {_shown(folder)}: {err.strerror or err}") from None
    if blocking is not None and not blocking.is_dir():
        raise UserError(f"cannot write into {_shown(folder)}: {blocking} is a file, not a folder")
    return folder


def check_file_target(path: str | Path) -> Path:
    """Refuses, before any work, a file to write that is an existing folder or has a file in the way above it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a folder; give the file to write (e.g. {path / 'model.pt'})")
    check_folder_target(path.parent)
    return path


def make_folder(folder: str | Path) -> Path:
    """``folder`` and its parents, made where missing; a file in the way, or a place that cannot be written, is one
    line."""
    folder = check_folder_target(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot write into {_shown(folder)}: {err.strerror or err}") from None
    return folder


def _shown(path: Path) -> str:
    """A path as an error line shows it: cut short when a user gave a name thousands of characters long."""
    return str(path) if len(str(path)) <= 200 else str(path)[:200] + "..."
