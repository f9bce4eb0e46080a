"""Secrets on disk (API tokens, the gallery's key, the webhook's signing secret): one rule for reading them.

A secret file must be a regular file that only its owner can read or write (0600 or 0400); anything else is
refused in one line that says how to fix it, before a byte of it is used.
"""
from __future__ import annotations

import stat
from pathlib import Path

from edge.base.errors import UserError


def read_private(path: Path, what: str) -> bytes:
    """The bytes of ``path``, a private regular file holding ``what`` (said in the errors)."""
    try:
        info = path.stat()
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read ({err.strerror})") from err
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{what} {path} is not a regular file")
    if info.st_mode & 0o077:
        raise UserError(f"{what} {path} is readable by other users; chmod 600 {path}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise UserError(f"{what} {path} cannot be read ({err.strerror})") from err
