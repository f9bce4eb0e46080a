"""systemd integration: readiness and watchdog keep-alives over ``$NOTIFY_SOCKET``, and the service unit.

The kiosk tells systemd it is ready once its models are loaded and its camera delivers, then sends a keep-alive
at most every half ``WatchdogSec`` while its frame loop makes progress; waiting for a lost camera counts as
progress while the grabber keeps trying, a hung loop does not, and systemd restarts it. Outside systemd (no
``$NOTIFY_SOCKET``) every call does nothing.
"""
from __future__ import annotations

import logging
import os
import shlex
import socket
import sys
import time
from pathlib import Path

from edge.base.errors import UserError

log = logging.getLogger(__name__)
SERVICE_USER = "edge-face"
STATE_DIR = "/var/lib/edge-face"
WATCHDOG_S = 30


class Notifier:
    def __init__(self, environ: dict | None = None, clock=time.monotonic):
        """``clock`` (monotonic) spaces the keep-alives."""
        environ = os.environ if environ is None else environ
        address = environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address   # abstract namespace
        self._interval = int(environ.get("WATCHDOG_USEC", "0")) / 2e6      # seconds between keep-alives
        self._last = 0.0
        self._clock = clock

    @property
    def active(self) -> bool:
        return bool(self._address)

    def _send(self, message: str) -> None:
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)          # a notification must never stall the frame loop
            try:
                sock.connect(self._address)
                sock.sendall(message.encode())
            except (BlockingIOError, ConnectionRefusedError, FileNotFoundError):
                pass                         # systemd is busy or gone: the next keep-alive tries again

    def ready(self, status: str) -> None:
        self._send(f"READY=1\nSTATUS={status}")

    def alive(self, status: str | None = None) -> None:
        """A keep-alive (rate-limited to half the watchdog period), with an optional status line."""
        now = self._clock()
        if self._interval and now - self._last >= self._interval:
            self._send("WATCHDOG=1" + (f"\nSTATUS={status}" if status else ""))
            self._last = now

    def stopping(self) -> None:
        self._send("STOPPING=1")


def watched_frames(source, notifier: Notifier, stop=None):
    """Frames from ``source`` until it ends (or ``stop``, an Event, is set), feeding the watchdog: a keep-alive
    per frame, and while a live camera's read times out, one only while its grabber is still working. A read
    that timed out yields None, so the caller can end what must not span the gap (the kiosk's visits)."""
    while not source.ended and not (stop is not None and stop.is_set()):
        frame = source.read()
        if frame is None:
            if source.ended:
                return
            if source.working():
                notifier.alive("waiting for the camera")
            yield None
            continue
        notifier.alive()
        yield frame


def unit_text(board: str, bundle: Path, source: str, python: str = sys.executable, user: str = SERVICE_USER,
              fleet: Path | None = None) -> str:
    """A ``Type=notify`` unit running ``edge serve`` on ``board``: a dedicated user, its state under /var/lib/edge-face
    (the gallery's home, 0700), restart on failure with a start limit (a fleet's rollout exits 75 to be started on
    its new bundle), and the watchdog; with ``fleet``, the kiosk's fleet credentials."""
    command = " ".join(unit_word(word) for word in [python, "-m", "edge", "serve", "--bundle", str(bundle),
                                                     "--source", source,
                                                     *(["--fleet", str(fleet)] if fleet else [])])
    return f"""[Unit]
Description=edge-face kiosk on {board}
After=network-online.target
Wants=network-online.target
StartLimitIntervalSec=300
StartLimitBurst=5

[Service]
Type=notify
NotifyAccess=main
User={user}
Group={user}
SupplementaryGroups=video
Environment=EDGE_FACE_HOME={STATE_DIR}
Environment=PYTHONUNBUFFERED=1
StateDirectory=edge-face
StateDirectoryMode=0700
WorkingDirectory={STATE_DIR}
UMask=0077
ExecStart={command}
Restart=on-failure
RestartSec=5
WatchdogSec={WATCHDOG_S}
TimeoutStartSec=120
TimeoutStopSec=30
KillSignal=SIGTERM
NoNewPrivileges=true
ProtectSystem=strict
ProtectHome=read-only
PrivateTmp=true

[Install]
WantedBy=multi-user.target
"""


def unit_word(word: str) -> str:
    """One argument of ExecStart= as systemd reads it: single-quoted when it needs quoting, with systemd's own
    specifiers (``%``) and variable expansion (``$``) escaped; what a unit cannot hold safely is refused."""
    bad = sorted({c for c in word if c in "'\\\"" or ord(c) < 32 or ord(c) == 127})
    if bad:
        raise UserError(f"{word!r} holds {', '.join(map(repr, bad))}, which a systemd unit cannot carry safely in "
                        f"ExecStart=; give the service a path or URI without them")
    escaped = word.replace("%", "%%").replace("$", "$$")
    return escaped if escaped and shlex.quote(escaped) == escaped else f"'{escaped}'"


def write_unit(out: Path, board: str, bundle: Path, source: str, fleet: Path | None = None) -> Path:
    """Writes the unit to ``out`` (refusing to overwrite a different file); the bundle must be a readable
    folder, written as an absolute path since the service runs elsewhere, its links kept as they are."""
    if not (bundle / "manifest.json").is_file():
        raise UserError(f"{bundle} is not a bundle (no manifest.json): make one with python -m compile --target "
                        f"{board}")
    # absolute, but links kept: a unit for bundles/current follows every later install and rollback
    bundle = Path(os.path.abspath(bundle))
    for what, path in (("the bundle", bundle), ("the Python", Path(sys.executable))):
        if path == Path("/tmp") or Path("/tmp") in path.parents:
            log.warning("%s is under /tmp (%s), which the service does not see (PrivateTmp=true): move it to a "
                        "lasting place before installing the unit", what, path)
    text = unit_text(board, bundle, source, fleet=fleet)
    if out.exists() and out.read_text() != text:
        raise UserError(f"{out} exists and differs; remove it or choose another --out")
    out.write_text(text)
    return out
