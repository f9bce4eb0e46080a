"""The SQLite gallery's three stores (edge.gallery.store): people and templates, events, visitors.

Each holds the opened database (``Database``: connection, sealer, path); templates, visitor looks and crops are
sealed (edge.gallery.sealing) before they are written, and every write is one ``BEGIN IMMEDIATE`` transaction.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.gallery.rules import check_name, exported_vector
from edge.gallery.sealing import Sealer
from edge.gallery.store import (
    NAMEABLE_VERDICTS,
    AlreadyEnrolled,
    EmbeddingKey,
    Events,
    GalleryTemplates,
    NotLive,
    People,
    Reembedded,
    Visitors,
    mean_template,
)


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Database:
    """An opened gallery file, shared by its three stores."""

    db: sqlite3.Connection
    sealer: Sealer
    path: Path

    def transaction(self) -> "Transaction":
        return Transaction(self.db)

    def journal(self, kind: str, fleet_id: str, detail: dict | None = None) -> None:
        """Inside the caller's transaction: when this gallery is a fleet's replica, the change waits in the outbox
        until the fleet's server has it (edge.fleet.sync); a gallery of its own keeps no outbox."""
        if self.db.execute("SELECT 1 FROM meta WHERE key='fleet_kiosk'").fetchone() is not None:
            self.db.execute("INSERT INTO outbox(kind, fleet_id, detail, created) VALUES (?, ?, ?, ?)",
                            (kind, fleet_id, json.dumps(detail) if detail else None, now()))


def new_fleet_id() -> str:
    """The id a person or a template keeps across every copy of a fleet's gallery."""
    return uuid.uuid4().hex


class Stored:
    """A store's view of the opened database."""

    def __init__(self, store: Database):
        self.store = store
        self.db, self.sealer, self.path, self.transaction = store.db, store.sealer, store.path, store.transaction


