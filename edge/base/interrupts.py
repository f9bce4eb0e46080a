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
        if target.exists() and not (folder and target.is_dir() and not any(target.iterdir())):
            raise UserError(f"{target} exists; choose a new {'folder' if folder else 'file'} (nothing is written "
                            f"over)")
        blocking = next((p for p in target.parents if p.exists()), None)
        if blocking is not None and not blocking.is_dir():
            raise UserError(f"cannot write {target}: {blocking} is a file, not a folder")
        target.parent.mkdir(parents=True, exist_ok=True)
        if folder:
            partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
        else:
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.partial-", suffix=target.suffix,
                                            dir=target.parent)
            partial = Path(name)
            os.close(handle)
    except OSError as err:              # unwritable, a name too long
        shown = str(target) if len(str(target)) <= 200 else str(target)[:200] + "..."
        raise UserError(f"cannot write {shown}: {err.strerror or err}") from None
    try:
        yield partial
        partial.rename(target)
    except BaseException:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        else:
            partial.unlink(missing_ok=True)
        raise
