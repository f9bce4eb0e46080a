"""A throwaway PostgreSQL server for the fleet's benchmark and tests: Debian's ``postgresql`` binaries, a cluster made
by ``initdb`` in a temporary folder, on 127.0.0.1 and a free port, with password (SCRAM) logins.

``initdb`` refuses to run as root (CI runs as root): as root the cluster belongs to the ``postgres`` user (made by
Debian's package; ``nobody`` otherwise) and every server command runs as that user.
"""
from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from edge.base.errors import UserError

ADMIN = "fleet_admin"


def postgres_bin(tool: str) -> str:
    """A PostgreSQL server tool: on PATH, else in Debian's /usr/lib/postgresql/<version>/bin (the newest)."""
    found = shutil.which(tool) or next(iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"),
                                                   key=lambda p: int(Path(p).parts[-3]), reverse=True)), None)
    if found is None:
        raise UserError(f"PostgreSQL's {tool} is not installed: apt-get install postgresql")
    return found


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class LocalPostgres:
    def __init__(self):
        # in the system's temporary folder: a folder of root's (0700) would keep the server's user out
        self.root = Path(tempfile.mkdtemp(prefix="edge-fleet-pg-"))
        self.data, self.log = self.root / "data", self.root / "server.log"
        self.port = free_port()
        self.password = secrets.token_urlsafe(16)
        self._user = None
        if os.geteuid() == 0:
            name = "postgres" if _user_exists("postgres") else "nobody"
            self._user = name
            entry = pwd.getpwnam(name)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self.root.chmod(0o700)
        password_file = self.root / "pw"
        password_file.write_text(self.password)
        if self._user:
            os.chown(password_file, pwd.getpwnam(self._user).pw_uid, -1)
        self._run(postgres_bin("initdb"), "-D", str(self.data), "-U", ADMIN, "--auth-local=trust",
                  "--auth-host=scram-sha-256", f"--pwfile={password_file}", "-E", "UTF8", "--no-sync")
        password_file.unlink()

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", self._user, "--"] if self._user else []
        done = subprocess.run(prefix + list(command), capture_output=True, text=True, cwd=self.root)
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): {' / '.join(tail)}")

    def start(self) -> "LocalPostgres":
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")
        return self

    def stop(self) -> None:
        self._run(postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def url(self, user: str = ADMIN, database: str = "postgres") -> str:
        """A libpq URL for ``user`` (the password goes separately, or in PGPASSWORD)."""
        return f"postgresql://{user}@127.0.0.1:{self.port}/{database}"

    def admin_url(self) -> str:
        return f"postgresql://{ADMIN}:{self.password}@127.0.0.1:{self.port}/postgres"

    def remove(self) -> None:
        try:
            self.stop()
        except RuntimeError:
            pass                                  # stopped already
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.remove()


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False