class SqlitePeople(Stored, People):
    def export_person(self, name: str) -> dict:
        """Everything held about one person, as JSON-ready data: identity, consent, templates (base64 float32)
        with the model that made each, and the decisions logged under their name."""
        identity = self.db.execute("SELECT id, name, created, consent FROM identities WHERE name=?",
                                   (name,)).fetchone()
        if identity is None:
            raise UserError(f"{name!r} is not enrolled in {self.path}")
        templates = self.db.execute(
            "SELECT embedding, dim, model_fingerprint, embedding_space, producer, source, created FROM templates "
            "WHERE identity_id=? ORDER BY id", (identity[0],)).fetchall()
        events = self.db.execute("SELECT time, source, frame, score, outcome, reason FROM events WHERE identity=? "
                                 "ORDER BY id", (name,)).fetchall()
        return {"name": identity[1], "enrolled": identity[2], "consent": identity[3],
                "templates": [{"embedding": base64.b64encode(self.sealer.open(blob)).decode(), "dim": dim,
                               "model": fingerprint,
                               "embedding_space": space, "producer": producer, "source": source, "created": made}
                              for blob, dim, fingerprint, space, producer, source, made in templates],
                "decisions": [dict(zip(("time", "source", "frame", "score", "outcome", "reason"), row))
                              for row in events]}

    def enroll(self, name: str, embeddings: np.ndarray, key: EmbeddingKey | str, sources: list[str],
               consent: str | None = None, add: bool = False, crops: list[bytes] | None = None) -> int:
        with self.transaction():
            return self.add_templates(name, embeddings, key, sources, consent, add, crops)

    def reembed(self, key: EmbeddingKey, embed) -> Reembedded:
        matched = set(self.templates(key).names)
        kept: dict[str, list[tuple[bytes, str]]] = {}
        for name, crop, source in self.db.execute(
                "SELECT i.name, t.crop, t.source FROM templates t JOIN identities i ON i.id=t.identity_id "
                "WHERE t.crop IS NOT NULL ORDER BY i.name, t.id").fetchall():
            if name not in matched:
                kept.setdefault(name, []).append((self.sealer.open(crop), source))
        made, refused = {}, []
        for name, crops in kept.items():
            looks = [(embed(jpeg), jpeg, source) for jpeg, source in crops]
            refused += [f"{name} ({source}): {why}" for (vector, why), _, source in looks if vector is None]
            usable = [(vector, jpeg, source) for (vector, _), jpeg, source in looks if vector is not None]
            if usable:
                made[name] = self.enroll(name, np.stack([u[0] for u in usable]), key, [u[2] for u in usable],
                                         add=True, crops=[u[1] for u in usable])
        must_enrol = sorted(name for name, _ in self.identities() if name not in matched and name not in made)
        return Reembedded(made, refused, must_enrol)

    def add_templates(self, name: str, embeddings: np.ndarray, key: EmbeddingKey | str, sources: list[str],
                      consent: str | None, add: bool, crops: list[bytes] | None = None) -> int:
        """``enroll``'s work, inside the caller's transaction."""
        key = EmbeddingKey.of(key)
        check_name(name)
        embeddings = np.asarray(embeddings, np.float32)
        if not np.isfinite(embeddings).all():
            raise UserError(f"the templates of {name!r} hold NaN or infinite values: nothing enrolled")
        known = self.db.execute("SELECT COUNT(t.id) FROM identities i LEFT JOIN templates t ON "
                                "t.identity_id=i.id WHERE i.name=? GROUP BY i.id", (name,)).fetchone()
        if known is not None and not add:
            raise AlreadyEnrolled(f"{name!r} is already enrolled ({known[0]} templates): to add these faces "
                                  f"to that same person say so (--add; on the page, 'add to this person'), "
                                  f"or choose another name")
        self.db.execute("INSERT OR IGNORE INTO identities(name, created, fleet_id) VALUES (?, ?, ?)",
                        (name, now(), new_fleet_id()))
        if consent:
            self.db.execute("UPDATE identities SET consent=? WHERE name=?", (f"{consent} at {now()}", name))
        identity_id, fleet_id = self.db.execute("SELECT id, fleet_id FROM identities WHERE name=?",
                                                (name,)).fetchone()
        crops = crops or [None] * len(embeddings)
        self.db.executemany(
            "INSERT INTO templates(identity_id, model_fingerprint, embedding, dim, source, created, "
            "embedding_space, producer, sealed, fleet_id, crop) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?)",
            [(identity_id, key.fingerprint, self.sealer.seal(e.tobytes()), e.size, s, now(), key.space or None,
              key.kind or None, new_fleet_id(), self.sealer.seal(c) if c else None)
             for e, s, c in zip(embeddings, sources, crops)])
        self.store.journal("enrol", fleet_id)
        return len(embeddings)

    def remove(self, name: str) -> bool:
        """Deletes a person for real: their identity, templates and logged decisions in one transaction, with
        the freed pages zeroed (secure_delete) and the write-ahead log folded into the file and truncated, so
        neither the database nor its WAL keeps their template's bytes."""
        with self.transaction():
            row = self.db.execute("SELECT fleet_id FROM identities WHERE name=?", (name,)).fetchone()
            if row is not None and row[0]:
                self.store.journal("erase", row[0])     # a fleet's kiosk asks the server to erase them everywhere
            self.db.execute("DELETE FROM identities WHERE name=?", (name,))
            self.db.execute("DELETE FROM events WHERE identity=?", (name,))
        if row is not None:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return row is not None

    def rename(self, name: str, new_name: str) -> None:
        """Gives an enrolled person another name, their logged decisions with it (so that removing them finds every
        one)."""
        check_name(new_name)
        with self.transaction():
            fleet_id = self._fleet_id(name)
            if self.db.execute("SELECT 1 FROM identities WHERE name=?", (new_name,)).fetchone() is not None:
                raise AlreadyEnrolled(f"{new_name!r} is already enrolled; choose another name")
            self.db.execute("UPDATE identities SET name=? WHERE name=?", (new_name, name))
            self.db.execute("UPDATE events SET identity=? WHERE identity=?", (new_name, name))
            self.store.journal("rename", fleet_id, {"name": new_name})

    def suspend(self, name: str, suspended: bool = True) -> None:
        """A suspended person is still named, but opens no door, until they are resumed."""
        with self.transaction():
            fleet_id = self._fleet_id(name)
            self.db.execute("UPDATE identities SET suspended=? WHERE name=?", (int(suspended), name))
            self.store.journal("suspend", fleet_id, {"suspended": suspended})

    def _fleet_id(self, name: str) -> str:
        row = self.db.execute("SELECT fleet_id FROM identities WHERE name=?", (name,)).fetchone()
        if row is None:
            raise UserError(f"{name!r} is not enrolled in {self.path}")
        return row[0] or ""

    def templates(self, key: EmbeddingKey | str) -> GalleryTemplates:
        """Mean templates of every identity enrolled with a file whose embeddings ``key``'s file may match (the
        same file, or a kind it accepts in its embedding space), and the identities enrolled only otherwise."""
        key = EmbeddingKey.of(key)
        rows = self.db.execute(
            "SELECT i.name, t.embedding, t.dim, t.model_fingerprint, t.source, t.embedding_space, t.producer "
            "FROM templates t JOIN identities i ON i.id=t.identity_id ORDER BY i.name, t.id").fetchall()
        by_name: dict[str, list[np.ndarray]] = {}
        stale: dict[str, list[str]] = {}
        for name, blob, dim, fingerprint, source, space, producer in rows:
            if key.matches(fingerprint, space, producer):
                by_name.setdefault(name, []).append(np.frombuffer(self.sealer.open(blob), np.float32, count=dim))
            else:
                stale.setdefault(name, []).append(source or "")
        names = sorted(by_name)
        matrix = np.stack([mean_template(by_name[n]) for n in names]) if names else np.zeros((0, 0), np.float32)
        other = sum(len(v) for v in stale.values())
        only_stale = {name: sources for name, sources in stale.items() if name not in by_name}
        suspended = {name for (name,) in self.db.execute("SELECT name FROM identities WHERE suspended=1")}
        groups = {name: frozenset(json.loads(listed)) for name, listed in self.db.execute(
            "SELECT name, access_groups FROM identities WHERE access_groups IS NOT NULL")}
        return GalleryTemplates(names, matrix.astype(np.float32), other, only_stale, frozenset(suspended), groups)

    def identities(self) -> list[tuple[str, int]]:
        """(name, template count) for every enrolled identity, any model."""
        return self.db.execute(
            "SELECT i.name, COUNT(t.id) FROM identities i LEFT JOIN templates t ON t.identity_id=i.id "
            "GROUP BY i.id ORDER BY i.name").fetchall()

    def import_person(self, exported: dict) -> int:
        """Adds a person exported by ``export_person`` (templates, their models and consent) in one transaction,
        sealed with this gallery's key, once all of it is checked: a valid name not yet enrolled, and templates of
        finite unit vectors whose dimension agrees with every other template of the same model. Returns the
        template count."""
        try:
            name, templates = exported["name"], exported["templates"]
            rows = [(exported_vector(t), t) for t in templates]
            models = {t["model"] for t in templates}
        except (KeyError, TypeError, ValueError, binascii.Error) as err:
            raise UserError(f"not an export of edge gallery --export ({type(err).__name__}: {err})") from err
        check_name(name)
        if not rows:
            raise UserError(f"the export of {name!r} holds no templates; nothing imported")
        for model in models:
            dims = {e.size for e, t in rows if t["model"] == model} | {d for (d,) in self.db.execute(
                "SELECT DISTINCT dim FROM templates WHERE model_fingerprint=?", (model,))}
            if len(dims) > 1:
                raise UserError(f"the export of {name!r} has {sorted(dims)}-dimensional templates of one model "
                                f"({str(model)[:12]}); a model makes one size: nothing imported")
        if any(n == name for n, _ in self.identities()):
            raise UserError(f"{name!r} is already enrolled in {self.path}; remove them first or rename the export")
        with self.transaction():
            fleet_id = new_fleet_id()
            self.db.execute("INSERT INTO identities(name, created, consent, fleet_id) VALUES (?, ?, ?, ?)",
                            (name, exported.get("enrolled") or now(), exported.get("consent"), fleet_id))
            identity_id = self.db.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()[0]
            self.db.executemany(
                "INSERT INTO templates(identity_id, model_fingerprint, embedding, dim, source, created, "
                "embedding_space, producer, sealed, fleet_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)",
                [(identity_id, t["model"], self.sealer.seal(e.tobytes()), e.size, t.get("source"),
                  t.get("created") or now(), t.get("embedding_space"), t.get("producer"), new_fleet_id())
                 for e, t in rows])
            self.store.journal("enrol", fleet_id)
        return len(rows)


