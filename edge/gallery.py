"""The enrolled gallery and the decision log: one SQLite file (WAL), schema versioned with migrations.

Every template is tied to the fingerprint (sha256) of the embedding model file that made it, so a model
change can never silently compare incompatible embeddings: templates of another model are invisible to
matching, and ``templates`` says how many there are so the runtime can ask for re-enrolment.
"""
from __future__ import annotations

import base64
import binascii
import datetime
import json
import sqlite3
import stat
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge.errors import UserError
from edge.gallery_rules import check_name, exported_vector
from edge.sealing import Sealer

# Each migration takes the schema from version i to i + 1; never edit one that has shipped, append a new one.
MIGRATIONS = (
    """
    CREATE TABLE identities (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE, created TEXT NOT NULL);
    CREATE TABLE templates (
        id INTEGER PRIMARY KEY,
        identity_id INTEGER NOT NULL REFERENCES identities(id) ON DELETE CASCADE,
        model_fingerprint TEXT NOT NULL,
        embedding BLOB NOT NULL,
        dim INTEGER NOT NULL,
        source TEXT,
        created TEXT NOT NULL);
    CREATE INDEX templates_by_model ON templates(model_fingerprint);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY, time TEXT NOT NULL, source TEXT, frame INTEGER, identity TEXT,
        score REAL, box TEXT, model_fingerprint TEXT);
    """,
    # 2: which embedding space (source checkpoint + crop) and which kind of file (format:precision) made each
    # template, so a recompiled bundle can keep enrolments where compile measured that it may.
    """
    ALTER TABLE templates ADD COLUMN embedding_space TEXT;
    ALTER TABLE templates ADD COLUMN producer TEXT;
    """,
    # 3: one decision per visit: the track it closes, its outcome (named, unknown, undecided) and why.
    """
    ALTER TABLE events ADD COLUMN track INTEGER;
    ALTER TABLE events ADD COLUMN outcome TEXT;
    ALTER TABLE events ADD COLUMN reason TEXT;
    """,
    # 4: the consent recorded when a person was enrolled (and when), kept with their identity.
    """
    ALTER TABLE identities ADD COLUMN consent TEXT;
    """,
    # 5: templates encrypted at rest (edge.sealing); rows written before are sealed when the gallery opens.
    """
    ALTER TABLE templates ADD COLUMN sealed INTEGER NOT NULL DEFAULT 0;
    """,
    # 6: visitors nobody was named for, kept (sealed) until someone names them or their retention ends.
    """
    CREATE TABLE visitors (
        id INTEGER PRIMARY KEY, time TEXT NOT NULL, source TEXT, track INTEGER, outcome TEXT, score REAL,
        crop BLOB, embeddings BLOB NOT NULL, dim INTEGER NOT NULL, model_fingerprint TEXT, embedding_space TEXT,
        producer TEXT);
    """,
    # 7: facts about the gallery itself; first, the fingerprint of the key that seals its templates.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class EmbeddingKey:
    """The model file a template is made with or matched by."""

    fingerprint: str                      # sha256 of the file
    space: str = ""                       # source checkpoint + crop (edge.manifest.ModelEntry.embedding_space)
    kind: str = ""                        # "format:precision" of the file
    accepts: tuple[str, ...] = ()         # kinds in the same space whose templates this file may match


@dataclass
class GalleryTemplates:
    names: list[str]             # one per identity
    matrix: np.ndarray           # (identities, dim), L2-normalised mean template per identity
    other_models: int            # templates enrolled with a model file whose embeddings are not comparable
    stale: dict[str, list[str]] = field(default_factory=dict)   # identity -> photo sources, for the identities
                                                                # whose every template is unusable here


class AlreadyEnrolled(UserError):
    """The name is enrolled, and the caller did not say the new faces are that same person's."""


class Gallery:
    def __init__(self, path: str | Path, create: bool = False):
        """Opens the gallery at ``path``; only with ``create`` (enrolment) is a missing one made, private to its
        user (folder 0700, file 0600). A mistyped path never silently starts an empty gallery."""
        self.path = Path(path)
        if not self.path.exists():
            if not create:
                raise UserError(f"no gallery at {self.path}: enrol someone first (python -m edge enroll --bundle "
                                f"DIR --name NAME --consent PHOTOS --gallery {self.path}) or make an empty one "
                                f"(python -m edge gallery --create --gallery {self.path}), or check the path")
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            self.path.touch(mode=0o600)
        else:
            self._require_private_database()
        try:
            # explicit transactions below; the kiosk's loop and its web API each hold a connection
            self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.execute("PRAGMA secure_delete=ON")      # deleted rows are overwritten with zeros, not freed
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._check_integrity()
            self._migrate()
            # a key is made only while no template is sealed: a lost key is reported, never silently replaced
            self._sealer = Sealer.for_gallery(self.path, create=not self._has_sealed())
            self._require_own_key()
            self._seal_legacy_rows()
        except sqlite3.DatabaseError as err:
            raise UserError(f"{self.path} is not a usable gallery database: {err}") from err

    def _require_private_database(self) -> None:
        """An existing gallery must be a non-empty regular file only its owner can read: an empty file is no
        gallery (it would silently become a new one), and a readable one leaks who is enrolled and when."""
        info = self.path.stat()
        if not stat.S_ISREG(info.st_mode):
            raise UserError(f"{self.path} is not a file, so not a gallery")
        if info.st_size == 0:
            raise UserError(f"{self.path} is empty (0 bytes), not a gallery: restore it from your backup, or remove "
                            f"it and make a new one (python -m edge gallery --create)")
        if info.st_mode & 0o077:
            raise UserError(f"{self.path} is readable by other users; chmod 600 {self.path}")

    def _require_own_key(self) -> None:
        """The key file must be the one this gallery was sealed with: its fingerprint is recorded on first use,
        and any other key (one copied from another gallery) is refused before anything is read or written."""
        row = self._db.execute("SELECT value FROM meta WHERE key='key_fingerprint'").fetchone()
        if row is None:
            sealed = self._db.execute("SELECT embedding FROM templates WHERE sealed=1 LIMIT 1").fetchone()
            if sealed is not None:                     # a gallery from before fingerprints: its key must open it
                try:
                    self._sealer.open(sealed[0])
                except UserError as err:
                    raise UserError(f"{self.path}'s templates do not open with {self._sealer.path} (another "
                                    f"gallery's key?): put back this gallery's own key file from your backup; "
                                    f"nothing was read or written") from err
            with self._transaction():
                self._db.execute("INSERT INTO meta(key, value) VALUES ('key_fingerprint', ?)",
                                 (self._sealer.fingerprint,))
        elif row[0] != self._sealer.fingerprint:
            raise UserError(f"{self.path} was sealed with the key {row[0]}, but {self._sealer.path} is the key "
                            f"{self._sealer.fingerprint} (another gallery's?): put back this gallery's own key "
                            f"file from your backup; nothing was read or written")

    def _has_sealed(self) -> bool:
        return self._db.execute("SELECT 1 FROM templates WHERE sealed=1 LIMIT 1").fetchone() is not None

    def _seal_legacy_rows(self) -> None:
        """Templates written before encryption are sealed in place, in one transaction, on first open."""
        rows = self._db.execute("SELECT id, embedding FROM templates WHERE sealed=0").fetchall()
        if rows:
            with self._transaction():
                self._db.executemany("UPDATE templates SET embedding=?, sealed=1 WHERE id=?",
                                     [(self._sealer.seal(blob), row) for row, blob in rows])

    def _check_integrity(self) -> None:
        """A damaged database (a power cut on a bad card) is moved aside and reported, never silently replaced:
        the people in it may be recoverable, and a new empty gallery would hide that they are gone."""
        try:
            problems = [row[0] for row in self._db.execute("PRAGMA quick_check").fetchall()]
        except sqlite3.DatabaseError as err:        # a damaged page can stop the check itself
            problems = [str(err)]
        if problems == ["ok"]:
            return
        self._db.close()
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        moved = self.path.with_name(f"{self.path.name}.broken-{stamp}")
        self.path.rename(moved)
        for suffix in ("-wal", "-shm"):
            companion = Path(f"{self.path}{suffix}")
            if companion.exists():
                companion.rename(Path(f"{moved}{suffix}"))
        first = " ".join(problems[0].replace("*", "").split())          # one line
        raise UserError(f"{self.path} failed SQLite's integrity check ({first}); it was moved to {moved} "
                        f"for recovery (sqlite3 {moved} .recover) and nothing was replaced")

    def export_person(self, name: str) -> dict:
        """Everything held about one person, as JSON-ready data: identity, consent, templates (base64 float32)
        with the model that made each, and the decisions logged under their name."""
        identity = self._db.execute("SELECT id, name, created, consent FROM identities WHERE name=?",
                                    (name,)).fetchone()
        if identity is None:
            raise UserError(f"{name!r} is not enrolled in {self.path}")
        templates = self._db.execute(
            "SELECT embedding, dim, model_fingerprint, embedding_space, producer, source, created FROM templates "
            "WHERE identity_id=? ORDER BY id", (identity[0],)).fetchall()
        events = self._db.execute("SELECT time, source, frame, score, outcome, reason FROM events WHERE identity=? "
                                  "ORDER BY id", (name,)).fetchall()
        return {"name": identity[1], "enrolled": identity[2], "consent": identity[3],
                "templates": [{"embedding": base64.b64encode(self._sealer.open(blob)).decode(), "dim": dim,
                               "model": fingerprint,
                               "embedding_space": space, "producer": producer, "source": source, "created": made}
                              for blob, dim, fingerprint, space, producer, source, made in templates],
                "decisions": [dict(zip(("time", "source", "frame", "score", "outcome", "reason"), row))
                              for row in events]}

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise UserError(f"gallery {self.path} has schema version {version}, newer than this runtime "
                            f"({len(MIGRATIONS)}); upgrade the runtime")
        for target in range(version + 1, len(MIGRATIONS) + 1):
            with self._transaction():
                for statement in filter(str.strip, MIGRATIONS[target - 1].split(";")):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={target}")

    def _transaction(self):
        return _Transaction(self._db)

    def enroll(self, name: str, embeddings: np.ndarray, key: EmbeddingKey | str, sources: list[str],
               consent: str | None = None, add: bool = False) -> int:
        """Adds templates for ``name`` in one transaction; returns the template count added. A new name is a new
        person; a name already enrolled is refused unless ``add`` says these faces are that same person's.
        ``consent`` (e.g. "yes" from the page's consent box) is recorded with the time it was given."""
        with self._transaction():
            return self._add_templates(name, embeddings, key, sources, consent, add)

    def _add_templates(self, name: str, embeddings: np.ndarray, key: EmbeddingKey | str, sources: list[str],
                       consent: str | None, add: bool) -> int:
        """``enroll``'s work, inside the caller's transaction."""
        key = EmbeddingKey(key) if isinstance(key, str) else key
        check_name(name)
        embeddings = np.asarray(embeddings, np.float32)
        if not np.isfinite(embeddings).all():
            raise UserError(f"the templates of {name!r} hold NaN or infinite values: nothing enrolled")
        known = self._db.execute("SELECT COUNT(t.id) FROM identities i LEFT JOIN templates t ON "
                                 "t.identity_id=i.id WHERE i.name=? GROUP BY i.id", (name,)).fetchone()
        if known is not None and not add:
            raise AlreadyEnrolled(f"{name!r} is already enrolled ({known[0]} templates): to add these faces "
                                  f"to that same person say so (--add; on the page, 'add to this person'), "
                                  f"or choose another name")
        self._db.execute("INSERT OR IGNORE INTO identities(name, created) VALUES (?, ?)", (name, _now()))
        if consent:
            self._db.execute("UPDATE identities SET consent=? WHERE name=?", (f"{consent} at {_now()}", name))
        identity_id = self._db.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()[0]
        self._db.executemany(
            "INSERT INTO templates(identity_id, model_fingerprint, embedding, dim, source, created, "
            "embedding_space, producer, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
            [(identity_id, key.fingerprint, self._sealer.seal(e.tobytes()), e.size, s, _now(), key.space or None,
              key.kind or None) for e, s in zip(embeddings, sources)])
        return len(embeddings)

    def remove(self, name: str) -> bool:
        """Deletes a person for real: their identity, templates and logged decisions in one transaction, with
        the freed pages zeroed (secure_delete) and the write-ahead log folded into the file and truncated, so
        neither the database nor its WAL keeps their template's bytes."""
        with self._transaction():
            found = self._db.execute("DELETE FROM identities WHERE name=?", (name,)).rowcount > 0
            self._db.execute("DELETE FROM events WHERE identity=?", (name,))
        if found:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return found

    def templates(self, key: EmbeddingKey | str) -> GalleryTemplates:
        """Mean templates of every identity enrolled with a file whose embeddings ``key``'s file may match (the
        same file, or a kind it accepts in its embedding space), and the identities enrolled only otherwise."""
        key = EmbeddingKey(key) if isinstance(key, str) else key
        rows = self._db.execute(
            "SELECT i.name, t.embedding, t.dim, t.model_fingerprint, t.source, t.embedding_space, t.producer "
            "FROM templates t JOIN identities i ON i.id=t.identity_id ORDER BY i.name, t.id").fetchall()
        by_name: dict[str, list[np.ndarray]] = {}
        stale: dict[str, list[str]] = {}
        for name, blob, dim, fingerprint, source, space, producer in rows:
            if fingerprint == key.fingerprint or (key.space and space == key.space and producer in key.accepts):
                by_name.setdefault(name, []).append(np.frombuffer(self._sealer.open(blob), np.float32, count=dim))
            else:
                stale.setdefault(name, []).append(source or "")
        names = sorted(by_name)
        means = [np.mean(by_name[n], axis=0) for n in names]
        matrix = np.stack([m / (np.linalg.norm(m) + 1e-12) for m in means]) if means else np.zeros((0, 0), np.float32)
        other = sum(len(v) for v in stale.values())
        only_stale = {name: sources for name, sources in stale.items() if name not in by_name}
        return GalleryTemplates(names, matrix.astype(np.float32), other, only_stale)

    def identities(self) -> list[tuple[str, int]]:
        """(name, template count) for every enrolled identity, any model."""
        return self._db.execute(
            "SELECT i.name, COUNT(t.id) FROM identities i LEFT JOIN templates t ON t.identity_id=i.id "
            "GROUP BY i.id ORDER BY i.name").fetchall()

    def log_events(self, events: list[dict]) -> None:
        """Appends decisions in one transaction (a crash loses a whole batch or nothing)."""
        with self._transaction():
            self._db.executemany(
                "INSERT INTO events(time, source, frame, identity, score, box, model_fingerprint, track, outcome, "
                "reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(_now(), e.get("source"), e.get("frame"), e.get("identity"), e.get("score"),
                  json.dumps(e.get("box")), e.get("model_fingerprint"), e.get("track"), e.get("outcome"),
                  e.get("reason")) for e in events])

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
            dims = {e.size for e, t in rows if t["model"] == model} | {d for (d,) in self._db.execute(
                "SELECT DISTINCT dim FROM templates WHERE model_fingerprint=?", (model,))}
            if len(dims) > 1:
                raise UserError(f"the export of {name!r} has {sorted(dims)}-dimensional templates of one model "
                                f"({str(model)[:12]}); a model makes one size: nothing imported")
        if any(n == name for n, _ in self.identities()):
            raise UserError(f"{name!r} is already enrolled in {self.path}; remove them first or rename the export")
        with self._transaction():
            self._db.execute("INSERT INTO identities(name, created, consent) VALUES (?, ?, ?)",
                             (name, exported.get("enrolled") or _now(), exported.get("consent")))
            identity_id = self._db.execute("SELECT id FROM identities WHERE name=?", (name,)).fetchone()[0]
            self._db.executemany(
                "INSERT INTO templates(identity_id, model_fingerprint, embedding, dim, source, created, "
                "embedding_space, producer, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)",
                [(identity_id, t["model"], self._sealer.seal(e.tobytes()), e.size, t.get("source"),
                  t.get("created") or _now(), t.get("embedding_space"), t.get("producer")) for e, t in rows])
        return len(rows)

    def add_visitor(self, embeddings: np.ndarray, crop_jpeg: bytes | None, key: EmbeddingKey, record: dict) -> int:
        """Keeps an unnamed visit (its looks and one face crop, both sealed) so that someone can name it later."""
        embeddings = np.asarray(embeddings, np.float32)
        with self._transaction():
            cursor = self._db.execute(
                "INSERT INTO visitors(time, source, track, outcome, score, crop, embeddings, dim, model_fingerprint, "
                "embedding_space, producer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (_now(), record.get("source"), record.get("track"), record.get("outcome"), record.get("score"),
                 self._sealer.seal(crop_jpeg) if crop_jpeg else None, self._sealer.seal(embeddings.tobytes()),
                 embeddings.shape[1], key.fingerprint, key.space or None, key.kind or None))
        return cursor.lastrowid

    def visitors(self) -> list[dict]:
        rows = self._db.execute("SELECT id, time, source, outcome, score, crop IS NOT NULL FROM visitors "
                                "ORDER BY id DESC").fetchall()
        return [dict(zip(("id", "time", "source", "outcome", "score", "has_crop"), row)) for row in rows]

    def visitor_crop(self, visitor: int) -> bytes | None:
        row = self._db.execute("SELECT crop FROM visitors WHERE id=?", (visitor,)).fetchone()
        return self._sealer.open(row[0]) if row and row[0] else None

    def name_visitor(self, visitor: int, name: str, consent: str, add: bool = False) -> int:
        """Enrols a kept visitor's looks under ``name`` (an enrolled name only with ``add``) and forgets the
        visitor, in one transaction."""
        row = self._db.execute("SELECT embeddings, dim, model_fingerprint, embedding_space, producer FROM visitors "
                               "WHERE id=?", (visitor,)).fetchone()
        if row is None:
            raise UserError(f"no kept visitor {visitor}")
        embeddings = np.frombuffer(self._sealer.open(row[0]), np.float32).reshape(-1, row[1])
        key = EmbeddingKey(row[2], row[3] or "", row[4] or "")
        with self._transaction():           # enrolled and forgotten together, or neither
            added = self._add_templates(name, embeddings, key, [f"visitor:{visitor}"] * len(embeddings), consent,
                                        add)
            self._db.execute("DELETE FROM visitors WHERE id=?", (visitor,))
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return added

    def forget_visitor(self, visitor: int) -> bool:
        with self._transaction():
            gone = self._db.execute("DELETE FROM visitors WHERE id=?", (visitor,)).rowcount > 0
        if gone:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return gone

    def prune(self, unknown_days: float, named_days: float) -> int:
        """Deletes logged decisions past their retention: visits that named nobody (and the visitors kept from
        them, crops included) after ``unknown_days``, named ones after ``named_days``; returns how many went."""
        now = datetime.datetime.now(datetime.timezone.utc)
        cut = {days: (now - datetime.timedelta(days=days)).isoformat(timespec="milliseconds")
               for days in (unknown_days, named_days)}
        with self._transaction():
            gone = self._db.execute("DELETE FROM events WHERE identity IS NULL AND time < ?",
                                    (cut[unknown_days],)).rowcount
            gone += self._db.execute("DELETE FROM events WHERE identity IS NOT NULL AND time < ?",
                                     (cut[named_days],)).rowcount
            gone += self._db.execute("DELETE FROM visitors WHERE time < ?", (cut[unknown_days],)).rowcount
        return gone

    def version(self) -> int:
        """Changes whenever another connection commits (SQLite's data_version): the kiosk reloads its templates
        when it does, so a person enrolled while it runs is seen at once."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def event_count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (autocommit connection underneath)."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self):
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
