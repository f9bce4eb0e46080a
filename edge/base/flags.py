"""One validation rule for each kind of command-line number, used by every ``python -m`` entry point.

argparse calls these as ``type=``; a bad value ends in its usual one-line ``error: argument --x: ...`` and exit
code 2, the same for ``--threads 0`` in every command.
"""
from __future__ import annotations

import argparse
import math
import sys


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def count(text: str) -> int:
    """A whole number >= 1: threads, frames, images, epochs, repetitions."""
    value = _number(text, int, "a whole number of at least 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {value}")
    return value


def count_or_zero(text: str) -> int:
    """A whole number >= 0, where 0 means none or no limit (said in each flag's help)."""
    value = _number(text, int, "a whole number of at least 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, got {value}")
    return value


def rate(text: str) -> float:
    """A probability strictly between 0 and 1: false-accept rates, shares."""
    value = _number(text, float, "a number between 0 and 1")
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (exclusive), got {value}")
    return value


def cosine(text: str) -> float:
    """A cosine-similarity threshold, between -1 and 1."""
    value = _number(text, float, "a number between -1 and 1")
    if not -1 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between -1 and 1, got {value}")
    return value


def add_renamed_rate(parser: argparse.ArgumentParser, name: str, old: str, **options) -> None:
    """A rate flag ``name`` that replaced ``old``: the old spelling still works for one release, saying so in one
    line on stderr."""
    dest = name.lstrip("-")
    parser.add_argument(name, type=rate, dest=dest, **options)

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):
            print(f"warning: {old} is deprecated and goes in the next release; use {name}", file=sys.stderr)
            setattr(namespace, dest, values)
    parser.add_argument(old, type=rate, dest=dest, action=Renamed, help=argparse.SUPPRESS)


def positive(text: str) -> float:
    """A finite number above 0: learning rates, seconds, scales, margins."""
    value = _number(text, float, "a number above 0")
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value
