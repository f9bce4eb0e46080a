"""The gallery as one SQLite file (WAL), schema versioned with migrations: opening it, checking it is private,
whole and sealed with its own key, and its three stores (edge.gallery.sqlite_stores).

Every template is tied to the fingerprint (sha256) of the embedding model file that made it, so a model
change can never silently compare incompatible embeddings: templates of another model are invisible to
matching, and ``templates`` says how many there are so the runtime can ask for re-enrolment.
"""
from __future__ import annotations

import datetime
import sqlite3
import stat
from pathlib import Path

from edge.base.errors import UserError
from edge.gallery.sealing import Sealer
from edge.gallery.sqlite_stores import Database, SqliteEvents, SqlitePeople, SqliteVisitors, Transaction
from edge.gallery.store import Gallery

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
    # 5: templates encrypted at rest (edge.gallery.sealing); rows written before are sealed when the gallery opens.
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
    # 8: each decision's liveness verdict with its checks' evidence (JSON; NULL for decisions logged before), and
    # each kept visitor's verdict (naming one enrols it from the kiosk's camera: only a live visit may be).
    """
    ALTER TABLE events ADD COLUMN liveness TEXT;
    ALTER TABLE visitors ADD COLUMN liveness TEXT;
    """,
    # 9: a fleet's replica (edge.gallery.sqlite_replica): each person and template has the fleet-wide id it has on
    # the fleet's server, a person may be suspended (named, but no door opens), and the changes made here wait in the
    # outbox until the server has them (AUTOINCREMENT: a change's number, its key on the server, is never reused).
    """
    ALTER TABLE identities ADD COLUMN fleet_id TEXT;
    ALTER TABLE identities ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE templates ADD COLUMN fleet_id TEXT;
    CREATE UNIQUE INDEX identities_by_fleet_id ON identities(fleet_id);
    CREATE UNIQUE INDEX templates_by_fleet_id ON templates(fleet_id);
    CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, kind TEXT NOT NULL, fleet_id TEXT NOT NULL,
                         detail TEXT, created TEXT NOT NULL);
    """,
    # 10: the access groups a fleet gives each person (JSON list; edge.fleet.access decides which doors they open).
    """
    ALTER TABLE identities ADD COLUMN access_groups TEXT;
    """,
    # 11: the face crop a template was made from (sealed JPEG), kept only when the person consented to it: a new
    # model's template is made from it (edge gallery --reembed) without asking them back.
    """
    ALTER TABLE templates ADD COLUMN crop BLOB;
    """,
)


class SqliteGallery(Gallery):
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
        self.store = store = Database(self._db, self._sealer, self.path)
        self.people = SqlitePeople(store)
        self.events = SqliteEvents(store)
        self.visitors = SqliteVisitors(store, self.people)

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

    def _transaction(self) -> Transaction:
        return Transaction(self._db)

    def version(self) -> int:
        """Changes whenever another connection commits (SQLite's data_version): the kiosk reloads its templates
        when it does, so a person enrolled while it runs is seen at once."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    def close(self) -> None:
        self._db.close()
