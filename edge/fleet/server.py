"""Connecting to the fleet's PostgreSQL (psycopg 3, the ``fleet`` extra), with every way it can fail as one line.

A wrong URL, a refused password, an unreachable host, a server older than PostgreSQL 13 and a database without the
fleet's schema each get a sentence that says what to do; a remote server is reached over TLS only.
"""
from __future__ import annotations

from edge.base.errors import UserError
from edge.fleet.schema import MIN_SERVER_VERSION, SCHEMA_VERSION

CONNECT_TIMEOUT_S = 5
LOCAL_HOSTS = ("", "localhost", "127.0.0.1", "::1")
PLAIN_SSLMODES = ("disable", "allow", "prefer")


def psycopg():
    try:
        import psycopg
    except ImportError as err:
        raise UserError("a fleet needs psycopg 3: pip install 'edge-face[fleet]'") from err
    return psycopg


def conninfo_parts(url: str) -> dict:
    try:
        return psycopg().conninfo.conninfo_to_dict(url)
    except psycopg().ProgrammingError as err:
        raise UserError(f"{redacted(url)} is not a PostgreSQL URL ({first_line(err)}); write it as "
                        f"postgresql://USER@HOST:PORT/DATABASE") from err


def redacted(url: str) -> str:
    """The URL without its password, for messages and logs."""
    try:
        parts = psycopg().conninfo.conninfo_to_dict(url)
    except Exception:                       # noqa: BLE001 - a URL that does not parse is shown as "a URL"
        return "the URL given"
    parts.pop("password", None)
    return " ".join(f"{k}={v}" for k, v in parts.items())


def is_remote(parts: dict) -> bool:
    host = str(parts.get("host", ""))
    return not (host in LOCAL_HOSTS or host.startswith("/"))


def connect(url: str, password: str | None = None, autocommit: bool = True, what: str = "the fleet's server"):
    """An open connection, or a UserError saying why not in one line."""
    pg = psycopg()
    parts = conninfo_parts(url)
    if is_remote(parts) and parts.get("sslmode", "prefer") in PLAIN_SSLMODES:
        raise UserError(f"{what} at {parts.get('host')} is remote: connect over TLS (add ?sslmode=verify-full with "
                        f"sslrootcert=CA.pem, or at least sslmode=require)")
    extra = {"password": password} if password else {}
    try:
        conn = pg.connect(url, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S, **extra)
    except pg.OperationalError as err:
        raise UserError(f"cannot connect to {what} ({redacted(url)}): {reason(err)}") from err
    try:
        require_server_version(conn.info.server_version, what)
    except UserError:
        conn.close()
        raise
    return conn


def require_server_version(version: int, what: str) -> None:
    """``version`` as libpq reports it (150018 is 15.18)."""
    if version < MIN_SERVER_VERSION:
        raise UserError(f"{what} runs PostgreSQL {version // 10000}.{version % 10000}; a fleet needs 13 or later")


def reason(err: Exception) -> str:
    text = str(err)
    if "password authentication failed" in text or "no password supplied" in text:
        return ("the password was refused (an admin's comes from the URL, PGPASSWORD or ~/.pgpass; a kiosk's from its "
                "credentials file)")
    if "is not permitted to log in" in text:
        return "this role may not log in (a revoked kiosk: ask the admin for new credentials)"
    if "does not exist" in text and "database" in text:
        return "that database does not exist (createdb it first)"
    if "Connection refused" in text or "could not connect" in text:
        return "nothing answers there (is PostgreSQL running, on that host and port?)"
    return first_line(err)


def first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__


def schema_version(conn) -> int | None:
    """The fleet schema's version in this database; None when it has none."""
    exists = conn.execute("SELECT to_regclass('edge_fleet.meta')").fetchone()[0]
    if exists is None:
        return None
    row = conn.execute("SELECT value FROM edge_fleet.meta WHERE key='schema_version'").fetchone()
    return int(row[0]) if row else None


def require_fleet(conn, url: str) -> None:
    version = schema_version(conn)
    if version is None:
        raise UserError(f"{redacted(url)} holds no fleet: make one with python -m edge fleet init --url URL")
    if version > SCHEMA_VERSION:
        raise UserError(f"the fleet's schema is version {version}, newer than this runtime ({SCHEMA_VERSION}): "
                        f"upgrade the runtime")
