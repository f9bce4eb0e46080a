"""A fleet against a real PostgreSQL: Debian's server started here as an unprivileged user on a free port
(benchmarks.pg_cluster), kiosk processes (python -m edge fleet sync) each with its own gallery, and the admin.
Waits are on events (a replica holding what the server holds); propagation times are the benchmark's, not asserted."""
import os
import threading

import numpy as np
import psycopg
import pytest

from benchmarks.fleet import MODEL, FleetLab, outage, unit_vectors, wait_until
from benchmarks.pg_cluster import postgres_bin
from edge.base.errors import UserError
from edge.commands.cli import main
from edge.fleet.credentials import KioskCredentials
from edge.fleet.keys import new_kiosk_pair
from edge.fleet.server import connect, require_server_version
from edge.fleet.sync import FleetSync
from edge.gallery.sqlite import SqliteGallery

pytestmark = pytest.mark.fleet


@pytest.fixture
def lab(tmp_path):
    try:
        postgres_bin("initdb")
    except UserError as err:
        if os.environ.get("CI"):
            pytest.fail(f"{err} (.ci/run installs it)")
        pytest.skip(str(err))
    fleet = FleetLab(tmp_path, 3)
    yield fleet
    fleet.close()


def at(lab, kiosk, act):
    """Does ``act(people)`` on a kiosk's own gallery, as its page or command line would."""
    gallery = SqliteGallery(lab.gallery(kiosk))
    try:
        return act(gallery.people)
    finally:
        gallery.close()


def names(held: dict) -> dict:
    return {name: (suspended, templates) for name, suspended, templates in held.values()}


def replica(lab, kiosk, **options) -> FleetSync:
    return FleetSync(KioskCredentials.read(lab.credentials(kiosk)), lab.gallery(kiosk), **options)


def test_enrol_rename_suspend_and_remove_at_different_kiosks_converge_on_every_replica(lab):
    lab.start_all()

    def enrol_five(kiosk):
        at(lab, kiosk, lambda people: [people.enroll(f"{kiosk} person {i}", unit_vectors(2, i), MODEL,
                                                     ["camera", "camera"], consent="yes") for i in range(5)])

    threads = [threading.Thread(target=enrol_five, args=(k,)) for k in lab.kiosks]
    for thread in threads:
        thread.start()
    lab.admin.enrol("desk person", unit_vectors(3, 99), MODEL, ["desk"] * 3, "yes")
    for thread in threads:
        thread.join()
    wait_until(lab.converged, 60, "the enrolments to reach every replica")
    assert len(lab.on_server()) == 16

    # at once, at three kiosks and the desk, each on a person enrolled elsewhere
    acts = [("door-0", lambda people: people.rename("door-1 person 0", "renamed at door-0")),
            ("door-1", lambda people: people.suspend("door-2 person 1")),
            ("door-2", lambda people: people.remove("door-0 person 2")),
            ("door-2", lambda people: people.enroll("door-1 person 3", unit_vectors(1, 7), MODEL, ["camera"],
                                                    consent="yes", add=True))]
    threads = [threading.Thread(target=at, args=(lab, kiosk, act)) for kiosk, act in acts]
    for thread in threads:
        thread.start()
    lab.admin.rename("desk person", "renamed at the desk")
    for thread in threads:
        thread.join()
    wait_until(lab.converged, 60, "the changes to reach every replica")
    held = names(lab.held("door-1"))
    assert "door-1 person 0" not in held and held["renamed at door-0"] == (False, 2)
    assert held["door-2 person 1"] == (True, 2)
    assert "door-0 person 2" not in held
    assert held["door-1 person 3"] == (False, 3)                # added at door-2 to door-1's person
    assert held["renamed at the desk"] == (False, 3)
    assert len(held) == 15                                     # 16 acknowledged, one erased: nothing lost


