"""Source URIs: their query-string options, each read by the same rule as a command-line number of its kind
(edge.base.flags), and the form of a URI that may be shown (its credentials masked)."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from urllib.parse import parse_qs, urlparse, urlunparse

from edge.base.errors import UserError

# option -> (its value when the URI leaves it out, the rule that reads a given value: a edge.base.flags function)
OptionTable = dict[str, tuple[object, Callable[[str], object]]]


def uri_options(uri: str, table: OptionTable) -> dict:
    """``scheme://x?a=1&b=2`` -> every option of ``table``: its default, or the URI's value read by its rule. An
    unknown option, an empty value (``seeds=``) or a value its rule refuses is a one-line UserError."""
    options = {key: default for key, (default, _) in table.items()}
    for key, values in parse_qs(urlparse(uri).query, keep_blank_values=True).items():
        if key not in table:
            raise UserError(f"unknown option {key!r} in {redact(uri)}; valid: {', '.join(sorted(table))}")
        try:
            options[key] = table[key][1](values[-1])
        except argparse.ArgumentTypeError as err:
            raise UserError(f"option {key}={values[-1]!r} in {redact(uri)} {err}") from None
    return options


def redact(uri: str) -> str:
    """The URI with the password of its user part masked (``rtsp://door:***@camera/stream``): the one form of a
    source that logs, statuses, the page and the event log ever show."""
    try:
        parts = urlparse(uri)
        password = parts.password
    except ValueError:                  # not parseable as a URL (a bad port): show nothing of its user part
        return uri.split("@", 1)[-1] if "@" in uri else uri
    if password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunparse(parts._replace(netloc=f"{user}:***@{host}"))
