"""The fleet key and how it reaches kiosks without the server ever holding it.

Templates on the fleet's server are sealed (edge.gallery.sealing, AES-256-GCM) with one fleet key: a 32-byte file
(0600) on the admin's machine, ``$EDGE_FACE_HOME/fleet/fleet.key``. Each kiosk has an X25519 key pair; its private
half lives only in the kiosk's credentials file, and the server keeps the fleet key wrapped to each kiosk's public
half (an ephemeral X25519 exchange, HKDF-SHA256, AES-256-GCM), which only that kiosk can open. Rotating the key
wraps the new one for every kiosk still in the fleet, so a revoked kiosk never learns it.
"""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from edge.base.errors import UserError
from edge.base.private_files import read_private
from edge.gallery.sealing import KEY_BYTES, NONCE_BYTES, Sealer

WRAP_INFO = b"edge-face fleet key wrap v1"
PUBLIC_BYTES = 32


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def key_id(key: bytes) -> str:
    """Names a fleet key without revealing it (what the server records)."""
    return Sealer(key).fingerprint


def write_private(path: Path, data: bytes) -> None:
    """Writes a new secret file (0600), never over an existing one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def read_key(path: Path) -> bytes:
    key = read_private(path, "the fleet key")
    if len(key) != KEY_BYTES:
        raise UserError(f"{path} is not a fleet key ({len(key)} bytes, not {KEY_BYTES})")
    return key


def new_kiosk_pair() -> tuple[bytes, bytes]:
    """(private, public) raw X25519 keys for a new kiosk."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    private = X25519PrivateKey.generate()
    return _raw_private(private), _raw_public(private.public_key())


def wrap(key: bytes, kiosk_public: bytes) -> bytes:
    """The fleet key sealed to one kiosk's public key: ephemeral public key, nonce, ciphertext and tag."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = _raw_public(ephemeral.public_key())
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(kiosk_public))
    nonce = secrets.token_bytes(NONCE_BYTES)
    return ephemeral_public + nonce + _aead(shared).encrypt(nonce, key, ephemeral_public)


def unwrap(wrapped: bytes, kiosk_private: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    ephemeral_public, nonce = wrapped[:PUBLIC_BYTES], wrapped[PUBLIC_BYTES:PUBLIC_BYTES + NONCE_BYTES]
    shared = X25519PrivateKey.from_private_bytes(kiosk_private).exchange(
        X25519PublicKey.from_public_bytes(ephemeral_public))
    try:
        return _aead(shared).decrypt(nonce, wrapped[PUBLIC_BYTES + NONCE_BYTES:], ephemeral_public)
    except InvalidTag as err:
        raise UserError("the fleet key the server holds for this kiosk does not open with its private key (the "
                        "credentials file is another kiosk's, or the kiosk was added again): ask the admin for "
                        "this kiosk's credentials") from err


def _aead(shared: bytes):
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return AESGCM(HKDF(hashes.SHA256(), KEY_BYTES, None, WRAP_INFO).derive(shared))


def _raw_private(private) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                 serialization.NoEncryption())


def _raw_public(public) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