class SqliteEvents(Stored, Events):
    def log(self, events: list[dict]) -> None:
        with self.transaction():
            self.db.executemany(
                "INSERT INTO events(time, source, frame, identity, score, box, model_fingerprint, track, outcome, "
                "reason, liveness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(now(), e.get("source"), e.get("frame"), e.get("identity"), e.get("score"),
                  json.dumps(e.get("box")), e.get("model_fingerprint"), e.get("track"), e.get("outcome"),
                  e.get("reason"), json.dumps(e["liveness"]) if e.get("liveness") else None) for e in events])

    def prune(self, unknown_days: float, named_days: float) -> int:
        now = datetime.datetime.now(datetime.timezone.utc)
        cut = {days: (now - datetime.timedelta(days=days)).isoformat(timespec="milliseconds")
               for days in (unknown_days, named_days)}
        with self.transaction():
            gone = self.db.execute("DELETE FROM events WHERE identity IS NULL AND time < ?",
                                   (cut[unknown_days],)).rowcount
            gone += self.db.execute("DELETE FROM events WHERE identity IS NOT NULL AND time < ?",
                                    (cut[named_days],)).rowcount
            gone += self.db.execute("DELETE FROM visitors WHERE time < ?", (cut[unknown_days],)).rowcount
        return gone

    def count(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]


