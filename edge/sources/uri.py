"""Query-string options of a source URI, typed and checked against the options a source accepts."""
from __future__ import annotations

from urllib.parse import parse_qs, urlparse

from edge.errors import UserError


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
