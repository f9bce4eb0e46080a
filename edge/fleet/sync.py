"""A kiosk's replica kept in step with the fleet's server, both ways (``edge fleet sync``, and a thread of
``edge serve --fleet``).

One round: erasures first (a kiosk back from offline forgets the people erased meanwhile before anything else),
then the kiosk reports itself (which also refuses a kiosk id used by a second gallery), sends its outbox (changes
made here, each keyed by kiosk and local number, so a resend is recorded once), sends its decisions (keyed the same
way), and applies the server's changes after the last one it applied, in batches, each in one SQLite transaction
with the number it reaches. A gap in the sequence stops the round with nothing of it applied. Between rounds the
kiosk waits on LISTEN/NOTIFY, and on its own outbox and log; a lost server is retried with a capped backoff while the
kiosk goes on deciding from its replica, for at most ``max_replica_age_s`` (after that a named visit opens no door).
"""
from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.fleet.access import door_allows, local_now
from edge.fleet.admin import template_json
from edge.fleet.credentials import KioskCredentials
from edge.fleet.rollout import unpack
from edge.fleet.keys import unwrap
from edge.fleet.schema import CHANNEL
from edge.fleet.server import connect, first_line, psycopg, require_fleet
from edge.gallery.sealing import Sealer
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.sqlite_replica import EVENT_COLUMNS, Person, SqliteReplica
from edge.gallery.store import EmbeddingKey

log = logging.getLogger(__name__)
BATCH = 2000                     # changes applied per SQLite transaction
EVENT_BATCH = 500
WAIT_S = 0.5                     # how long a quiet round waits for a notification before it looks at the outbox
HEARTBEAT_S = 10.0               # a quiet kiosk still reports (last seen, replica age) this often
BACKOFF_S = (0.5, 10.0)          # first and longest wait before reconnecting to a lost server
STALE_KEY = "EF001"
NOT_PEOPLE = ("policy", "forget_visitor")   # changes of the sequence that name no person


@dataclass
class SyncState:
    online: bool = False
    error: str = ""
    rounds: int = 0
    applied: int = 0
    pending: int = 0
    erased: int = 0
    last_round_s: float = field(default=0.0)


