"""Signed bundles: an Ed25519 signature over the sha256 of every file in a bundle, and the keys a board trusts.

``python -m compile ... --sign KEY`` (or ``python -m edge bundle sign DIR --key KEY``) writes ``signature.json``
beside the manifest: the name and sha256 of every other file in the bundle, the signing key's fingerprint, and the
signature over both. A board trusts the public keys in ``$EDGE_FACE_HOME/trusted_keys/*.pub`` (trusting a key is
copying its ``.pub`` file there). ``bundle install``, ``bundle check`` and ``serve`` refuse a bundle that is
unsigned, signed by a key the board does not trust, or whose files are not exactly the signed ones, unless the user
says ``--allow_unsigned``. The TensorRT engine cache (``engines/``) is built on the device and is not signed.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError
from edge.base.paths import trusted_keys_dir
from edge.base.private_files import read_private

SIGNATURE_FILE = "signature.json"
KEY_FILE, PUBLIC_FILE = "signing.key", "signing.pub"
DEVICE_CACHE = "engines"   # edge.runtime.models.ENGINE_CACHE: written on the board, never part of a bundle's files
SIGNATURE_VERSION = 1


@dataclass(frozen=True)
class Trust:
    """What a bundle's signature says: who signed it, or that it runs unsigned because the user allowed it."""

    signed_by: str | None        # the trusted key file's name, None when unsigned
    fingerprint: str | None

    @property
    def allowed_unsigned(self) -> bool:
        return self.signed_by is None

    def describe(self) -> str:
        if self.allowed_unsigned:
            return "UNSIGNED: its files are not authenticated (--allow_unsigned)"
        return f"signed by {self.signed_by} (key {self.fingerprint})"


def make_key_pair(folder: Path) -> tuple[Path, Path]:
    """Writes a new Ed25519 key pair into ``folder``: ``signing.key`` (0600) and ``signing.pub``; refuses to
    replace either."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private, public = folder / KEY_FILE, folder / PUBLIC_FILE
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise UserError(f"{path} exists; a key pair is never overwritten (choose another folder)")
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    descriptor = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                     serialization.PublicFormat.SubjectPublicKeyInfo))
    return private, public


def load_signing_key(path: Path):
    """The Ed25519 private key in ``path`` (a private PEM file written by ``make_key_pair``)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = read_private(path, "the signing key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise UserError(f"the signing key {path} is not an unencrypted PEM private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"the signing key {path} is not an Ed25519 key; make one with python -m edge keygen DIR")
    return key


def _load_public_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as err:
        raise UserError(f"trusted key {path} is not a PEM public key ({err}); remove it or replace it with a "
                        f"signing.pub") from err
    if not isinstance(key, Ed25519PublicKey):
        raise UserError(f"trusted key {path} is not an Ed25519 key; remove it or replace it with a signing.pub")
    return key


def fingerprint(public_key) -> str:
    """The first 16 hex digits of the sha256 of the raw public key: how keys are named in messages."""
    from cryptography.hazmat.primitives import serialization

    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def bundle_files(folder: Path) -> dict[str, str]:
    """Every file of the bundle (its top level, the signature and the device's engine cache left out) -> sha256;
    anything else in it (a subfolder, a link, a device) is refused, since a signature could not cover it."""
    from edge.runtime.manifest import sha256_file

    files = {}
    for path in sorted(folder.iterdir()):
        if path.name in (SIGNATURE_FILE, DEVICE_CACHE):
            continue
        if path.is_symlink() or not path.is_file():
            raise UserError(f"{path} is not a regular file: a bundle holds only files (a signature cannot cover a "
                            f"link or a folder)")
        files[path.name] = sha256_file(path)
    return files


def _message(key: str, files: dict[str, str]) -> bytes:
    return json.dumps({"version": SIGNATURE_VERSION, "key": key, "files": files}, sort_keys=True,
                      separators=(",", ":")).encode()


def sign_bundle(folder: Path, key_path: Path) -> str:
    """Signs every file of the bundle in ``folder`` with the key in ``key_path``; returns the key's fingerprint."""
    key = load_signing_key(key_path)
    name = fingerprint(key.public_key())
    files = bundle_files(folder)
    signature = base64.b64encode(key.sign(_message(name, files))).decode()
    (folder / SIGNATURE_FILE).write_text(json.dumps({"version": SIGNATURE_VERSION, "key": name, "files": files,
                                                     "signature": signature}, indent=1) + "\n")
    return name


def trusted_keys() -> dict[str, tuple[str, object]]:
    """Fingerprint -> (file name, public key) of every key this board trusts; none when the folder is missing (a
    read never makes it)."""
    folder = trusted_keys_dir()
    if not folder.is_dir():
        return {}
    keys = {}
    for path in sorted(folder.glob("*.pub")):
        key = _load_public_key(path)
        keys[fingerprint(key)] = (path.name, key)
    return keys


def verify_bundle(folder: Path, allow_unsigned: bool = False) -> Trust:
    """Who signed the bundle in ``folder`` (a key this board trusts), after checking that its files are exactly
    the signed ones; refuses in one line otherwise, unless ``allow_unsigned`` (then the Trust says so)."""
    from cryptography.exceptions import InvalidSignature

    folder = Path(folder)
    fix = (f"sign it with python -m edge bundle sign {folder} --key KEY (or compile with --sign KEY) and trust the "
           f"key here by copying its signing.pub into {trusted_keys_dir()}/, or pass --allow_unsigned to run it "
           f"unauthenticated")
    if allow_unsigned:
        try:
            return verify_bundle(folder)
        except UserError:
            return Trust(None, None)
    path = folder / SIGNATURE_FILE
    if not path.is_file():
        raise UserError(f"{folder} is not signed (no {SIGNATURE_FILE}): {fix}")
    try:
        signed = json.loads(path.read_text())
        name, files = signed["key"], signed["files"]
        signature = base64.b64decode(signed["signature"], validate=True)
        if signed["version"] != SIGNATURE_VERSION or not isinstance(files, dict):
            raise ValueError(f"version {signed['version']!r}")
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise UserError(f"{path} is not a bundle signature ({type(err).__name__}: {err}): {fix}") from err
    keys = trusted_keys()
    if name not in keys:
        trusted = ", ".join(sorted(f"{file} ({key_name})" for key_name, (file, _) in keys.items())) or "none"
        raise UserError(f"{folder} is signed by key {name}, which this board does not trust (trusted: {trusted}): "
                        f"if you made it, trust the key by copying its signing.pub into {trusted_keys_dir()}/, or "
                        f"pass --allow_unsigned to run it unauthenticated")
    key_file, key = keys[name]
    try:
        key.verify(signature, _message(name, files))
    except InvalidSignature:
        raise UserError(f"{path}: the signature does not verify with trusted key {key_file}: the signature file "
                        f"was altered; install the bundle from its signed original") from None
    actual = bundle_files(folder)
    for file in sorted(set(files) | set(actual)):
        if file not in actual:
            raise UserError(f"{folder}: {file} is signed but missing; install the bundle from its signed original")
        if file not in files:
            raise UserError(f"{folder}: {file} is not covered by the signature (added after signing); remove it or "
                            f"re-sign the bundle")
        if files[file] != actual[file]:
            raise UserError(f"{folder}: {file} was changed after signing (sha256 {actual[file][:12]}, signed "
                            f"{files[file][:12]}); install the bundle from its signed original")
    return Trust(key_file, name)
