"""Progress bars for people, progress lines for logs.

On a terminal this is tqdm's bar. Anywhere else (a log file, journald, CI) a redrawn bar becomes one endless
line of carriage returns, so the same bar is written as a plain line at most every LOG_INTERVAL seconds.
"""
from __future__ import annotations

import re
import sys

from tqdm import tqdm

LOG_INTERVAL = 5.0
CURSOR_MOVES = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")     # nested bars move the cursor up and back: not in a log


class _Lines:
    """A stream for tqdm that turns each redraw into one line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = CURSOR_MOVES.sub("", text).replace("\r", "").rstrip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress_bar(iterable=None, **options) -> tqdm:
    """``tqdm(iterable, **options)`` on a terminal; on anything else, a line every LOG_INTERVAL seconds."""
    if sys.stderr.isatty():
        return tqdm(iterable, **options)
    kept = {k: v for k, v in options.items() if k not in ("dynamic_ncols", "file")}
    return tqdm(iterable, file=_Lines(sys.stderr), mininterval=LOG_INTERVAL, maxinterval=LOG_INTERVAL,
                dynamic_ncols=False, ncols=100, **kept)
