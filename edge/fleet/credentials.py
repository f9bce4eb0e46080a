"""A kiosk's credentials for its fleet: one private JSON file (0600) that ``edge fleet add-kiosk`` writes on the
admin's machine and the kiosk keeps (default ``$EDGE_FACE_HOME/fleet-kiosk.json``): its id, the server's URL with
its own role, that role's password, and the private half of its key pair (edge.fleet.keys)."""
from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError
from edge.base.private_files import read_private
from edge.fleet.keys import write_private

FORMAT = 1
KIOSK_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")


def check_kiosk_id(kiosk: str) -> str:
    if not KIOSK_ID.fullmatch(kiosk or ""):
        raise UserError(f"a kiosk id is 1 to 32 lower-case letters, digits and '-', starting with a letter or digit; "
                        f"not {kiosk!r}")
    return kiosk


def kiosk_role(kiosk: str) -> str:
    """The PostgreSQL role a kiosk logs in as."""
    return "edge_kiosk_" + check_kiosk_id(kiosk).replace("-", "_")


@dataclass(frozen=True)
class KioskCredentials:
    kiosk: str
    url: str                 # libpq connection string with the kiosk's role, no password
    password: str
    private_key: bytes
    path: Path | None = None

    def write(self, path: Path) -> None:
        write_private(path, json.dumps({"format": FORMAT, "kiosk": self.kiosk, "url": self.url,
                                        "password": self.password,
                                        "private_key": base64.b64encode(self.private_key).decode()}).encode())

    @classmethod
    def read(cls, path: Path) -> "KioskCredentials":
        raw = read_private(Path(path), "the kiosk's fleet credentials")
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise ValueError(f"format {data.get('format')!r}, not {FORMAT}")
            private = base64.b64decode(data["private_key"], validate=True)
            found = cls(check_kiosk_id(data["kiosk"]), str(data["url"]), str(data["password"]), private, Path(path))
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as err:
            raise UserError(f"{path} is not a kiosk's fleet credentials file ({type(err).__name__}: {err}); write "
                            f"one with python -m edge fleet add-kiosk") from err
        if len(found.private_key) != 32:
            raise UserError(f"{path}: the kiosk's private key is {len(found.private_key)} bytes, not 32")
        return found
