"""API tokens: an admin token (enrol, remove, export) and a read-only one (status, stream, metrics), made on
first start in ``$EDGE_FACE_HOME/tokens.json`` (0600) and compared in constant time."""
from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

from edge.errors import UserError
from edge.private_files import read_private

SCOPES = ("read", "admin")


def load_or_create(path: Path) -> dict[str, str]:
    if path.exists():
        try:
            tokens = json.loads(read_private(path, "the token file"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path} is not valid JSON ({err}); remove it to make new tokens") from err
        if set(tokens) != set(SCOPES):
            raise UserError(f"{path} must hold the tokens {', '.join(SCOPES)}; remove it to make new ones")
        return tokens
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tokens = {scope: secrets.token_urlsafe(24) for scope in SCOPES}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(tokens, handle)
    return tokens


def scope_of(tokens: dict[str, str], presented: str) -> str | None:
    """The scope ``presented`` grants ("admin" also grants "read"), or None."""
    for scope in ("admin", "read"):
        if presented and hmac.compare_digest(tokens[scope], presented):
            return scope
    return None