def test_a_30_s_server_outage_loses_and_duplicates_no_decision_or_enrolment(lab):
    lab.start_all()
    counts = outage(lab, 30)
    assert counts["events_logged"] > 100 and counts["enrolments_made"] > 5
    assert counts["events_lost"] == counts["events_duplicated"] == 0
    assert counts["enrolments_lost"] == counts["enrolments_duplicated"] == 0


def applied(lab, kiosk) -> int:
    import sqlite3

    with sqlite3.connect(f"file:{lab.gallery(kiosk)}?mode=ro", uri=True) as db:
        row = db.execute("SELECT value FROM meta WHERE key='fleet_applied'").fetchone()
    return int(row[0]) if row else 0


def test_a_kiosk_killed_while_applying_resumes_where_it_was(lab):
    with lab.admin.conn.transaction():
        for index in range(8000):
            lab.admin.enrol(f"person {index}", unit_vectors(1, index), MODEL, ["desk"], "yes")
    lab.start("door-0")
    wait_until(lambda: applied(lab, "door-0") > 0, 120, "the first batch to be applied")
    lab.kill("door-0")
    at_kill = applied(lab, "door-0")
    assert 0 < at_kill and at_kill % 2000 == 0                  # whole batches only
    held = lab.held("door-0")
    assert len(held) == at_kill and all(templates == 1 for _, _, templates in held.values())
    lab.start("door-0")
    wait_until(lambda: lab.converged(["door-0"]), 120, "the restarted kiosk to catch up")
    assert applied(lab, "door-0") == 8000


def test_a_kiosk_offline_during_a_removal_erases_on_return_before_anything_else(lab):
    for name in ("Ann", "Bob"):
        lab.admin.enrol(name, unit_vectors(1, len(name)), MODEL, ["desk"], "yes")
    kiosk = replica(lab, "door-0")
    kiosk.sync_once()
    kiosk.close()                                              # offline
    lab.admin.remove("Ann")
    lab.admin.enrol("Cid", unit_vectors(1, 3), MODEL, ["desk"], "yes")
    lab.admin.enrol("Dan", unit_vectors(1, 4), MODEL, ["desk"], "yes")
    # the server's sequence loses Cid's change (a damaged database): the round stops, nothing of it is applied ...
    lab.admin.conn.execute("DELETE FROM edge_fleet.changes WHERE seq = 4")
    kiosk = replica(lab, "door-0")
    with pytest.raises(UserError, match="gap: change 4 is missing") as refused:
        kiosk.sync_once()
    assert "\n" not in str(refused.value)
    # ... but the erasure, applied before anything else, was
    assert names(lab.held("door-0")) == {"Bob": (False, 1)} and applied(lab, "door-0") == 2
    kiosk.close()


