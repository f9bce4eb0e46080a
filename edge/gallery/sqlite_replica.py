"""A SQLite gallery as one kiosk's replica of a fleet's gallery of record (edge.fleet).

It records which kiosk it belongs to, how far it has applied the server's change sequence and when it last caught
up, the changes made here that wait in its outbox, and which of its decisions the server has. A batch of the
server's changes is applied in one transaction together with the sequence number it reaches, so a kiosk killed while
applying resumes exactly where it was. The replica never holds the fleet key: the server's templates arrive opened
by the caller (edge.fleet.sync) and are sealed here again with the gallery's own key.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

import numpy as np

from edge.base.errors import UserError
from edge.gallery.sqlite import SqliteGallery
from edge.gallery.sqlite_stores import new_fleet_id, now

EVENT_COLUMNS = ("id", "time", "source", "frame", "identity", "score", "box", "model_fingerprint", "track", "outcome",
                 "reason", "liveness")
VISITOR_COLUMNS = ("id", "time", "source", "outcome", "score", "liveness", "embeddings", "dim", "model_fingerprint",
                   "embedding_space", "producer", "crop")


@dataclass(frozen=True)
class Pending:
    """A change made here that the server does not have yet."""

    seq: int                 # its number in this replica's outbox: with the kiosk's id, its key on the server
    kind: str                # enrol, rename, suspend, erase
    fleet_id: str            # the person's
    detail: dict


@dataclass
class Person:
    """One person as a copy of the gallery holds them; templates are dicts with ``fleet_id``, ``vector`` (unit
    float32), ``model``, ``space``, ``producer``, ``source`` and, from this gallery, ``crop`` (a kept enrolment crop's
    JPEG, or None)."""

    fleet_id: str
    name: str
    consent: str | None = None
    suspended: bool = False
    templates: list[dict] = field(default_factory=list)
    groups: tuple[str, ...] = ()             # access groups (edge.fleet.access)


class SqliteReplica:
    def __init__(self, gallery: SqliteGallery):
        self.gallery = gallery
        self.db, self.sealer = gallery.store.db, gallery.store.sealer
        self.transaction = gallery.store.transaction

    def _meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value) -> None:
        self.db.execute("INSERT INTO meta(key, value) VALUES (?, ?) "
                        "ON CONFLICT(key) DO UPDATE SET value=excluded.value", (key, str(value)))

    def kiosk(self) -> str | None:
        """The fleet kiosk this gallery is the replica of (None: a gallery of its own)."""
        return self._meta("fleet_kiosk")

    def attach(self, kiosk: str) -> int:
        """Makes this gallery ``kiosk``'s replica; the people already in it go to the server as its enrolments.
        Returns how many. A gallery is one kiosk's: another kiosk's credentials are refused."""
        attached = self.kiosk()
        if attached == kiosk:
            return 0
        if attached is not None:
            raise UserError(f"{self.gallery.path} is the replica of kiosk {attached!r}, not {kiosk!r}: each kiosk "
                            f"keeps its own gallery (give this one its own --gallery)")
        with self.transaction():
            self._set_meta("fleet_kiosk", kiosk)
            self._set_meta("fleet_instance", new_fleet_id())      # tells the server which gallery reports
            self._set_meta("fleet_applied", 0)
            for table in ("identities", "templates"):        # rows from before fleet ids
                for (row,) in self.db.execute(f"SELECT id FROM {table} WHERE fleet_id IS NULL").fetchall():
                    self.db.execute(f"UPDATE {table} SET fleet_id=? WHERE id=?", (new_fleet_id(), row))
            people = [row[0] for row in self.db.execute("SELECT fleet_id FROM identities ORDER BY id")]
            for fleet_id in people:
                self.gallery.store.journal("enrol", fleet_id)
        return len(people)

    def instance(self) -> str:
        """This gallery's id: a second gallery using the same kiosk's credentials is refused by the server."""
        return self._meta("fleet_instance") or ""

    def applied(self) -> int:
        """The last change of the server's sequence applied here."""
        return int(self._meta("fleet_applied") or 0)

    def synced_at(self) -> float | None:
        """When (Unix time) this replica last caught up with the server; None: never."""
        value = self._meta("fleet_synced_at")
        return float(value) if value else None

    def pending(self, limit: int = 200) -> list[Pending]:
        rows = self.db.execute("SELECT seq, kind, fleet_id, detail FROM outbox ORDER BY seq LIMIT ?",
                               (limit,)).fetchall()
        return [Pending(seq, kind, fleet_id, json.loads(detail) if detail else {})
                for seq, kind, fleet_id, detail in rows]

    def person(self, fleet_id: str) -> Person | None:
        """The person as held here, templates opened; None when they are not (removed here since)."""
        row = self.db.execute("SELECT id, name, consent, suspended FROM identities WHERE fleet_id=?",
                              (fleet_id,)).fetchone()
        if row is None:
            return None
        templates = [{"fleet_id": tid, "vector": np.frombuffer(self.sealer.open(blob), np.float32, count=dim),
                      "model": model, "space": space, "producer": producer, "source": source,
                      "crop": self.sealer.open(crop) if crop else None}
                     for tid, blob, dim, model, space, producer, source, crop in self.db.execute(
                         "SELECT fleet_id, embedding, dim, model_fingerprint, embedding_space, producer, source, crop "
                         "FROM templates WHERE identity_id=? ORDER BY id", (row[0],))]
        return Person(fleet_id, row[1], row[2], bool(row[3]), templates)

    def acknowledge(self, seq: int, fleet_id: str, name: str | None) -> None:
        """The server has outbox change ``seq``; ``name`` is what it calls the person (another when the name was
        taken by someone enrolled elsewhere: they are flagged as a possible duplicate there, never merged)."""
        with self.transaction():
            self.db.execute("DELETE FROM outbox WHERE seq=?", (seq,))
            if name and self.db.execute("SELECT 1 FROM identities WHERE name=?", (name,)).fetchone() is None:
                self.db.execute("UPDATE identities SET name=? WHERE fleet_id=?", (name, fleet_id))

    def unsent_events(self, limit: int = 500) -> list[dict]:
        """Decisions logged here that the server does not have yet, oldest first (their row id is their number)."""
        rows = self.db.execute(f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE id > ? ORDER BY id LIMIT ?",
                               (int(self._meta("fleet_events_sent") or 0), limit)).fetchall()
        return [dict(zip(EVENT_COLUMNS, row)) for row in rows]

    def events_sent(self, last: int) -> None:
        with self.transaction():
            self._set_meta("fleet_events_sent", last)

    def unsent_visitors(self, limit: int = 100) -> list[dict]:
        """Visitors kept here that the server does not have yet, oldest first: looks (float32, visits x dim) and
        crop (JPEG or None) opened, for the caller to seal with the fleet key."""
        rows = self.db.execute(f"SELECT {', '.join(VISITOR_COLUMNS)} FROM visitors WHERE id > ? ORDER BY id LIMIT ?",
                               (int(self._meta("fleet_visitors_sent") or 0), limit)).fetchall()
        visitors = [dict(zip(VISITOR_COLUMNS, row)) for row in rows]
        for visitor in visitors:
            visitor["embeddings"] = np.frombuffer(self.sealer.open(visitor["embeddings"]), np.float32).reshape(
                -1, visitor["dim"])
            visitor["crop"] = self.sealer.open(visitor["crop"]) if visitor["crop"] else None
        return visitors

    def visitors_sent(self, last: int) -> None:
        with self.transaction():
            self._set_meta("fleet_visitors_sent", last)

    def erase(self, fleet_ids: list[str]) -> int:
        """Erasures from the server, applied before anything else: each person, their templates, their logged
        decisions and their changes still waiting here go for real; returns how many were here."""
        with self.transaction():
            gone = sum(self._erase(fleet_id) for fleet_id in fleet_ids)
        if gone:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone

    def _erase(self, fleet_id: str) -> bool:
        row = self.db.execute("SELECT name FROM identities WHERE fleet_id=?", (fleet_id,)).fetchone()
        self.db.execute("DELETE FROM outbox WHERE fleet_id=?", (fleet_id,))      # the tombstone wins
        if row is None:
            return False
        self.db.execute("DELETE FROM identities WHERE fleet_id=?", (fleet_id,))
        self.db.execute("DELETE FROM events WHERE identity=?", (row[0],))
        return True

    def apply(self, last_seq: int, people: dict[str, Person | None], policy: dict | None = None,
              visitors_gone: list[int] = ()) -> None:
        """Makes each person as the server holds them now (None: erased there), takes the fleet's ``policy`` (door
        rules and settings) when it changed, forgets the kept visitors named or forgotten at the desk, and records
        ``last_seq`` as applied, in one transaction: all of it or none."""
        erased = bool(visitors_gone)
        with self.transaction():
            self.db.executemany("DELETE FROM visitors WHERE id=?", [(visitor,) for visitor in visitors_gone])
            for fleet_id, person in people.items():
                if person is None:
                    erased |= self._erase(fleet_id)
                else:
                    self._refresh(person)
            if policy is not None:
                self._set_meta("fleet_policy", json.dumps(policy))
            self._set_meta("fleet_applied", last_seq)
            self._set_meta("fleet_synced_at", time.time())
        if erased:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def policy(self) -> dict:
        """The fleet's door rules and settings as last applied here ({} before any)."""
        return json.loads(self._meta("fleet_policy") or "{}")

    def caught_up(self) -> None:
        """Nothing newer was on the server: the replica is current as of now."""
        with self.transaction():
            self._set_meta("fleet_synced_at", time.time())

    def _refresh(self, person: Person) -> None:
        clash = self.db.execute("SELECT fleet_id FROM identities WHERE name=? AND fleet_id IS NOT ?",
                                (person.name, person.fleet_id)).fetchone()
        if clash is not None:
            raise UserError(f"the server's {person.name!r} clashes with a person enrolled here and not yet sent; "
                            f"nothing applied: the next round sends it first")
        held = self.db.execute("SELECT name FROM identities WHERE fleet_id=?", (person.fleet_id,)).fetchone()
        if held is not None and held[0] != person.name:          # renamed: their logged decisions follow the name
            self.db.execute("UPDATE events SET identity=? WHERE identity=?", (person.name, held[0]))
        self.db.execute(
            "INSERT INTO identities(name, created, consent, fleet_id, suspended, access_groups) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(fleet_id) DO UPDATE SET name=excluded.name, "
            "consent=excluded.consent, suspended=excluded.suspended, access_groups=excluded.access_groups",
            (person.name, now(), person.consent, person.fleet_id, int(person.suspended),
             json.dumps(list(person.groups))))
        identity = self.db.execute("SELECT id FROM identities WHERE fleet_id=?", (person.fleet_id,)).fetchone()[0]
        held = {tid for (tid,) in self.db.execute("SELECT fleet_id FROM templates WHERE identity_id=?", (identity,))}
        server = {t["fleet_id"] for t in person.templates}
        waiting = self.db.execute("SELECT 1 FROM outbox WHERE fleet_id=?", (person.fleet_id,)).fetchone()
        if waiting is None:               # templates added here and not yet sent stay
            self.db.executemany("DELETE FROM templates WHERE fleet_id=?", [(tid,) for tid in held - server])
        self.db.executemany(
            "INSERT INTO templates(identity_id, model_fingerprint, embedding, dim, source, created, embedding_space, "
            "producer, sealed, fleet_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
            [(identity, t["model"], self.sealer.seal(np.asarray(t["vector"], np.float32).tobytes()),
              len(t["vector"]), t["source"], now(), t["space"], t["producer"], t["fleet_id"])
             for t in person.templates if t["fleet_id"] not in held])
