"""One validation rule for each kind of number a user gives, used by every ``python -m`` entry point and by the
options inside a source URI (edge.sources.uri).

argparse calls these as ``type=``; a bad value ends in its usual one-line ``error: argument --x: ...`` and exit
code 2, the same for ``--threads 0`` in every command and ``?fps=0`` in every URI.
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


def score(text: str) -> float:
    """A match-score threshold: any finite number (cosines lie in -1..1, S-normalised scores mostly in -10..20)."""
    return _number(text, float, "a number")


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


def setting_values(text: str) -> tuple[str, tuple]:
    """``NAME=V1,V2,...``: a setting and the numbers to try it at (whole numbers stay whole); whether the setting
    exists and takes them, its owner checks."""
    name, _, values = text.partition("=")
    if not name.strip() or not values.strip():
        raise argparse.ArgumentTypeError(f"must be NAME=VALUE[,VALUE...], got {text!r}")
    numbers = tuple(_number(v.strip(), int, "a number") if v.strip().lstrip("-").isdigit()
                    else _number(v.strip(), float, "a number") for v in values.split(","))
    return name.strip(), numbers


MAX_SIDE = 8192        # pixels: above an 8K frame's width, a camera or a scene size is a typo (and gigabytes)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def duration(text: str) -> float:
    """Seconds from "90", "90s", "15m", "24h" or "7d" (positive)."""
    unit = DURATION_UNITS.get(text[-1:].lower())
    value = positive(text[:-1] if unit else text)
    return value * (unit or 1)


def side(text: str) -> int:
    """An image side in pixels: 1 to MAX_SIDE."""
    value = count(text)
    if value > MAX_SIDE:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SIDE} pixels, got {value}")
    return value


def port(text: str) -> int:
    """A TCP port: 1 to 65535."""
    value = count(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port between 1 and 65535, got {value}")
    return value


def whole_numbers(text: str) -> tuple[int, ...]:
    """A comma-separated list of one or more whole numbers >= 0 (seeds)."""
    items = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(items):
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers (e.g. 1,2,3), got {text!r}")
    return tuple(count_or_zero(item) for item in items)


def count_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of one or more whole numbers >= 1 (gallery sizes)."""
    values = whole_numbers(text)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"must be comma-separated whole numbers of at least 1, got {text!r}")
    return values


def choice_of(*choices: int):
    """A whole number among ``choices`` (a camera's flip method)."""
    def parse(text: str) -> int:
        value = count_or_zero(text)
        if value not in choices:
            raise argparse.ArgumentTypeError(f"must be one of {', '.join(map(str, choices))}, got {value}")
        return value
    return parse