def test_a_kiosk_role_cannot_delete_people_read_other_kiosks_keys_or_log_as_another(lab):
    lab.admin.enrol("Ann", unit_vectors(1, 1), MODEL, ["desk"], "yes")
    credentials = KioskCredentials.read(lab.credentials("door-0"))
    conn = psycopg.connect(credentials.url, password=credentials.password, autocommit=True)
    try:
        assert conn.execute("SELECT count(*) FROM edge_fleet.templates").fetchone()[0] == 1   # it may read them
        for statement in ("DELETE FROM edge_fleet.people", "DELETE FROM edge_fleet.templates",
                          "SELECT * FROM edge_fleet.kiosk_keys", "SELECT * FROM edge_fleet.kiosks",
                          "SELECT edge_fleet.record_change('door-1', 1, 'erase', 'x', '{}', '[]')",
                          "SELECT edge_fleet.push_change(1, 'groups', 'x', '{\"groups\": [\"staff\"]}', '[]')",
                          "SELECT edge_fleet.push_change(2, 'policy', '-', '{\"key\": \"doors\"}', '[]')",
                          "UPDATE edge_fleet.policy SET value = '{}'",
                          "INSERT INTO edge_fleet.events(kiosk_id, local_seq) VALUES ('door-1', 1)"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
        assert conn.execute("SELECT count(*) FROM edge_fleet.people").fetchone()[0] == 1
        # its own key: wrapped to it, and to it only
        assert conn.execute("SELECT count(*) FROM edge_fleet.my_key()").fetchone()[0] == 1
    finally:
        conn.close()


def test_a_revoked_kiosk_reads_nothing_and_the_others_open_with_the_rotated_key(lab):
    lab.admin.enrol("Ann", unit_vectors(2, 1), MODEL, ["desk", "desk"], "yes")
    stolen = KioskCredentials.read(lab.credentials("door-2"))
    held_open = psycopg.connect(stolen.url, password=stolen.password, autocommit=True)
    old_key = lab.admin.key()
    assert lab.admin.revoke("door-2") == 2                      # Ann's two templates re-sealed
    assert lab.admin.key() != old_key
    with pytest.raises(psycopg.OperationalError):               # its open session was ended
        held_open.execute("SELECT count(*) FROM edge_fleet.templates")
    with pytest.raises(UserError, match="may not log in"):
        connect(stolen.url, stolen.password)
    lab.admin.enrol("Eve", unit_vectors(1, 5), MODEL, ["desk"], "yes")
    for kiosk in ("door-0", "door-1"):
        replica(lab, kiosk).sync_once()
        gallery = SqliteGallery(lab.gallery(kiosk))
        templates = gallery.people.templates(MODEL)
        gallery.close()
        ann = unit_vectors(2, 1).mean(axis=0)
        assert templates.names == ["Ann", "Eve"]
        np.testing.assert_allclose(templates.matrix[0], ann / np.linalg.norm(ann), atol=1e-6)
        np.testing.assert_allclose(templates.matrix[1], unit_vectors(1, 5)[0], atol=1e-6)


def test_door_rules_groups_and_settings_set_at_the_desk_reach_the_kiosk_and_retention_runs_centrally(lab):
    from edge.fleet.access import parse_rule

    lab.admin.enrol("Ann", unit_vectors(1, 1), MODEL, ["desk"], "yes")
    lab.admin.enrol("Bob", unit_vectors(1, 2), MODEL, ["desk"], "yes")
    lab.admin.set_groups("Ann", ["staff"])
    lab.admin.set_door("door-0", [parse_rule("staff", "all", "00:00-24:00")])
    lab.admin.update_settings({"door_interval_s": 4.0, "keep_unknown_days": 7.0, "timezone": "Europe/Berlin"})
    with pytest.raises(UserError, match="no kiosk 'door-9'"):
        lab.admin.set_door("door-9", [])
    kiosk = replica(lab, "door-0")
    kiosk.sync_once()
    gallery = SqliteGallery(lab.gallery("door-0"))
    groups = gallery.people.templates(MODEL).groups
    assert groups == {"Ann": frozenset({"staff"}), "Bob": frozenset()}
    assert kiosk.barred(groups["Ann"]) == "" and kiosk.barred(groups["Bob"]) == "not allowed here now"
    assert kiosk.settings() == {"door_interval_s": 4.0, "keep_unknown_days": 7.0, "timezone": "Europe/Berlin"}
    other = replica(lab, "door-1")                               # a door without rules opens for everyone
    other.sync_once()
    assert other.barred(frozenset()) == ""
    other.close()
    # decisions sent to the server go when the fleet's retention says, there too
    gallery.events.log([{"outcome": "unknown"}, {"identity": "Ann", "outcome": "named"}])
    gallery.close()
    kiosk.sync_once()
    lab.admin.conn.execute("UPDATE edge_fleet.events SET received = now() - interval '8 days'")
    kiosk.sync_once()
    left = lab.admin.conn.execute("SELECT identity FROM edge_fleet.events").fetchall()
    assert left == [("Ann",)]                                    # named decisions: no retention set for them
    lab.admin.rename("Ann", "Ann Lee")                           # her decisions follow, so an erasure finds them
    assert lab.admin.conn.execute("SELECT identity FROM edge_fleet.events").fetchall() == [("Ann Lee",)]
    lab.admin.remove("Ann Lee")
    assert lab.admin.conn.execute("SELECT count(*) FROM edge_fleet.events").fetchone()[0] == 0
    lab.admin.set_door("door-0", None)
    kiosk.sync_once()
    assert kiosk.barred(frozenset()) == ""
    kiosk.close()


def test_a_rolled_out_bundle_is_installed_with_each_kiosks_checks_or_refused_saying_why(lab, verify_bundle, tmp_path,
                                                                                       monkeypatch):
    from edge.bundles.installed import current_bundle
    from edge.commands.bundle_cli import install_checked
    from edge.fleet.rollout import bundle_id
    from edge.runtime.manifest import read_manifest

    target = lab.admin.rollout(verify_bundle)
    board = read_manifest(verify_bundle).board
    assert target["board"] == board and target["bundle"] == bundle_id(verify_bundle)
    facts = {"board": board, "bundle_id": "the bundle it ran before", "bundle": "old"}
    kiosk = replica(lab, "door-0", facts=lambda: facts, installer=lambda folder: install_checked(folder).name)
    kiosk.sync_once()
    assert kiosk.rollout_state.startswith(f"installed {verify_bundle.name}: ")
    assert bundle_id(current_bundle()) == target["bundle"]            # this kiosk's home (trusting the signer)
    kiosk.sync_once()                                                  # a target is tried once, not every round
    kiosk.close()
    # a kiosk that trusts no key refuses it, keeps what it ran, and says why in the fleet's status
    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "untrusting"))
    other = replica(lab, "door-1", facts=lambda: facts, installer=lambda folder: install_checked(folder).name)
    other.sync_once()
    assert other.rollout_state.startswith(f"kept its bundle, refused {verify_bundle.name}: ")
    assert not (tmp_path / "untrusting" / "bundles" / "current").exists()
    other.close()
    rollouts = {k["kiosk"]: k["rollout"] for k in lab.admin.status()["kiosks"]}
    assert rollouts["door-0"].startswith("installed") and rollouts["door-1"].startswith("kept its bundle")
    assert rollouts["door-2"] is None


