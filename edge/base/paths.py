"""Where the kiosk keeps its files (the one place each path is built), and the rule that no command writes over
what it reads.

The gallery holds biometric data. Its home is ``$EDGE_FACE_HOME/gallery.db``, by default
``$XDG_DATA_HOME/edge-face`` (``~/.local/share/edge-face``); the systemd service sets ``EDGE_FACE_HOME`` to its
state directory. The folder is made private (0700) and the database file 0600, and only enrolment creates it.
"""
from __future__ import annotations

import os
from pathlib import Path

from edge.base.errors import UserError

GALLERY_FILE = "gallery.db"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
BOARD_DIR = PROJECT_ROOT / "board_configs"                    # the shipped board configs
PACKAGED_PROFILES = BOARD_DIR / "profiles"                    # measured board profiles shipped with them


def home() -> Path:
    """The kiosk's data folder (not created here); a file in its place is refused in one line."""
    if os.environ.get("EDGE_FACE_HOME"):
        folder = Path(os.environ["EDGE_FACE_HOME"]).expanduser()
    else:
        data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
        folder = Path(data).expanduser() / "edge-face"
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{folder} (EDGE_FACE_HOME, the kiosk's data folder) is a file, not a folder")
    return folder


def default_gallery() -> Path:
    return home() / GALLERY_FILE


def tokens_file() -> Path:
    """The API's tokens (edge.kiosk.tokens), made on the first ``edge serve``."""
    return home() / "tokens.json"


def trusted_keys_dir() -> Path:
    """The public keys whose signed bundles this board runs (edge.bundles.signing)."""
    return home() / "trusted_keys"


def bundles_dir() -> Path:
    """Installed bundles and the ``current`` and ``previous`` links (edge.bundles.installed)."""
    return home() / "bundles"


def fleet_dir() -> Path:
    """A fleet admin's files (edge.fleet.admin): the fleet key and the server's URL."""
    return home() / "fleet"


def kiosk_credentials_file() -> Path:
    """This kiosk's credentials for its fleet (edge.fleet.credentials), copied here from the admin's machine."""
    return home() / "fleet-kiosk.json"


def profiles_dir() -> Path:
    """Board profiles measured on this board (edge.runtime.board_profile)."""
    return home() / "profiles"


def refuse_output_over_input(output: str | Path, inputs: list[str | Path], flag: str = "--out") -> None:
    """An output that is, holds or lies inside an input would overwrite or litter the user's files: refused."""
    target = Path(output).expanduser().resolve()
    for source in inputs:
        original = Path(source).expanduser().resolve()
        if target == original or original in target.parents or target in original.parents:
            relation = "is" if target == original else ("lies inside" if original in target.parents else "holds")
            raise UserError(f"{flag} {output} {relation} the input {source}: it would overwrite or mix with your "
                            f"files; choose a path outside it")
