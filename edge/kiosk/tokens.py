"""API tokens: an admin token (enrol, remove, export) and a read-only one (status, stream, metrics), made on
first start in ``$EDGE_FACE_HOME/tokens.json`` (0600) and compared in constant time."""
from __future__ import annotations

import hmac
import json
import os
import secrets
from pathlib import Path

from edge.base.errors import UserError
from edge.base.private_files import read_private

SCOPES = ("read", "admin")
MIN_TOKEN_CHARS = 16


def load_or_create(path: Path) -> dict[str, str]:
    if path.exists():
        try:
            tokens = json.loads(read_private(path, "the token file"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise UserError(f"{path} is not valid JSON ({err}); remove it to make new tokens") from err
        if not isinstance(tokens, dict) or set(tokens) != set(SCOPES):
            raise UserError(f"{path} must hold the tokens {', '.join(SCOPES)}; remove it to make new ones")
        for scope, token in tokens.items():
            if not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or not token.isascii():
                raise UserError(f"{path}: the {scope} token must be at least {MIN_TOKEN_CHARS} ASCII characters; "
                                f"remove the file to make new tokens")
        return tokens
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tokens = {scope: secrets.token_urlsafe(24) for scope in SCOPES}
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(tokens, handle)
    return tokens


def scope_of(tokens: dict[str, str], presented: str) -> str | None:
    """The scope ``presented`` grants ("admin" also grants "read"), or None."""
    offered = presented.encode("utf-8", "replace")      # compared as bytes: any text a client sends is a no
    for scope in ("admin", "read"):
        if presented and hmac.compare_digest(tokens[scope].encode(), offered):
            return scope
    return None