class FleetSync:
    def __init__(self, credentials: KioskCredentials, gallery: Path, max_replica_age_s: float = 86400.0,
                 facts=lambda: {}, installer=None):
        """``gallery``: the kiosk's own SQLite gallery, opened here on a connection of its own (the kiosk's loop sees
        each applied batch as a change and reloads); ``facts``: the kiosk's bundle (its name, ``bundle_id`` and
        ``board``), liveness and note for ``report``; ``installer(folder) -> str``: installs a bundle rolled out to
        this kiosk's board with the board's own checks (raises UserError to refuse it; None: this kiosk runs a bundle
        it was given, and takes no rollout)."""
        psycopg()                                  # a kiosk without the fleet extra is told at start, in one line
        self.credentials = credentials
        self.gallery = SqliteGallery(gallery)
        self.replica = SqliteReplica(self.gallery)
        try:
            self.replica.attach(credentials.kiosk)
        except UserError:
            self.gallery.close()
            raise
        self.max_replica_age_s = max_replica_age_s
        self.facts, self.installer = facts, installer
        self.rollout_state: str | None = None
        self._rollout_tried: str | None = None
        self.state = SyncState(applied=self.replica.applied())
        self._synced_at = self.replica.synced_at()
        self.policy = self.replica.policy()           # door rules and settings, as last applied
        self._conn = None
        self._sealer: Sealer | None = None
        self._lock = threading.Lock()              # one round at a time on the one connection

    def close(self) -> None:
        self._disconnect()
        self.gallery.close()

    # -- the replica's age: the one rule for whether a named visit may still open a door --

    def replica_age_s(self) -> float:
        """Seconds since the replica was last known to hold every change of the server (infinite: never); read
        without the round's lock, so the kiosk's loop never waits on the network."""
        synced = self._synced_at
        return float("inf") if synced is None else max(0.0, time.time() - synced)

    def settings(self) -> dict:
        """The fleet's settings (edge.fleet.access), as last applied here."""
        return self.policy.get("settings", {})

    def max_age_s(self) -> float:
        """The fleet's max_replica_age_s when it sets one, else this kiosk's --max_replica_age."""
        return float(self.settings().get("max_replica_age_s", self.max_replica_age_s))

    def barred(self, groups=frozenset()) -> str:
        """Why no door may open here now for a named person in ``groups`` ("" when it may)."""
        if self.replica_age_s() > self.max_age_s():
            return "replica too old"
        rules = self.policy.get("doors", {}).get(self.credentials.kiosk)
        if rules is None:
            return ""
        try:
            now = local_now(self.settings())
        except UserError as err:                     # the fleet's time zone unknown here: rules cannot be read
            log.error("fleet: %s; this door's rules keep it shut", err)
            return "not allowed here now"
        return "" if door_allows(rules, groups, now) else "not allowed here now"

    def status(self) -> dict:
        age = self.replica_age_s()
        return {"kiosk": self.credentials.kiosk, "online": self.state.online, "error": self.state.error,
                "applied": self.state.applied, "pending": self.state.pending,
                "replica_age_s": None if age == float("inf") else round(age, 1),
                "max_replica_age_s": self.max_age_s(),
                "doors": f"replica too old (over {self.max_age_s():.0f} s)" if age > self.max_age_s()
                else "open on named visits",
                "rules": self.policy.get("doors", {}).get(self.credentials.kiosk)}

    # -- one round --

    def _connect(self):
        if self._conn is None or self._conn.closed:
            conn = connect(self.credentials.url, self.credentials.password, what=f"the fleet's server (kiosk "
                                                                                  f"{self.credentials.kiosk})")
            try:
                require_fleet(conn, self.credentials.url)
                conn.execute(f"LISTEN {CHANNEL}")
            except BaseException:
                conn.close()
                raise
            self._conn, self._sealer = conn, None
        return self._conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg().Error:
                pass
        self._conn = None

    def fleet_sealer(self, refresh: bool = False) -> Sealer:
        """The fleet key, unwrapped from what the server holds for this kiosk."""
        if self._sealer is None or refresh:
            row = self._conn.execute("SELECT key_id, wrapped FROM edge_fleet.my_key()").fetchone()
            if row is None or row[0] is None:
                raise UserError(f"the server holds no fleet key for kiosk {self.credentials.kiosk!r} (revoked?)")
            self._sealer = Sealer(unwrap(row[1], self.credentials.private_key))
            if self._sealer.fingerprint != row[0]:
                raise UserError(f"the fleet key the server holds for kiosk {self.credentials.kiosk!r} is not the "
                                f"one it names ({row[0]})")
        return self._sealer

    def sync_once(self) -> SyncState:
        """One round (see the module's docstring); raises UserError, in one line, when the server fails it."""
        try:
            return self._round()
        except psycopg().Error as err:
            self._disconnect()
            raise UserError(f"the fleet's server failed this round: {first_line(err)}") from err

    def _round(self) -> SyncState:
        with self._lock:
            conn = self._connect()
            self.state.erased += self._erasures_first(conn)
            self._report(conn)
            self._send_outbox(conn)
            self._send_events(conn)
            self._send_visitors(conn)
            self._pull(conn)
            self._rollout(conn)
            self._report(conn)
            self.state.online, self.state.error = True, ""
            self.state.rounds += 1
            self.state.pending = len(self.replica.pending())
            self.state.last_round_s = time.time()
        return self.state

    def _erasures_first(self, conn) -> int:
        erased = [row[0] for row in conn.execute("SELECT person_id FROM edge_fleet.erased WHERE seq > %s",
                                                 (self.replica.applied(),))]
        return self.replica.erase(erased) if erased else 0

    def _report(self, conn) -> None:
        facts = self.facts()
        age = self.replica_age_s()
        conn.execute("SELECT edge_fleet.report(%s, %s, %s, %s, %s, %s, %s)",
                     (self.replica.instance(), self.replica.applied(), None if age == float("inf") else age,
                      facts.get("bundle"), facts.get("liveness"), facts.get("note"), self.rollout_state))

    def _rollout(self, conn) -> None:
        """Installs the bundle rolled out to this kiosk's board, once per target, when it runs another; a bundle its
        checks refuse leaves the kiosk on its own, and the reason goes to ``status``."""
        facts = self.facts()
        target = self.policy.get("rollout", {}).get(facts.get("board"))
        if self.installer is None or not target or target["bundle"] in (facts.get("bundle_id"), self._rollout_tried):
            return
        self._rollout_tried = target["bundle"]
        row = conn.execute("SELECT archive FROM edge_fleet.bundles WHERE id=%s", (target["bundle"],)).fetchone()
        try:
            if row is None:
                raise UserError("the server does not hold it")
            with tempfile.TemporaryDirectory(prefix="edge-fleet-rollout-") as folder:
                done = self.installer(unpack(bytes(row[0]), Path(folder)))
            self.rollout_state = f"installed {target['name']}: {done}"
            log.warning("fleet: rollout: %s", self.rollout_state)
        except UserError as err:
            self.rollout_state = f"kept its bundle, refused {target['name']}: {err}"
            log.warning("fleet: rollout: %s", self.rollout_state)

    def _send_outbox(self, conn) -> None:
        while True:
            pending = self.replica.pending()
            if not pending:
                return
            for change in pending:
                result = self._push(conn, change)
                name = result.get("name") if change.kind in ("enrol", "rename") else None
                self.replica.acknowledge(change.seq, change.fleet_id, name)

    def _push(self, conn, change) -> dict:
        if change.kind == "visitor_gone":           # named or forgotten here: the server's copy goes (its own row)
            conn.execute("DELETE FROM edge_fleet.visitors WHERE kiosk_id=%s AND local_id=%s",
                         (self.credentials.kiosk, int(change.fleet_id)))
            return {}
        return self._push_change(conn, change)

    def _push_change(self, conn, change) -> dict:
        detail, templates = change.detail, "[]"
        if change.kind == "enrol":
            person = self.replica.person(change.fleet_id)
            if person is None:                        # removed here before it was sent: its erasure follows
                return {}
            detail = {"name": person.name, "consent": person.consent, "suspended": person.suspended}
        for attempt in (0, 1):
            if change.kind == "enrol":
                sealer = self.fleet_sealer(refresh=attempt > 0)
                templates = json.dumps([template_json(
                    t["vector"], t["fleet_id"], EmbeddingKey(t["model"], t["space"] or "", t["producer"] or ""),
                    t["source"], sealer, t["crop"]) for t in person.templates])
            try:
                return conn.execute("SELECT edge_fleet.push_change(%s, %s, %s, %s, %s)",
                                    (change.seq, change.kind, change.fleet_id, json.dumps(detail),
                                     templates)).fetchone()[0]
            except psycopg().Error as err:
                if getattr(err, "sqlstate", None) != STALE_KEY or attempt:
                    raise
        raise AssertionError("unreachable")

    def _send_events(self, conn) -> None:
        columns = ("kiosk_id", "local_seq") + tuple("model" if c == "model_fingerprint" else c
                                                    for c in EVENT_COLUMNS[1:])
        while True:
            events = self.replica.unsent_events(EVENT_BATCH)
            if not events:
                return
            _insert(conn, "events", columns, [(self.credentials.kiosk, *(e[c] for c in EVENT_COLUMNS)) for e in events],
                    "kiosk_id, local_seq")
            self.replica.events_sent(events[-1]["id"])

    def _send_visitors(self, conn) -> None:
        """Kept visitors go to the server sealed with the fleet key, so that the desk can name them."""
        columns = ("kiosk_id", "local_id", "time", "source", "outcome", "score", "liveness", "looks", "dim", "model",
                   "space", "producer", "crop", "key_id")
        while True:
            visitors = self.replica.unsent_visitors()
            if not visitors:
                return
            sealer = self.fleet_sealer()
            _insert(conn, "visitors", columns, [
                (self.credentials.kiosk, v["id"], v["time"], v["source"], v["outcome"], v["score"], v["liveness"],
                 sealer.seal(v["embeddings"].tobytes()), v["dim"], v["model_fingerprint"], v["embedding_space"],
                 v["producer"], sealer.seal(v["crop"]) if v["crop"] else None, sealer.fingerprint) for v in visitors],
                "kiosk_id, local_id")
            self.replica.visitors_sent(visitors[-1]["id"])

    def _pull(self, conn) -> None:
        while True:
            applied = self.replica.applied()
            rows = conn.execute("SELECT seq, person_id, kind FROM edge_fleet.changes WHERE seq > %s ORDER BY seq "
                                "LIMIT %s", (applied, BATCH)).fetchall()
            if not rows:
                self.replica.caught_up()
                self._synced_at = self.replica.synced_at()
                return
            for offset, (seq, _, _) in enumerate(rows):
                if seq != applied + 1 + offset:
                    raise UserError(f"the server's change sequence has a gap: change {applied + 1 + offset} is "
                                    f"missing before {seq}; nothing past {applied} was applied, and the kiosk goes "
                                    f"on with its replica (ask the admin to check the fleet's database)")
            people = self._people(conn, list(dict.fromkeys(person for _, person, kind in rows
                                                           if kind not in NOT_PEOPLE)))
            policy = None
            if any(kind == "policy" for _, _, kind in rows):
                policy = dict(conn.execute("SELECT key, value FROM edge_fleet.policy").fetchall())
            mine = f"{self.credentials.kiosk}:"
            gone = [int(person[len(mine):]) for _, person, kind in rows
                    if kind == "forget_visitor" and person.startswith(mine)]
            self.replica.apply(rows[-1][0], people, policy, gone)
            self.state.applied = rows[-1][0]
            self.policy = self.replica.policy()

    def _people(self, conn, ids: list[str]) -> dict[str, Person | None]:
        """Each person as the server holds them now; None for those no longer there (erased)."""
        found = {pid: Person(pid, name, consent, suspended, groups=tuple(groups))
                 for pid, name, consent, suspended, groups in conn.execute(
                     "SELECT id, name, consent, suspended, groups FROM edge_fleet.people WHERE id = ANY(%s)", (ids,))}
        rows = conn.execute("SELECT id, person_id, model, space, producer, dim, key_id, sealed, source "
                            "FROM edge_fleet.templates WHERE person_id = ANY(%s) ORDER BY created, id",
                            (ids,)).fetchall()
        sealer = self.fleet_sealer()
        if any(row[6] != sealer.fingerprint for row in rows):
            sealer = self.fleet_sealer(refresh=True)          # the key was rotated since this connection began
        for tid, pid, model, space, producer, dim, kid, sealed, source in rows:
            if kid != sealer.fingerprint:
                raise UserError(f"a template on the server is sealed with the fleet key {kid}, but this kiosk holds "
                                f"{sealer.fingerprint}: nothing applied (the admin's key rotation did not finish?)")
            try:
                vector = np.frombuffer(sealer.open(bytes(sealed)), np.float32, count=dim)
            except UserError as err:
                raise UserError(f"a template from the server does not open with the fleet key {kid}: nothing "
                                f"applied (wrong fleet key, or the row was altered)") from err
            if pid in found:
                found[pid].templates.append({"fleet_id": tid, "vector": vector, "model": model, "space": space,
                                             "producer": producer, "source": source})
        return {pid: found.get(pid) for pid in ids}

    # -- the kiosk's thread --

    def run(self, stop: threading.Event) -> None:
        """Rounds until ``stop``: one whenever the server notifies a change, the kiosk has something to send, or
        HEARTBEAT_S passed; a lost server is retried with a capped backoff."""
        backoff = BACKOFF_S[0]
        while not stop.is_set():
            try:
                self.sync_once()
                backoff = BACKOFF_S[0]
                self._wait_for_work(stop)
            except (UserError, OSError, psycopg().Error) as err:       # the server went while the kiosk waited
                message = first_line(err)
                if self.state.online or message != self.state.error:
                    log.warning("fleet: %s; deciding from the replica (%s old)", message,
                                _age_text(self.replica_age_s()))
                self.state.online, self.state.error = False, message
                self._disconnect()
                stop.wait(backoff)
                backoff = min(BACKOFF_S[1], backoff * 2)

    def _wait_for_work(self, stop: threading.Event) -> None:
        started = time.monotonic()
        while not stop.is_set() and time.monotonic() - started < HEARTBEAT_S:
            if list(self._conn.notifies(timeout=WAIT_S, stop_after=1)):
                return
            with self._lock:
                if self.replica.pending(1) or self.replica.unsent_events(1):
                    return


def _insert(conn, table: str, columns: tuple, rows: list, key: str) -> None:
    """Rows into a server table in one transaction; a row the server has already (same ``key``) stays as it is, so a
    batch sent again after a crash is recorded once."""
    with conn.transaction(), conn.cursor() as cursor:
        cursor.executemany(f"INSERT INTO edge_fleet.{table}({', '.join(columns)}) "
                           f"VALUES ({', '.join(['%s'] * len(columns))}) ON CONFLICT ({key}) DO NOTHING", rows)


def _age_text(seconds: float) -> str:
    return "never synced" if seconds == float("inf") else f"{seconds:.0f} s"

