"""Source URIs: their query-string options, typed and checked against the options a source accepts, and the form
of a URI that may be shown (its credentials masked)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse, urlunparse

from edge.base.errors import UserError


def uri_options(uri: str, defaults: dict) -> dict:
    """``scheme://x?a=1&b=2`` -> defaults updated with a and b, each cast to its default's type."""
    options = dict(defaults)
    for key, values in parse_qs(urlparse(uri).query).items():
        if key not in defaults:
            raise UserError(f"unknown option {key!r} in {uri}; valid: {', '.join(sorted(defaults))}")
        kind = type(defaults[key])
        try:
            options[key] = kind(values[-1])
        except ValueError as err:
            raise UserError(f"option {key}={values[-1]!r} in {uri} must be a {kind.__name__}") from err
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
