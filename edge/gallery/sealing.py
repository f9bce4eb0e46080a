"""Templates encrypted at rest: AES-256-GCM with a key file beside the gallery (``gallery.db.key``, 0600).

A face template is biometric data: a copied database file without its key holds nothing usable. Each blob is a
fresh 12-byte nonce followed by the ciphertext and its tag; a blob altered on disk fails to open.
"""
from __future__ import annotations

import hashlib
import os
import secrets
from pathlib import Path

from edge.base.errors import UserError
from edge.base.private_files import read_private

KEY_BYTES = 32
NONCE_BYTES = 12
CONTEXT = b"edge-face template v1"


class Sealer:
    def __init__(self, key: bytes, path: Path | None = None):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)
        self.path = path             # the key file, named in messages
        # names the key without revealing it: the gallery records it, and refuses any other key
        self.fingerprint = hashlib.sha256(CONTEXT + key).hexdigest()[:16]

    @classmethod
    def for_gallery(cls, gallery: Path, create: bool) -> "Sealer":
        """The gallery's key; made (0600) only with ``create``, else a missing or readable key is refused."""
        path = Path(f"{gallery}.key")
        if not path.exists():
            if not create:
                raise UserError(f"{path} is missing: the gallery's templates cannot be read without it (restore it "
                                f"from your backup, or remove {gallery} and enrol again)")
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(KEY_BYTES))
        key = read_private(path, "the gallery key")
        if len(key) != KEY_BYTES:
            raise UserError(f"{path} is not a gallery key ({len(key)} bytes, not {KEY_BYTES})")
        return cls(key, path)

    def seal(self, plain: bytes) -> bytes:
        nonce = secrets.token_bytes(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, plain, CONTEXT)

    def open(self, blob: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        try:
            return self._aead.decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], CONTEXT)
        except InvalidTag as err:
            raise UserError("a template does not open with this gallery's key (the key was replaced, or the "
                            "database was altered)") from err
