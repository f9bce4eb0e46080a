import base64
import re
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge.base.errors import UserError
from edge.gallery.sqlite import MIGRATIONS, SqliteGallery
from edge.gallery.store import EmbeddingKey

pytestmark = pytest.mark.unit


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v)


def test_enroll_and_templates_are_tied_to_the_model(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("alice", [_unit([1, 0, 0]), _unit([1, 0.1, 0])], "model-a", ["a1.png", "a2.png"])
    gallery.people.enroll("bob", [_unit([0, 1, 0])], "model-a", ["b.png"])
    gallery.people.enroll("carol", [_unit([0, 0, 1])], "model-b", ["c.png"])
    templates = gallery.people.templates("model-a")
    assert templates.names == ["alice", "bob"]
    assert templates.other_models == 1
    np.testing.assert_allclose(np.linalg.norm(templates.matrix, axis=1), 1, atol=1e-6)
    assert gallery.people.templates("model-c").names == [] and gallery.people.templates("model-c").other_models == 4
    assert dict(gallery.people.identities()) == {"alice": 2, "bob": 1, "carol": 1}
    assert gallery.people.remove("bob") and not gallery.people.remove("bob")
    gallery.close()


def test_templates_of_a_recompiled_file_are_usable_only_where_compile_measured_it(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    old_int8 = EmbeddingKey("sha-old-int8", "ckpt:dlib150", "onnx:int8", ("onnx:fp32",))
    gallery.people.enroll("alice", [_unit([1, 0, 0])], old_int8, ["photos/alice/1.jpg"])
    people = gallery.people
    people.enroll("bob", [_unit([0, 1, 0])], EmbeddingKey("sha-old-fp32", "ckpt:dlib150", "onnx:fp32"), ["b.jpg"])
    people.enroll("carol", [_unit([0, 0, 1])], EmbeddingKey("sha-other", "other:arcface112", "onnx:fp32"), ["c"])
    # A new INT8 file of the same checkpoint and crop, whose cross pairs with FP32 files passed the gate.
    new_int8 = EmbeddingKey("sha-new-int8", "ckpt:dlib150", "onnx:int8", ("onnx:fp32",))
    templates = gallery.people.templates(new_int8)
    assert templates.names == ["bob"]
    assert templates.stale == {"alice": ["photos/alice/1.jpg"], "carol": ["c"]}
    assert gallery.people.templates(old_int8).names == ["alice", "bob"]
    gallery.close()


def test_schema_version_and_wal(tmp_path):
    SqliteGallery(tmp_path / "g.db", create=True).close()
    db = sqlite3.connect(tmp_path / "g.db")
    assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    db.execute(f"PRAGMA user_version={len(MIGRATIONS) + 1}")
    db.commit()
    db.close()
    with pytest.raises(UserError, match="newer than this runtime"):
        SqliteGallery(tmp_path / "g.db", create=True)


def test_failed_enrolment_writes_nothing(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    rows = np.zeros((2, 3), np.float32)
    with pytest.raises(sqlite3.Error):                     # an unbindable source fails after the identity insert
        gallery.people.enroll("dave", rows, "m", ["x", object()])
    assert gallery.people.identities() == []


def test_events_are_logged(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.events.log([{"frame": 1, "identity": None, "score": 0.1, "box": [1, 2, 3, 4]}] * 3)
    gallery.events.log([{"frame": 9, "identity": "ann", "score": 0.9, "track": 4, "outcome": "named",
                         "reason": "2 looks"}])
    assert gallery.events.count() == 4
    row = gallery._db.execute("SELECT track, outcome, reason FROM events WHERE frame=9").fetchone()
    assert row == (4, "named", "2 looks")


def test_corrupt_database_is_refused(tmp_path):
    path = tmp_path / "g.db"
    path.write_bytes(b"this is not sqlite" * 100)
    path.chmod(0o600)
    with pytest.raises(UserError, match="not a usable gallery"):
        SqliteGallery(path)


@pytest.mark.parametrize("create", [False, True])
def test_an_empty_a_readable_or_a_folder_gallery_is_refused_never_made_anew(tmp_path, create):
    path = tmp_path / "gallery.db"
    path.touch(mode=0o600)
    with pytest.raises(UserError, match=r"is empty \(0 bytes\), not a gallery"):
        SqliteGallery(path, create=create)
    assert path.stat().st_size == 0 and not (tmp_path / "gallery.db.key").exists()
    path.unlink()
    SqliteGallery(path, create=True).close()
    path.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users; chmod 600"):
        SqliteGallery(path, create=create)
    folder = tmp_path / "folder.db"
    folder.mkdir()
    with pytest.raises(UserError, match="is not a file"):
        SqliteGallery(folder, create=create)


def test_gallery_create_makes_an_empty_private_gallery_once(tmp_path, capsys):
    from edge.commands.cli import main

    path = tmp_path / "home" / "gallery.db"
    assert main(["gallery", "--create", "--gallery", str(path)]) == 0
    assert path.stat().st_mode & 0o777 == 0o600 and SqliteGallery(path).people.identities() == []
    assert main(["gallery", "--create", "--gallery", str(path)]) == 2
    assert "a gallery is never replaced" in capsys.readouterr().err


def test_gallery_cli_lists_and_removes(tmp_path, capsys):
    from edge.commands.cli import main

    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    gallery.people.enroll("alice", [_unit([1, 0])], "m", ["a.png"])
    gallery.close()
    assert main(["gallery", "--gallery", str(path)]) == 0
    assert "alice\t1 templates" in capsys.readouterr().out
    assert main(["gallery", "--gallery", str(path), "--remove", "alice"]) == 0
    assert main(["gallery", "--gallery", str(path), "--remove", "alice"]) == 2
    assert "'alice' is not enrolled" in capsys.readouterr().err


def test_a_missing_gallery_is_refused_and_never_created_by_a_read(tmp_path, capsys, monkeypatch):
    from edge.commands.cli import main

    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    assert main(["gallery"]) == 2
    assert f"no gallery at {tmp_path / 'home' / 'gallery.db'}: enrol someone first" in capsys.readouterr().err
    assert main(["gallery", "--gallery", str(tmp_path / "typo.db")]) == 2
    assert not (tmp_path / "home").exists() and not (tmp_path / "typo.db").exists()


def test_a_new_gallery_is_private_to_its_user(tmp_path):
    path = tmp_path / "home" / "gallery.db"
    SqliteGallery(path, create=True).close()
    assert path.stat().st_mode & 0o777 == 0o600 and path.parent.stat().st_mode & 0o777 == 0o700


def test_removing_a_person_leaves_no_trace_of_their_template_in_the_files(tmp_path):
    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    secret = np.random.default_rng(7).standard_normal((2, 128)).astype(np.float32)
    other = np.random.default_rng(8).standard_normal((1, 128)).astype(np.float32)
    gallery.people.enroll("ann", secret, "m", ["ann1.png", "ann2.png"])
    gallery.people.enroll("bob", other, "m", ["bob.png"])
    gallery.events.log([{"frame": 3, "identity": "ann", "score": 0.97, "outcome": "named"}])

    def files() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("g.db"))
    sealed = [blob for (blob,) in gallery._db.execute("SELECT embedding FROM templates WHERE source LIKE 'ann%'")]
    data = files()
    assert secret[0].tobytes() not in data and other[0].tobytes() not in data      # encrypted at rest
    assert all(blob in data for blob in sealed)
    assert gallery.people.remove("ann")
    data = files()
    assert not any(blob in data for blob in sealed) and b"ann1.png" not in data
    assert gallery.people.templates("m").names == ["bob"]
    assert gallery.people.identities() == [("bob", 1)] and gallery.events.count() == 0
    gallery.close()


def test_a_damaged_gallery_is_moved_aside_and_reported_never_replaced(tmp_path):
    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    gallery.people.enroll("ann", np.ones((40, 128), np.float32), "m", [f"{i}.png" for i in range(40)])
    gallery._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    gallery.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[2 * page:2 * page + 8] = b"\x07" * 8                        # scribble over a table page's header
    path.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"failed SQLite's integrity check .* moved to .*g\.db\.broken-") as caught:
        SqliteGallery(path)
    moved = str(caught.value).split("moved to ")[1].split(" ")[0]
    assert not path.exists() and Path(moved).exists()


def test_one_persons_data_is_exported_with_consent_templates_and_decisions(tmp_path, capsys):
    from edge.commands.cli import main

    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    gallery.people.enroll("ann", [_unit([1, 0])], "m", ["a.png"], consent="yes")
    gallery.events.log([{"frame": 5, "identity": "ann", "score": 0.99, "outcome": "named", "reason": "2 looks"}])
    gallery.close()
    out = tmp_path / "ann.json"
    assert main(["gallery", "--gallery", str(path), "--export", "ann", "--out", str(out)]) == 0
    exported = json.loads(out.read_text())
    assert exported["name"] == "ann" and exported["consent"].startswith("yes at ")
    assert np.frombuffer(base64.b64decode(exported["templates"][0]["embedding"]), np.float32).tolist() == [1, 0]
    assert exported["decisions"][0]["outcome"] == "named" and out.stat().st_mode & 0o777 == 0o600
    assert main(["gallery", "--gallery", str(path), "--export", "ann", "--out", str(out)]) == 2
    assert main(["gallery", "--gallery", str(path), "--export", "zed"]) == 2
    assert "'zed' is not enrolled" in capsys.readouterr().err
    assert main(["gallery", "--gallery", str(path), "--import", str(out)]) == 2        # ann is still enrolled
    assert "'ann' is already enrolled" in capsys.readouterr().err
    other = tmp_path / "other.db"
    SqliteGallery(other, create=True).close()
    assert main(["gallery", "--gallery", str(other), "--import", str(out)]) == 0
    moved = SqliteGallery(other)
    assert moved.people.identities() == [("ann", 1)] and moved.people.templates("m").names == ["ann"]
    assert moved.people.export_person("ann")["consent"] == exported["consent"]
    moved.close()


def test_retention_keeps_decisions_that_named_someone_longer_than_unknown_ones(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.events.log([{"frame": 1, "identity": None, "outcome": "unknown"},
                        {"frame": 2, "identity": "ann", "outcome": "named"}])
    old = "2020-01-01T00:00:00.000+00:00"
    gallery._db.execute("UPDATE events SET time=?", (old,))
    gallery.events.log([{"frame": 3, "identity": None, "outcome": "unknown"}])          # today's
    assert gallery.events.prune(unknown_days=7, named_days=10_000) == 1                        # the old unknown one
    assert [r[0] for r in gallery._db.execute("SELECT frame FROM events ORDER BY frame")] == [2, 3]
    assert gallery.events.prune(unknown_days=7, named_days=30) == 1 and gallery.events.count() == 1
    kept = gallery.visitors.add(np.ones((2, 4), np.float32), b"jpeg bytes", EmbeddingKey("m"), {"outcome": "unknown"})
    assert gallery.visitors.crop(kept) == b"jpeg bytes" and b"jpeg bytes" not in (tmp_path / "g.db").read_bytes()
    gallery._db.execute("UPDATE visitors SET time=?", (old,))
    assert gallery.events.prune(unknown_days=7, named_days=30) == 1 and gallery.visitors.kept() == []     # crops go too
    gallery.close()


def test_templates_are_encrypted_with_a_private_key_that_is_never_silently_replaced(tmp_path):
    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    vector = _unit([0.6, 0.8])
    gallery.people.enroll("ann", [vector], "m", ["a.png"])
    gallery.close()
    key = tmp_path / "g.db.key"
    assert key.stat().st_mode & 0o777 == 0o600 and vector.tobytes() not in path.read_bytes()
    np.testing.assert_allclose(SqliteGallery(path).people.templates("m").matrix[0], vector, rtol=1e-6)
    key.rename(tmp_path / "elsewhere.key")
    with pytest.raises(UserError, match=r"g\.db\.key is missing: the gallery's templates cannot be read"):
        SqliteGallery(path, create=True)
    assert not key.exists()
    (tmp_path / "elsewhere.key").rename(key)
    key.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users"):
        SqliteGallery(path)


def test_templates_written_before_encryption_are_sealed_on_first_open(tmp_path):
    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    gallery.people.enroll("ann", [_unit([1, 0])], "m", ["a.png"])
    plain = _unit([0, 1])
    gallery._db.execute("UPDATE templates SET embedding=?, sealed=0", (plain.tobytes(),))   # as an old gallery
    gallery.close()
    reopened = SqliteGallery(path)
    assert reopened._db.execute("SELECT sealed FROM templates").fetchone()[0] == 1
    np.testing.assert_allclose(reopened.people.templates("m").matrix[0], plain)
    reopened.close()


@pytest.mark.parametrize("name, message", [
    ("x" * 1_000_000, "at most 64 characters"),
    ("ann\0", "control or invisible characters (U+0000)"),
    ("ann\nbob\t2 templates", "control or invisible characters (U+0009, U+000A)"),
    ("\u202eevil", "control or invisible characters (U+202E)"),
    ("../../etc/passwd", "path separator"),
    ("..", "path separator"),
    ("", "must not be empty"),
    (" ann", "begins or ends with a space"),
    ("Zoe\u0301", "not in Unicode NFC form"),
])
def test_one_rule_for_names_refuses_in_one_line(tmp_path, name, message):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    with pytest.raises(UserError) as refused:
        gallery.people.enroll(name, [_unit([1, 0])], "m", ["a.png"])
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert gallery.people.identities() == []
    gallery.close()


def test_names_in_any_script_are_welcome_and_an_enrolled_name_needs_an_explicit_add(tmp_path):
    from edge.gallery.store import AlreadyEnrolled

    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    for name in ("Zoë Ångström-Brontë", "李雷", "O'Neil Jr."):
        assert gallery.people.enroll(name, [_unit([1, 0])], "m", ["a.png"]) == 1
    with pytest.raises(AlreadyEnrolled, match=r"'李雷' is already enrolled \(1 templates\): to add these faces"):
        gallery.people.enroll("李雷", [_unit([0, 1])], "m", ["b.png"])
    assert gallery.people.enroll("李雷", [_unit([0, 1])], "m", ["b.png"], add=True) == 1
    assert dict(gallery.people.identities())["李雷"] == 2
    gallery.close()


def test_a_key_copied_from_another_gallery_is_refused_for_any_read_or_write_naming_both_files(tmp_path):
    ours, theirs = tmp_path / "ours.db", tmp_path / "theirs.db"
    for path, name in ((ours, "ann"), (theirs, "bob")):
        gallery = SqliteGallery(path, create=True)
        gallery.people.enroll(name, [_unit([1, 0])], "m", ["a.png"])
        gallery.close()
    original = (tmp_path / "ours.db.key").read_bytes()
    (tmp_path / "ours.db.key").write_bytes((tmp_path / "theirs.db.key").read_bytes())
    for create in (False, True):                            # a read, and an enrolment
        with pytest.raises(UserError) as refused:
            SqliteGallery(ours, create=create)
        message = str(refused.value)
        assert "ours.db was sealed with the key" in message and "ours.db.key is the key" in message
    (tmp_path / "ours.db.key").write_bytes(original)
    assert SqliteGallery(ours).people.templates("m").names == ["ann"]


def _export(name="zed", dim=2, vector=(0.6, 0.8), model="m"):
    raw = np.asarray(vector, np.float32).tobytes()
    return {"name": name, "templates": [{"embedding": base64.b64encode(raw).decode(), "dim": dim, "model": model}]}


@pytest.mark.parametrize("exported, message", [
    (_export(dim=3), "holds 8 bytes, not 12"),
    (_export(vector=(0.6, 0.8, 0.0), dim=3), "[2, 3]-dimensional templates of one model"),
    (_export(vector=(float("nan"), 1.0)), "not a finite unit vector"),
    (_export(vector=(3.0, 4.0)), "not a finite unit vector"),
    (_export(name=""), "must not be empty"),
    (_export(name="a\nb"), "control or invisible"),
    (_export(dim="2"), "needs a dim from 1 to 4096"),
    ({"name": "zed", "templates": []}, "holds no templates"),
])
def test_an_import_is_checked_whole_before_anything_is_applied(tmp_path, exported, message):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("ann", [_unit([1, 0])], "m", ["a.png"])
    with pytest.raises(UserError, match=re.escape(message)):
        gallery.people.import_person(exported)
    assert gallery.people.identities() == [("ann", 1)]
    assert gallery.people.import_person(_export()) == 1 and gallery.people.templates("m").names == ["ann", "zed"]
    gallery.close()


def test_names_from_before_the_rule_are_listed_safely_and_can_be_removed_and_exported(tmp_path, capsys):
    from edge.commands.cli import main

    path = tmp_path / "g.db"
    gallery = SqliteGallery(path, create=True)
    gallery.people.enroll("ann", [_unit([1, 0])], "m", ["a.png"])
    for legacy in ("", "eve\nmallory\t9 templates"):           # as an old runtime let them in
        gallery._db.execute("INSERT INTO identities(name, created) VALUES (?, 'then')", (legacy,))
    gallery.close()
    assert main(["gallery", "--gallery", str(path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == ["''\t0 templates", "ann\t1 templates", "'eve\\nmallory\\t9 templates'\t0 templates"]
    assert main(["gallery", "--gallery", str(path), "--export", ""]) == 0
    assert json.loads(capsys.readouterr().out)["name"] == ""
    for legacy in ("", "eve\nmallory\t9 templates"):
        assert main(["gallery", "--gallery", str(path), "--remove", legacy]) == 0
    assert [n for n, _ in SqliteGallery(path).people.identities()] == ["ann"]


def test_only_a_visitor_judged_live_is_enrolled_from_the_kiosks_camera(tmp_path):
    from edge.gallery.store import NotLive

    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    kept = {verdict: gallery.visitors.add(np.stack([_unit([0, 1])]), None, EmbeddingKey("m"),
                                          {"outcome": "unknown", "liveness": {"verdict": verdict} if verdict else None})
            for verdict in ("attack", "insufficient", None, "off", "live")}
    for verdict in ("attack", "insufficient", None):
        with pytest.raises(NotLive, match=f"not judged live \\(liveness {verdict or 'not judged'}\\)"):
            gallery.visitors.name(kept[verdict], f"v{verdict}", consent="yes")
    assert {v["liveness"] for v in gallery.visitors.kept()} == {"attack", "insufficient", None, "off", "live"}
    assert gallery.visitors.name(kept["live"], "ann", consent="yes") == 1
    assert gallery.visitors.name(kept["off"], "bob", consent="yes") == 1           # a kiosk run with --no_liveness
    gallery.close()


def test_naming_a_visitor_enrols_and_forgets_in_one_transaction(tmp_path):
    gallery = SqliteGallery(tmp_path / "g.db", create=True)
    gallery.people.enroll("ann", [_unit([1, 0])], "m", ["a.png"])
    kept = gallery.visitors.add(np.stack([_unit([0, 1])]), None, EmbeddingKey("m"),
                                {"outcome": "unknown", "liveness": {"verdict": "live"}})
    with pytest.raises(UserError, match="already enrolled"):
        gallery.visitors.name(kept, "ann", consent="yes")
    assert [v["id"] for v in gallery.visitors.kept()] == [kept]            # refused: the visitor is still kept
    statements = []
    gallery._db.set_trace_callback(statements.append)
    assert gallery.visitors.name(kept, "ann", consent="yes", add=True) == 1
    gallery._db.set_trace_callback(None)
    assert sum(s.startswith("BEGIN") for s in statements) == 1 and gallery.visitors.kept() == []
    assert dict(gallery.people.identities())["ann"] == 2
    gallery.close()