def test_kept_crops_go_sealed_to_the_server_and_a_new_models_templates_reach_every_kiosk(lab, verify_bundle,
                                                                                        tmp_path):
    import cv2
    from synthetic_faces.dataset import write_identity_folders

    from edge.faces.pipeline import open_pipeline
    from edge.gallery.store import EmbeddingKey

    write_identity_folders(tmp_path / "photos", 2, 2, seed=500)
    pipeline = open_pipeline(verify_bundle)
    looks = {folder.name: [pipeline.faces.enrolment_look(cv2.imread(str(p))) for p in sorted(folder.glob("*.png"))]
             for folder in sorted((tmp_path / "photos").iterdir()) if folder.is_dir()}
    older = EmbeddingKey("an older model", "older space", "onnx:fp32")
    ann, bob = looks["id0500"], looks["id0501"]
    lab.admin.enrol("Ann", [v for v, _, _ in ann], older, ["desk", "desk"], "yes", crops=[c for _, c, _ in ann])
    # Bob enrols at a kiosk, keeping his crops: they go to the server sealed with the fleet key, like his templates
    kiosk = replica(lab, "door-0")
    kiosk.sync_once()
    at(lab, "door-0", lambda people: people.enroll("Bob", np.stack([v for v, _, _ in bob]), older, ["camera"] * 2,
                                                   consent="yes", crops=[c for _, c, _ in bob]))
    kiosk.sync_once()
    crops = [bytes(c) for (c,) in lab.admin.conn.execute("SELECT crop FROM edge_fleet.templates")]
    assert len(crops) == 4 and not any(c.startswith(b"\xff\xd8") for c in crops)      # never a JPEG in the clear
    lab.admin.enrol("Cid", [v for v, _, _ in bob], older, ["desk"] * 2, "yes")            # no crops kept
    lab.admin.revoke("door-2")                                                             # crops re-sealed too
    done = lab.admin.reembed(pipeline.faces.key, pipeline.faces.enrolment_embedding_of_jpeg)
    assert done.made == {"Ann": 2, "Bob": 2} and done.refused == [] and done.must_enrol == ["Cid"]
    assert lab.admin.reembed(pipeline.faces.key, pipeline.faces.enrolment_embedding_of_jpeg).made == {}
    kiosk.sync_once()
    gallery = SqliteGallery(lab.gallery("door-0"))
    assert gallery.people.templates(pipeline.faces.key).names == ["Ann", "Bob"]
    gallery.close()
    kiosk.close()
    pipeline.close()


