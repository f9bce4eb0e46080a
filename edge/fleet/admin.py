"""The fleet's owner: making the gallery of record, adding and revoking kiosks, enrolling and erasing people from the
desk, rotating the fleet key, and the status a building's admin reads.

The admin connects as the role that owns the ``edge_fleet`` schema (it needs CREATEROLE to add kiosks) and keeps the
fleet key (``$EDGE_FACE_HOME/fleet/fleet.key``, 0600): back it up, losing it loses every template.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.paths import fleet_dir
from edge.fleet.access import check_group, check_settings
from edge.fleet.credentials import KioskCredentials, check_kiosk_id, kiosk_role
from edge.fleet.keys import key_id, new_key, new_kiosk_pair, read_key, wrap, write_private
from edge.fleet.rollout import pack
from edge.fleet.schema import KIOSK_GROUP, SCHEMA_VERSION, statements
from edge.fleet.server import conninfo_parts, connect, is_remote, psycopg, redacted, require_fleet, schema_version
from edge.gallery.rules import check_name
from edge.gallery.sealing import Sealer
from edge.gallery.sqlite_stores import new_fleet_id
from edge.gallery.store import NAMEABLE_VERDICTS, AlreadyEnrolled, EmbeddingKey, NotLive, Reembedded

KEY_FILE = "fleet.key"
POLICY_ROW = "-"             # the person id of a change to the policy (it names nobody)
URL_FILE = "admin.json"


def key_path() -> Path:
    return fleet_dir() / KEY_FILE


def admin_url(url: str | None) -> str:
    """The URL given, else the one ``edge fleet init`` recorded."""
    if url:
        return url
    recorded = fleet_dir() / URL_FILE
    if not recorded.exists():
        raise UserError(f"no fleet on this machine ({recorded} is missing): pass --url, or make one with "
                        f"python -m edge fleet init --url URL")
    return json.loads(recorded.read_text())["url"]


def template_json(vector: np.ndarray, template_id: str, key: EmbeddingKey, source: str | None, sealer: Sealer,
                  crop: bytes | None = None) -> dict:
    """One template as the server stores it: sealed with the fleet key, tied to the model that made it, with the
    enrolment crop it was made from (sealed) when the person agreed to keeping it."""
    vector = np.asarray(vector, np.float32)
    return {"id": template_id, "model": key.fingerprint, "space": key.space or None, "producer": key.kind or None,
            "dim": int(vector.size), "key_id": sealer.fingerprint,
            "sealed": base64.b64encode(sealer.seal(vector.tobytes())).decode(), "source": source,
            "crop": base64.b64encode(sealer.seal(crop)).decode() if crop else None}


class FleetAdmin:
    def __init__(self, url: str, keys: Path | None = None, conn=None):
        self.url = url
        self.key_file = keys or key_path()
        self.conn = conn or connect(url, what="the fleet's server")
        require_fleet(self.conn, url)

    @classmethod
    def init(cls, url: str, keys: Path | None = None) -> "FleetAdmin":
        """Makes the fleet in the database ``url`` names: schema, kiosk group role, the fleet key file."""
        keys = keys or key_path()
        conn = connect(url, what="the fleet's server")
        if schema_version(conn) is not None:
            conn.close()
            raise UserError(f"{redacted(url)} holds a fleet already; nothing changed (python -m edge fleet status)")
        if keys.exists():
            conn.close()
            raise UserError(f"{keys} exists (another fleet's key?): a fleet key is never replaced; move it away "
                            f"first if that fleet is gone")
        key = new_key()
        with conn.transaction():
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (KIOSK_GROUP,)).fetchone()
            if exists is None:
                conn.execute(f"CREATE ROLE {KIOSK_GROUP} NOLOGIN")
            for statement in statements():
                conn.execute(statement)
            conn.execute("INSERT INTO edge_fleet.meta(key, value) VALUES ('schema_version', %s), ('key_id', %s)",
                         (str(SCHEMA_VERSION), key_id(key)))
            conn.execute("INSERT INTO edge_fleet.audit(action, detail) VALUES ('init', '{}')")
            write_private(keys, key)                    # inside: a failed write leaves no fleet behind
        recorded = keys.parent / URL_FILE
        if not recorded.exists():
            parts = conninfo_parts(url)
            parts.pop("password", None)
            recorded.write_text(json.dumps({"url": psycopg().conninfo.make_conninfo(**parts)}))
        return cls(url, keys, conn)

    def close(self) -> None:
        self.conn.close()

    def sealer(self) -> Sealer:
        return Sealer(self.key(), self.key_file)

    def key(self) -> bytes:
        """The fleet key, checked against the one the server's templates are sealed with. A rotation interrupted
        after its commit left the new key beside the old one: it is taken up here."""
        current = self.conn.execute("SELECT value FROM edge_fleet.meta WHERE key='key_id'").fetchone()[0]
        rotated = self.key_file.with_name(self.key_file.name + ".new")
        if rotated.exists() and key_id(read_key(rotated)) == current:
            os.replace(rotated, self.key_file)
        key = read_key(self.key_file)
        if key_id(key) != current:
            raise UserError(f"{self.key_file} is the fleet key {key_id(key)}, but the fleet's templates are sealed "
                            f"with {current}: put back the fleet's key from your backup")
        return key

    def _audit(self, action: str, detail: dict) -> None:
        self.conn.execute("INSERT INTO edge_fleet.audit(action, detail) VALUES (%s, %s)", (action, json.dumps(detail)))

    def add_kiosk(self, kiosk: str, out: Path, kiosk_url: str | None = None) -> KioskCredentials:
        """A kiosk's role, its key pair and wrapped fleet key, and its credentials file at ``out`` (0600)."""
        check_kiosk_id(kiosk)
        if out.exists():
            raise UserError(f"{out} exists; credentials are never written over a file")
        if self.conn.execute("SELECT 1 FROM edge_fleet.kiosks WHERE id=%s", (kiosk,)).fetchone():
            raise UserError(f"kiosk {kiosk!r} is in the fleet already (a kiosk id serves one kiosk); choose another "
                            f"id, or revoke it first")
        role, password = kiosk_role(kiosk), secrets.token_urlsafe(24)
        parts = conninfo_parts(kiosk_url or self.url)
        parts.pop("password", None)
        parts["user"] = role
        if is_remote(parts) and parts.get("sslmode", "prefer") in ("disable", "allow", "prefer"):
            parts["sslmode"] = "require"
        private, public = new_kiosk_pair()
        key = self.key()
        sql = psycopg().sql
        with self.conn.transaction():
            if self.conn.execute("SELECT 1 FROM pg_roles WHERE rolname=%s", (role,)).fetchone():
                raise UserError(f"the role {role} exists on the server already (kiosk {kiosk!r} of another fleet?)")
            self.conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(role), sql.Literal(password), sql.Identifier(KIOSK_GROUP)))
            self.conn.execute("INSERT INTO edge_fleet.kiosks(id, role, public_key) VALUES (%s, %s, %s)",
                              (kiosk, role, public))
            self.conn.execute("INSERT INTO edge_fleet.kiosk_keys(kiosk_id, key_id, wrapped) VALUES (%s, %s, %s)",
                              (kiosk, key_id(key), wrap(key, public)))
            self._audit("add-kiosk", {"kiosk": kiosk})
            credentials = KioskCredentials(kiosk, psycopg().conninfo.make_conninfo(**parts), password, private)
            out.parent.mkdir(parents=True, exist_ok=True)
            credentials.write(out)
        return credentials

    def person_id(self, name: str) -> str:
        row = self.conn.execute("SELECT id FROM edge_fleet.people WHERE name=%s", (name,)).fetchone()
        if row is None:
            raise UserError(f"{name!r} is not enrolled in the fleet")
        return row[0]

    def _change(self, kind: str, person: str, detail: dict | None = None, templates=None) -> dict:
        return self.conn.execute("SELECT edge_fleet.record_change(NULL, NULL, %s, %s, %s, %s)",
                                 (kind, person, json.dumps(detail or {}), json.dumps(templates or []))).fetchone()[0]

    def enrol(self, name: str, embeddings, key: EmbeddingKey, sources: list[str], consent: str,
              add: bool = False, crops: list[bytes] | None = None) -> int:
        """Enrols from the desk: every online kiosk has the person within seconds. ``crops``: kept (sealed) only
        when the person agreed to that."""
        check_name(name)
        known = self.conn.execute("SELECT id FROM edge_fleet.people WHERE name=%s", (name,)).fetchone()
        if known is not None and not add:
            raise AlreadyEnrolled(f"{name!r} is enrolled in the fleet already: --add adds these photos to them")
        sealer = self.sealer()
        templates = [template_json(e, new_fleet_id(), key, s, sealer, c)
                     for e, s, c in zip(embeddings, sources, crops or [None] * len(sources))]
        self._change("enrol", known[0] if known else new_fleet_id(), {"name": name, "consent": consent}, templates)
        return len(templates)

    def remove(self, name: str) -> None:
        """Erases a person centrally; every kiosk erases them when it applies the change (``status`` shows which
        have not yet)."""
        self._change("erase", self.person_id(name))

    def rename(self, name: str, new_name: str) -> None:
        check_name(new_name)
        if self.conn.execute("SELECT 1 FROM edge_fleet.people WHERE name=%s", (new_name,)).fetchone():
            raise AlreadyEnrolled(f"{new_name!r} is enrolled in the fleet already; choose another name")
        self._change("rename", self.person_id(name), {"name": new_name})

    def suspend(self, name: str, suspended: bool = True) -> None:
        self._change("suspend", self.person_id(name), {"suspended": suspended})

    def set_groups(self, name: str, groups: list[str]) -> None:
        """The access groups a person belongs to (edge.fleet.access), replacing those they had."""
        self._change("groups", self.person_id(name), {"groups": sorted({check_group(g) for g in groups})})

    def policy(self) -> dict:
        """The fleet's door rules (door -> rules) and settings."""
        found = dict(self.conn.execute("SELECT key, value FROM edge_fleet.policy").fetchall())
        return {"doors": found.get("doors", {}), "settings": found.get("settings", {}),
                "rollout": found.get("rollout", {})}

    def set_door(self, door: str, rules: list[dict] | None) -> None:
        """A door's rules (None: the door opens for everyone enrolled, as it does without rules)."""
        if self.conn.execute("SELECT 1 FROM edge_fleet.kiosks WHERE id=%s", (door,)).fetchone() is None:
            raise UserError(f"no kiosk {door!r} in the fleet (add it first: python -m edge fleet add-kiosk {door})")
        doors = self.policy()["doors"]
        if rules is None:
            doors.pop(door, None)
        else:
            doors[door] = rules
        self._change("policy", POLICY_ROW, {"key": "doors", "value": doors})

    def update_settings(self, changes: dict) -> dict:
        """Sets the settings named in ``changes`` (None removes one) and returns them all."""
        settings = {**self.policy()["settings"], **changes}
        settings = check_settings({k: v for k, v in settings.items() if v is not None})
        self._change("policy", POLICY_ROW, {"key": "settings", "value": settings})
        return settings

    def reembed(self, key: EmbeddingKey, embed) -> Reembedded:
        """Templates for ``key``'s model made at the desk from the kept crops of everyone who has no template it can
        match (``embed(jpeg) -> (embedding | None, why)``, the new bundle's own enrolment), sent to every kiosk; the
        others are listed to enrol again."""
        sealer = self.sealer()
        rows = self.conn.execute(
            "SELECT p.id, p.name, t.model, t.space, t.producer, t.crop, t.source FROM edge_fleet.people p "
            "LEFT JOIN edge_fleet.templates t ON t.person_id = p.id ORDER BY p.name, t.created, t.id").fetchall()
        matched = {pid for pid, _, model, space, producer, _, _ in rows
                   if model is not None and key.matches(model, space, producer)}
        made, refused, names = {}, [], {pid: name for pid, name, *_ in rows}
        for pid in dict.fromkeys(pid for pid, *_ in rows if pid not in matched):
            templates = []
            for _, name, _, _, _, crop, source in (row for row in rows if row[0] == pid and row[5] is not None):
                jpeg = sealer.open(bytes(crop))
                vector, why = embed(jpeg)
                if vector is None:
                    refused.append(f"{name} ({source}): {why}")
                else:
                    templates.append(template_json(vector, new_fleet_id(), key, source, sealer, jpeg))
            if templates:
                self._change("enrol", pid, {}, templates)
                made[names[pid]] = len(templates)
        must_enrol = sorted(names[pid] for pid in names if pid not in matched and names[pid] not in made)
        return Reembedded(made, refused, must_enrol)

    def visitors(self) -> list[dict]:
        """Unnamed visitors every kiosk kept, newest first (their looks stay sealed)."""
        columns = ("kiosk", "visitor", "time", "outcome", "score", "liveness", "has_crop")
        return [dict(zip(columns, row)) for row in self.conn.execute(
            "SELECT kiosk_id, local_id, time, outcome, score, liveness, crop IS NOT NULL FROM edge_fleet.visitors "
            "ORDER BY received DESC, local_id DESC")]

    def name_visitor(self, kiosk: str, visitor: int, name: str, consent: str, add: bool = False) -> int:
        """Enrols a visitor a kiosk kept (only one judged live, or seen with liveness off) under ``name``, for every
        kiosk, and forgets the visitor there and at the kiosk; returns the template count."""
        row = self.conn.execute("SELECT looks, dim, model, space, producer, liveness FROM edge_fleet.visitors "
                                "WHERE kiosk_id=%s AND local_id=%s", (kiosk, visitor)).fetchone()
        if row is None:
            raise UserError(f"no kept visitor {visitor} of kiosk {kiosk!r} on the server")
        if row[5] not in NAMEABLE_VERDICTS:
            raise NotLive(f"visitor {visitor} of {kiosk} was not judged live (liveness {row[5] or 'not judged'}): "
                          f"enrol the person from photos instead (python -m edge fleet enrol)")
        looks = np.frombuffer(self.sealer().open(bytes(row[0])), np.float32).reshape(-1, row[1])
        with self.conn.transaction():
            added = self.enrol(name, looks, EmbeddingKey(row[2], row[3] or "", row[4] or ""),
                               [f"visitor:{kiosk}:{visitor}"] * len(looks), consent, add)
            self.forget_visitor(kiosk, visitor)
        return added

    def forget_visitor(self, kiosk: str, visitor: int) -> None:
        """Deletes a kept visitor on the server and, as it applies the change, at the kiosk that kept it."""
        if self.conn.execute("SELECT 1 FROM edge_fleet.visitors WHERE kiosk_id=%s AND local_id=%s",
                             (kiosk, visitor)).fetchone() is None:
            raise UserError(f"no kept visitor {visitor} of kiosk {kiosk!r} on the server")
        self._change("forget_visitor", f"{kiosk}:{visitor}", {"kiosk": kiosk, "visitor": visitor})

    def rollout(self, folder: Path) -> dict:
        """Records ``folder`` as the bundle every kiosk of its board is to run: the server keeps it, and each kiosk
        installs it with its own signature and golden check, and reports (``status``)."""
        bundle, board, archive = pack(folder)
        with self.conn.transaction():
            self.conn.execute("INSERT INTO edge_fleet.bundles(id, board, name, archive) VALUES (%s, %s, %s, %s) "
                              "ON CONFLICT (id) DO NOTHING", (bundle, board, Path(folder).resolve().name, archive))
            targets = {**self.policy().get("rollout", {}),
                       board: {"bundle": bundle, "name": Path(folder).resolve().name}}
            self._change("policy", POLICY_ROW, {"key": "rollout", "value": targets})
        return {"bundle": bundle, "board": board, "bytes": len(archive)}

    def revoke(self, kiosk: str) -> int:
        """A lost or stolen kiosk: its role can no longer log in or read anything, its sessions end, and the fleet
        key is rotated (every template re-sealed) so the key it held opens nothing. Returns the templates
        re-sealed."""
        row = self.conn.execute("SELECT role, revoked FROM edge_fleet.kiosks WHERE id=%s", (kiosk,)).fetchone()
        if row is None:
            raise UserError(f"no kiosk {kiosk!r} in the fleet")
        if row[1] is not None:
            raise UserError(f"kiosk {kiosk!r} was revoked already ({row[1]:%Y-%m-%d %H:%M})")
        sql = psycopg().sql
        with self.conn.transaction():
            self.conn.execute("UPDATE edge_fleet.kiosks SET revoked=now() WHERE id=%s", (kiosk,))
            self.conn.execute("DELETE FROM edge_fleet.kiosk_keys WHERE kiosk_id=%s", (kiosk,))
            self.conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(row[0])))
            self.conn.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(KIOSK_GROUP), sql.Identifier(row[0])))
            self._audit("revoke", {"kiosk": kiosk})
        self.conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename=%s", (row[0],))
        return self.rotate_key()

    def rotate_key(self) -> int:
        """A new fleet key: every template, kept crop and kept visitor re-sealed and the key wrapped for every kiosk
        not revoked, in one transaction that holds the change sequence's lock. The new key is written beside the old
        one first and put in its place after the commit."""
        old = self.sealer()
        key = new_key()
        staged = self.key_file.with_name(self.key_file.name + ".new")
        staged.unlink(missing_ok=True)           # a rotation that never committed: its key sealed nothing
        write_private(staged, key)
        new = Sealer(key)
        with self.conn.transaction():
            self.conn.execute("SELECT pg_advisory_xact_lock(hashtext('edge_fleet.changes'))")
            rows = self.conn.execute("SELECT id, sealed, crop FROM edge_fleet.templates").fetchall()
            with self.conn.cursor() as cursor:
                cursor.executemany("UPDATE edge_fleet.templates SET sealed=%s, crop=%s, key_id=%s WHERE id=%s",
                                   [(new.seal(old.open(blob)), new.seal(old.open(crop)) if crop else None,
                                     new.fingerprint, tid) for tid, blob, crop in rows])
            visitors = self.conn.execute(
                "SELECT kiosk_id, local_id, looks, crop FROM edge_fleet.visitors").fetchall()
            with self.conn.cursor() as cursor:
                cursor.executemany("UPDATE edge_fleet.visitors SET looks=%s, crop=%s, key_id=%s "
                                   "WHERE kiosk_id=%s AND local_id=%s",
                                   [(new.seal(old.open(looks)), new.seal(old.open(crop)) if crop else None,
                                     new.fingerprint, kiosk, local) for kiosk, local, looks, crop in visitors])
            kiosks = self.conn.execute("SELECT id, public_key FROM edge_fleet.kiosks WHERE revoked IS NULL").fetchall()
            self.conn.execute("DELETE FROM edge_fleet.kiosk_keys")
            with self.conn.cursor() as cursor:
                cursor.executemany("INSERT INTO edge_fleet.kiosk_keys(kiosk_id, key_id, wrapped) VALUES (%s, %s, %s)",
                                   [(kid, new.fingerprint, wrap(key, public)) for kid, public in kiosks])
            self.conn.execute("UPDATE edge_fleet.meta SET value=%s WHERE key='key_id'", (new.fingerprint,))
            self._audit("rotate-key", {"key_id": new.fingerprint, "templates": len(rows)})
        os.replace(staged, self.key_file)
        return len(rows)

    def status(self) -> dict:
        """The fleet at a glance: people, kiosks (last seen, how far behind, replica age, bundle, liveness),
        erasures some kiosk has not applied yet, and records that may be one person enrolled twice."""
        q = self.conn.execute
        head = q("SELECT coalesce(max(seq), 0) FROM edge_fleet.changes").fetchone()[0]
        people, suspended = q("SELECT count(*), count(*) FILTER (WHERE suspended) FROM edge_fleet.people").fetchone()
        kiosks = [dict(zip(("kiosk", "revoked", "last_seen_s", "applied", "replica_age_s", "bundle", "liveness",
                            "note", "rollout"), row)) | {"behind": head - row[3]} for row in q(
            "SELECT id, revoked IS NOT NULL, extract(epoch FROM now() - last_seen)::float8, applied_seq, "
            "replica_age_s, bundle, liveness, note, rollout FROM edge_fleet.kiosks ORDER BY id")]
        erasures = [{"person": person[:12], "seq": seq, "waiting_for": waiting} for person, seq, waiting in q(
            "SELECT e.person_id, e.seq, array_agg(k.id ORDER BY k.id) FROM edge_fleet.erased e "
            "JOIN edge_fleet.kiosks k ON k.applied_seq < e.seq AND k.revoked IS NULL "
            "GROUP BY e.person_id, e.seq ORDER BY e.seq")]
        duplicates = [{"name": name, "same_name_as": other} for name, other in q(
            "SELECT p.name, o.name FROM edge_fleet.people p JOIN edge_fleet.people o ON o.id = p.possible_duplicate_of "
            "ORDER BY p.name")]
        return {"people": people, "suspended": suspended, "changes": head, "kiosks": kiosks,
                "erasures_not_applied": erasures, "possible_duplicates": duplicates, **self.policy()}