class SqliteVisitors(Stored, Visitors):
    def __init__(self, store: Database, people: SqlitePeople):
        super().__init__(store)
        self.people = people

    def add(self, embeddings: np.ndarray, crop_jpeg: bytes | None, key: EmbeddingKey, record: dict) -> int:
        """Its looks and its crop are sealed."""
        embeddings = np.asarray(embeddings, np.float32)
        with self.transaction():
            cursor = self.db.execute(
                "INSERT INTO visitors(time, source, track, outcome, score, crop, embeddings, dim, model_fingerprint, "
                "embedding_space, producer, liveness) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (now(), record.get("source"), record.get("track"), record.get("outcome"), record.get("score"),
                 self.sealer.seal(crop_jpeg) if crop_jpeg else None, self.sealer.seal(embeddings.tobytes()),
                 embeddings.shape[1], key.fingerprint, key.space or None, key.kind or None,
                 (record.get("liveness") or {}).get("verdict")))
        return cursor.lastrowid

    def kept(self) -> list[dict]:
        rows = self.db.execute("SELECT id, time, source, outcome, score, crop IS NOT NULL, liveness FROM visitors "
                               "ORDER BY id DESC").fetchall()
        return [dict(zip(("id", "time", "source", "outcome", "score", "has_crop", "liveness"), row)) for row in rows]

    def crop(self, visitor: int) -> bytes | None:
        row = self.db.execute("SELECT crop FROM visitors WHERE id=?", (visitor,)).fetchone()
        return self.sealer.open(row[0]) if row and row[0] else None

    def name(self, visitor: int, name: str, consent: str, add: bool = False) -> int:
        with self.transaction():           # read, enrolled and forgotten together, or none of it
            row = self.db.execute("SELECT embeddings, dim, model_fingerprint, embedding_space, producer, liveness "
                                  "FROM visitors WHERE id=?", (visitor,)).fetchone()
            if row is None:
                raise UserError(f"no kept visitor {visitor}")
            if row[5] not in NAMEABLE_VERDICTS:
                raise NotLive(f"visitor {visitor} was not judged live (liveness {row[5] or 'not judged'}): a visit to "
                              f"the kiosk's camera is enrolled only when live; enrol the person from photos instead "
                              f"(python -m edge enroll, an admin's step)")
            embeddings = np.frombuffer(self.sealer.open(row[0]), np.float32).reshape(-1, row[1])
            key = EmbeddingKey(row[2], row[3] or "", row[4] or "")
            added = self.people.add_templates(name, embeddings, key, [f"visitor:{visitor}"] * len(embeddings),
                                              consent, add)
            self.db.execute("DELETE FROM visitors WHERE id=?", (visitor,))
            self.store.journal("visitor_gone", str(visitor))      # the fleet's copy goes too
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return added

    def forget(self, visitor: int) -> bool:
        with self.transaction():
            gone = self.db.execute("DELETE FROM visitors WHERE id=?", (visitor,)).rowcount > 0
            if gone:
                self.store.journal("visitor_gone", str(visitor))
        if gone:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (autocommit connection underneath)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