def test_kept_visitors_reach_the_desk_sealed_and_are_named_or_forgotten_everywhere(lab):
    from edge.gallery.store import NotLive

    looks = unit_vectors(3, 40)
    gallery = SqliteGallery(lab.gallery("door-0"))
    live = gallery.visitors.add(looks, b"a jpeg", MODEL, {"outcome": "unknown", "liveness": {"verdict": "live"}})
    attack = gallery.visitors.add(looks[:1], None, MODEL, {"outcome": "named", "liveness": {"verdict": "attack"}})
    passer = gallery.visitors.add(looks[:1], None, MODEL, {"outcome": "unknown", "liveness": {"verdict": "live"}})
    kiosk = replica(lab, "door-0")
    kiosk.sync_once()
    assert [(v["visitor"], v["liveness"], v["has_crop"]) for v in lab.admin.visitors()] == [
        (passer, "live", False), (attack, "attack", False), (live, "live", True)]
    stored = b"".join(bytes(row[0]) for row in lab.admin.conn.execute("SELECT looks FROM edge_fleet.visitors"))
    assert looks[0].tobytes()[:16] not in stored                        # sealed with the fleet key
    # another kiosk neither sees nor deletes them
    other = KioskCredentials.read(lab.credentials("door-1"))
    with psycopg.connect(other.url, password=other.password, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM edge_fleet.visitors").fetchone()[0] == 0
        assert conn.execute("DELETE FROM edge_fleet.visitors").rowcount == 0
    gallery.visitors.forget(passer)                                     # forgotten at the kiosk: on the server too
    gallery.close()
    kiosk.sync_once()
    with pytest.raises(NotLive):
        lab.admin.name_visitor("door-0", attack, "Eve", "yes")
    assert lab.admin.name_visitor("door-0", live, "Dee", "yes") == 3
    with pytest.raises(UserError, match=f"no kept visitor {live} of kiosk 'door-0'"):
        lab.admin.forget_visitor("door-0", live)
    lab.admin.forget_visitor("door-0", attack)
    assert lab.admin.visitors() == []
    kiosk.sync_once()                                                   # the kiosk forgets them too, and has Dee
    gallery = SqliteGallery(lab.gallery("door-0"))
    assert gallery.visitors.kept() == [] and [n for n, _ in gallery.people.identities()] == ["Dee"]
    gallery.close()
    kiosk.close()


def test_bad_input_is_one_line_and_applies_nothing(lab, tmp_path):
    def one_line(call, match):
        with pytest.raises(UserError, match=match) as refused:
            call()
        assert "\n" not in str(refused.value)

    port = lab.server.port
    one_line(lambda: connect("not a url"), "not a PostgreSQL URL")
    one_line(lambda: connect(f"postgresql://fleet_admin:wrong@127.0.0.1:{port}/postgres"), "password was refused")
    one_line(lambda: connect(f"postgresql://fleet_admin@127.0.0.1:{lab.server.port + 1 if port < 65535 else 1}/x"),
             "nothing answers")
    one_line(lambda: connect("postgresql://kiosk@fleet.example.org/db?sslmode=disable"), "TLS")
    one_line(lambda: require_server_version(120017, "the fleet's server"), "PostgreSQL 12.17; a fleet needs 13")
    one_line(lambda: lab.admin.add_kiosk("door-0", tmp_path / "again.json"), "in the fleet already")
    # a kiosk whose private key is not the one its fleet key was wrapped to
    good = KioskCredentials.read(lab.credentials("door-1"))
    KioskCredentials(good.kiosk, good.url, good.password, new_kiosk_pair()[0]).write(tmp_path / "wrong.json")
    wrong = FleetSync(KioskCredentials.read(tmp_path / "wrong.json"), lab.gallery("door-1"))
    lab.admin.enrol("Ann", unit_vectors(1, 1), MODEL, ["desk"], "yes")
    one_line(wrong.sync_once, "does not open with its private key")
    assert lab.held("door-1") == {}
    wrong.close()
    # a second gallery with the same kiosk's credentials
    replica(lab, "door-1").sync_once()
    SqliteGallery(tmp_path / "second.db", create=True).close()
    twice = FleetSync(good, tmp_path / "second.db")
    one_line(twice.sync_once, "already in use by another gallery")
    twice.close()
    # the admin holding another fleet key
    lab.admin.key_file.write_bytes(os.urandom(32))
    one_line(lab.admin.key, "put back the fleet's key")


def test_the_command_line_makes_a_fleet_adds_kiosks_and_reports(lab, tmp_path, monkeypatch, capsys, verify_bundle):
    lab.admin.conn.execute("CREATE DATABASE building")
    url = lab.server.admin_url().replace("/postgres", "/building")
    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    assert main(["fleet", "init", "--url", url]) == 0
    assert (tmp_path / "home" / "fleet" / "fleet.key").stat().st_mode & 0o777 == 0o600
    assert main(["fleet", "init", "--url", url]) == 2
    assert "holds a fleet already" in capsys.readouterr().err
    monkeypatch.setenv("PGPASSWORD", lab.server.password)       # the recorded URL holds no password
    assert main(["fleet", "add-kiosk", "lobby"]) == 0
    credentials = tmp_path / "home" / "fleet" / "kiosks" / "lobby.json"
    assert credentials.stat().st_mode & 0o777 == 0o600
    SqliteGallery(tmp_path / "lobby.db", create=True).close()
    assert main(["fleet", "sync", "--once", "--fleet", str(credentials), "--gallery", str(tmp_path / "lobby.db")]) == 0
    assert main(["fleet", "suspend", "nobody"]) == 2
    assert "'nobody' is not enrolled in the fleet" in capsys.readouterr().err
    assert main(["fleet", "door", "lobby", "--allow", "staff", "mon-fri", "07:00-19:00"]) == 0
    assert main(["fleet", "door", "lobby", "--allow", "staff", "weekdays", "07:00-19:00"]) == 2
    assert main(["fleet", "settings", "--door_interval", "5", "--require_liveness", "yes"]) == 0
    assert main(["fleet", "settings", "--liveness", "planar,textur"]) == 2
    assert "textur" in capsys.readouterr().err
    assert main(["fleet", "rollout", str(verify_bundle)]) == 0
    assert main(["fleet", "visitors"]) == 0 and "fleet: 0 kept visitors" in capsys.readouterr().out
    assert main(["fleet", "status"]) == 0
    out = capsys.readouterr().out
    assert "fleet: 0 people (0 suspended), 3 changes" in out and "lobby\tactive" in out
    assert f"rollout: host kiosks are to run {verify_bundle.name}" in out
    assert "door lobby: staff mon,tue,wed,thu,fri 07:00-19:00" in out
    assert 'settings: {"door_interval_s": 5.0, "require_liveness": true}' in out
    assert main(["fleet", "revoke", "lobby"]) == 0
    assert main(["fleet", "status"]) == 0
    assert "lobby\trevoked" in capsys.readouterr().out
