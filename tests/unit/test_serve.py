"""``edge serve``'s API over a running kiosk loop: health, tokens and scopes, enrolment from photos (with the
reasons photos are refused), the gallery reloaded while the loop runs, removal, /metrics, "test this image"."""
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.base.errors import UserError
from edge.faces.pipeline import open_pipeline
from edge.gallery.sqlite import SqliteGallery
from edge.kiosk.service import KioskService
from edge.kiosk.tokens import load_or_create
from scripted_camera import Clock, ScriptedCamera

pytestmark = pytest.mark.unit
testclient = pytest.importorskip("fastapi.testclient")


@pytest.fixture
def served(verify_bundle, tmp_path):
    from edge.kiosk.web import create_app
    from synthetic_faces.dataset import write_identity_folders

    photos = tmp_path / "photos"
    write_identity_folders(photos, 1, 3, seed=500)
    gallery = tmp_path / "home" / "gallery.db"
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    pipeline = open_pipeline(verify_bundle, gallery_path=gallery, create_gallery=True)
    service = KioskService(pipeline, "synthetic://kiosk?seeds=500,501&frames_per_person=400&gap_frames=2")
    service.start()
    client = testclient.TestClient(create_app(service, tokens, gallery))
    yield client, tokens, sorted(photos.rglob("*.png")), service
    service.stop()
    pipeline.close()


def wait_for(condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


def test_health_status_frame_and_metrics(served):
    client, tokens, _, service = served
    wait_for(lambda: service.state.frames > 5)
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["camera"] == "streaming"
    assert client.get("/api/status").status_code == 401
    status = client.get("/api/status", headers=bearer(tokens["read"])).json()
    assert status["frames"] > 5 and status["enrolled"] == 0 and set(status["stages_p50_ms"]) >= {"detect", "total"}
    frame = client.get(f"/api/frame.jpg?token={tokens['read']}")
    assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).text
    for name in ("edge_face_fps", "edge_face_frames_total", 'edge_face_stage_latency_ms{stage="detect"}',
                 'edge_face_decisions_total{outcome="named"}', "edge_face_camera_reconnects_total",
                 "edge_face_camera_dropped_frames_total", "edge_face_camera_streaming 1.0"):
        assert name in metrics
    assert "kiosk" in client.get("/").text


def test_enrolment_needs_the_admin_token_and_consent_and_says_why_a_photo_is_refused(served, tmp_path):
    client, tokens, photos, service = served
    files = [("photos", (p.name, p.read_bytes(), "image/png")) for p in photos[:2]]
    assert client.post("/api/gallery", data={"name": "ann", "consent": "yes"}, files=files,
                       headers=bearer(tokens["read"])).status_code == 403
    assert client.post("/api/gallery", data={"name": "ann", "consent": "no"}, files=files,
                       headers=bearer(tokens["admin"])).status_code == 400
    two = np.hstack([cv2.imread(str(photos[0])), cv2.imread(str(photos[1]))])
    group = ("photos", ("group.png", cv2.imencode(".png", two)[1].tobytes(), "image/png"))
    text = ("photos", ("notes.png", b"this is not an image", "image/png"))
    answer = client.post("/api/gallery", data={"name": "ann", "consent": "yes"}, files=[*files, group, text],
                         headers=bearer(tokens["admin"]))
    assert answer.status_code == 200 and answer.json()["enrolled"] == 2
    reasons = {r["photo"]: r["reason"] for r in answer.json()["refused"]}
    assert reasons == {"group.png": "2 faces: use a photo of this person alone",
                       "notes.png": "not an image (JPEG, PNG, BMP, WebP, GIF, PGM/PPM)"}
    people = client.get("/api/gallery", headers=bearer(tokens["read"])).json()["people"]
    assert people == [{"name": "ann", "templates": 2}]
    # the running loop notices the new gallery and matches against it
    wait_for(lambda: client.get("/api/status", headers=bearer(tokens["read"])).json()["enrolled"] == 1)
    consent = SqliteGallery(service.pipeline.gallery.path)._db.execute("SELECT consent FROM identities").fetchone()[0]
    assert consent.startswith("yes at ")
    # with the consent to keeping them, the face crops are kept (sealed) for a new model's templates
    answer = client.post("/api/gallery", data={"name": "ann", "consent": "yes", "add": "yes", "keep_crops": "yes"},
                         files=files[:1], headers=bearer(tokens["admin"]))
    assert answer.status_code == 200
    kept = SqliteGallery(service.pipeline.gallery.path)._db.execute(
        "SELECT COUNT(crop), MIN(i.consent) FROM templates t JOIN identities i ON i.id=t.identity_id").fetchone()
    assert kept[0] == 1 and kept[1].startswith("yes; face crops kept for a new model at ")
    assert client.delete("/api/gallery/ann", headers=bearer(tokens["admin"])).json() == {"removed": "ann"}
    assert client.delete("/api/gallery/ann", headers=bearer(tokens["admin"])).status_code == 404
    wait_for(lambda: client.get("/api/status", headers=bearer(tokens["read"])).json()["enrolled"] == 0)


def test_test_this_image_finds_the_faces(served):
    client, tokens, photos, _ = served
    answer = client.post("/api/test", files={"photo": ("a.png", photos[0].read_bytes(), "image/png")},
                         headers=bearer(tokens["read"]))
    assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
    assert client.post("/api/test", files={"photo": ("a.png", b"nope", "image/png")},
                       headers=bearer(tokens["read"])).status_code == 400


def test_tokens_are_private_and_a_readable_token_file_is_refused(tmp_path):
    path = tmp_path / "home" / "tokens.json"
    tokens = load_or_create(path)
    assert set(tokens) == {"read", "admin"} and tokens["read"] != tokens["admin"]
    assert path.stat().st_mode & 0o777 == 0o600 and load_or_create(path) == tokens
    path.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users"):
        load_or_create(path)


def test_serve_with_a_wrong_bundle_fails_in_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    from edge.commands.cli import main

    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    assert main(["serve", "--bundle", str(tmp_path / "nothing")]) == 2
    assert "is not a bundle" in capsys.readouterr().err and not (tmp_path / "home").exists()


def test_an_unknown_visitor_is_kept_sealed_and_can_be_named_from_the_api(served):
    client, tokens, _, service = served
    read, admin = bearer(tokens["read"]), bearer(tokens["admin"])
    wait_for(lambda: client.get("/api/visitors", headers=read).json()["visitors"])
    (visitor, *_) = client.get("/api/visitors", headers=read).json()["visitors"]
    assert visitor["outcome"] == "unknown" and visitor["has_crop"]
    crop = client.get(f"/api/visitors/{visitor['id']}/crop.jpg", headers=read)
    assert crop.status_code == 200 and crop.content[:2] == b"\xff\xd8"
    assert crop.content not in service.pipeline.gallery.path.read_bytes()            # sealed at rest
    assert client.post(f"/api/visitors/{visitor['id']}/name", data={"name": "zoe", "consent": "yes"},
                       headers=read).status_code == 403
    service.pipeline.gallery.people.enroll("zoe", np.ones((1, 3), np.float32) / np.sqrt(3), service.pipeline.faces.key,
                                           ["x"])
    clash = client.post(f"/api/visitors/{visitor['id']}/name", data={"name": "zoe", "consent": "yes"},
                        headers=admin)
    assert clash.status_code == 409 and "already enrolled" in clash.json()["detail"]
    named = client.post(f"/api/visitors/{visitor['id']}/name", data={"name": "zoe", "consent": "yes", "add": "yes"},
                        headers=admin)
    assert named.status_code == 200 and named.json()["enrolled"] >= 2
    people = client.get("/api/gallery", headers=read).json()["people"]
    assert [p["name"] for p in people] == ["zoe"]
    assert all(v["id"] != visitor["id"] for v in client.get("/api/visitors", headers=read).json()["visitors"])
    assert client.delete(f"/api/visitors/{visitor['id']}", headers=admin).status_code == 404


def test_the_page_shows_the_display_stream_with_the_boxes_scaled_onto_it(verify_bundle):
    from types import SimpleNamespace

    from edge.faces.annotate import PENDING, draw_tracks
    from edge.faces.detect import Detection
    from edge.faces.tracking import Track

    image = np.zeros((240, 320, 3), np.uint8)                   # what the detector saw (picamera2's lores)
    display = np.zeros((480, 640, 3), np.uint8)                 # the same instant at twice the size (main)
    face = Detection(np.array([100, 50, 140, 100], np.float32), 0.9, np.zeros((6, 2), np.float32))
    track = Track(1, face.box, 0, face)
    drawn = draw_tracks(display, [track], SimpleNamespace(visits={}), scale=(2.0, 2.0))
    assert tuple(drawn[200, 240]) == PENDING and tuple(drawn[150, 280]) == PENDING   # box edges at 2x
    assert not drawn[75, 140].any()                                                  # not at 1x
    pipeline = open_pipeline(verify_bundle)
    service = KioskService(pipeline, "unused://")
    service.state.latest = (image, display, [track])
    shown = cv2.imdecode(np.frombuffer(service.frame_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == display.shape
    service.state.latest = (image, None, [track])
    assert cv2.imdecode(np.frombuffer(service.frame_jpeg(), np.uint8), cv2.IMREAD_COLOR).shape == image.shape
    pipeline.close()


def enrolled_pipeline(bundle, tmp_path, name="ann"):
    from synthetic_faces.dataset import write_identity_folders

    photos = tmp_path / "enrol"
    write_identity_folders(photos, 1, 2, seed=500)
    pipeline = open_pipeline(bundle, gallery_path=tmp_path / "home" / "gallery.db", create_gallery=True)
    vectors = [pipeline.faces.embed_image(cv2.imread(str(p))) for p in sorted(photos.rglob("*.png"))]
    pipeline.gallery.people.enroll(name, np.stack(vectors), pipeline.faces.key, ["test"], consent="yes")
    pipeline.matcher.reload()
    return pipeline


def visitor_frames(count: int, seed: int = 500):
    from edge.sources import open_source

    with open_source(f"synthetic://kiosk?seeds={seed}&frames_per_person={count}&gap_frames=0") as source:
        return [frame.image for frame in source][:count]


def run_scripted(service: KioskService) -> None:
    service.start()
    service._thread.join(30)
    assert not service._thread.is_alive() and not service.state.error


def test_a_camera_that_stops_delivering_ends_every_visit_and_a_visit_cut_short_opens_nothing(verify_bundle,
                                                                                                tmp_path):
    from edge.kiosk.actions import DoorActions

    frames = visitor_frames(40)
    clock = Clock()
    pipeline = enrolled_pipeline(verify_bundle, tmp_path)
    door = DoorActions([], min_interval_s=0.001, require_live=False)     # liveness: the tests below
    # one look (a track is a visit at its third frame, looked at then), the camera silent, the same place again
    camera = ScriptedCamera([*frames[10:14], 1.0, *frames[14:40]], clock)
    service = KioskService(pipeline, camera.uri, door=door, source=camera, clock=clock)
    run_scripted(service)
    recent = list(reversed(service.state.recent))
    cut = recent[0]
    assert cut["reason"].startswith("the camera stopped delivering frames; visit ended after 1 looks")
    assert cut["door"] == "visit cut short" and cut["samples"] == 1
    later = [r for r in recent[1:] if r["track"] != cut["track"]]
    assert later and later[0]["outcome"] == "named" and later[0]["door"] == "opened"    # a new visit, seen whole
    assert door.counts["visit cut short"] == 1
    service.stop()
    pipeline.close()


def test_a_door_opens_only_on_fresh_looks_and_every_refusal_is_in_metrics(verify_bundle, tmp_path):
    from edge.kiosk.actions import DoorActions
    from edge.kiosk.web import create_app

    clock = Clock()
    pipeline = enrolled_pipeline(verify_bundle, tmp_path)
    door = DoorActions([], min_interval_s=0.001, max_frame_age_s=0.5, require_live=False)
    camera = ScriptedCamera(visitor_frames(30), clock, delay_s=0.6)    # each frame reaches the loop 0.6 s late
    service = KioskService(pipeline, camera.uri, door=door, source=camera, clock=clock)
    run_scripted(service)
    assert [r["door"] for r in service.state.recent if r["outcome"] == "named"] == ["looks too old"]
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    client = testclient.TestClient(create_app(service, tokens, tmp_path / "home" / "gallery.db"))
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).text
    assert 'edge_face_door_refused_total{reason="looks too old"} 1.0' in metrics
    assert 'edge_face_door_refused_total{reason="visit cut short"} 0.0' in metrics
    service.stop()
    pipeline.close()


def test_a_suspended_person_and_a_fleet_replica_too_old_open_no_door_and_say_why(verify_bundle, tmp_path):
    pytest.importorskip("psycopg", reason="a fleet's kiosk needs the fleet extra (not on the lowest-Python board venv)")
    from edge.fleet.credentials import KioskCredentials
    from edge.fleet.keys import new_kiosk_pair
    from edge.fleet.sync import FleetSync
    from edge.kiosk.actions import DoorActions
    from edge.kiosk.web import create_app

    pipeline = enrolled_pipeline(verify_bundle, tmp_path)
    pipeline.gallery.people.suspend("ann")
    pipeline.matcher.reload()
    clock = Clock()
    door = DoorActions([], min_interval_s=0.001, require_live=False)
    camera = ScriptedCamera(visitor_frames(30), clock)
    service = KioskService(pipeline, camera.uri, door=door, source=camera, clock=clock)
    run_scripted(service)
    assert [r["door"] for r in service.state.recent if r["outcome"] == "named"] == ["suspended"]   # still named
    service.stop()

    # resumed; but the kiosk is now a fleet's replica that has never reached its server (nothing answers there)
    pipeline.gallery.people.suspend("ann", False)
    pipeline.matcher.reload()
    KioskCredentials("door-1", "postgresql://edge_kiosk_door_1@127.0.0.1:1/fleet", "secret",
                     new_kiosk_pair()[0]).write(tmp_path / "kiosk.json")
    fleet = FleetSync(KioskCredentials.read(tmp_path / "kiosk.json"), pipeline.gallery.path, max_replica_age_s=60)
    camera = ScriptedCamera(visitor_frames(30), clock)
    service = KioskService(pipeline, camera.uri, door=door, source=camera, clock=clock, fleet=fleet)
    run_scripted(service)
    assert [r["door"] for r in service.state.recent if r["outcome"] == "named"] == ["replica too old"]
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    client = testclient.TestClient(create_app(service, tokens, pipeline.gallery.path))
    status = client.get("/api/status", headers=bearer(tokens["read"])).json()["fleet"]
    assert status["kiosk"] == "door-1" and status["replica_age_s"] is None
    assert status["doors"] == "replica too old (over 60 s)"
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).text
    assert 'edge_face_door_refused_total{reason="replica too old"} 1.0' in metrics
    assert 'edge_face_door_refused_total{reason="suspended"} 1.0' in metrics
    assert "edge_face_fleet_doors_barred 1.0" in metrics and "edge_face_fleet_online 0.0" in metrics
    service.stop()
    pipeline.close()


def test_a_fleets_door_rules_and_settings_decide_which_named_visits_open_the_door(verify_bundle, tmp_path):
    pytest.importorskip("psycopg", reason="a fleet's kiosk needs the fleet extra (not on the lowest-Python board venv)")
    from edge.fleet.access import parse_rule
    from edge.fleet.credentials import KioskCredentials
    from edge.fleet.keys import new_kiosk_pair
    from edge.fleet.sync import FleetSync
    from edge.gallery.sqlite_replica import SqliteReplica
    from edge.kiosk.actions import DoorActions

    pipeline = enrolled_pipeline(verify_bundle, tmp_path)             # ann, in no access group
    KioskCredentials("door-1", "postgresql://edge_kiosk_door_1@127.0.0.1:1/fleet", "secret",
                     new_kiosk_pair()[0]).write(tmp_path / "kiosk.json")
    clock = Clock()

    def named_doors(policy: dict) -> list[str]:
        """What the door did on ann's visit, with ``policy`` as the replica last applied it (just now)."""
        SqliteReplica(pipeline.gallery).apply(1, {}, policy)
        fleet = FleetSync(KioskCredentials.read(tmp_path / "kiosk.json"), pipeline.gallery.path)
        door = DoorActions([], min_interval_s=3600, require_live=False)
        service = KioskService(pipeline, "scripted://", door=door, source=ScriptedCamera(visitor_frames(30), clock),
                               clock=clock, fleet=fleet)
        assert door.min_interval_s == policy["settings"].get("door_interval_s", 3600)     # the fleet's, over the flag
        run_scripted(service)
        service.stop()
        return [r["door"] for r in service.state.recent if r["outcome"] == "named"]

    everyone = {"doors": {}, "settings": {"door_interval_s": 0.001}}
    assert named_doors(everyone) == ["opened"]
    staff_only = {"doors": {"door-1": [parse_rule("staff", "all", "00:00-24:00")]}, "settings": {}}
    assert named_doors(staff_only) == ["not allowed here now"]
    assert named_doors({**everyone, "settings": {"require_liveness": True}}) == ["liveness required"]
    pipeline.close()


def test_the_fleets_liveness_checks_are_taken_at_start_and_a_change_restarts_the_kiosk(verify_bundle, tmp_path,
                                                                                         capsys):
    pytest.importorskip("psycopg", reason="a fleet's kiosk needs the fleet extra (not on the lowest-Python board venv)")
    from edge.commands.cli import main
    from edge.fleet.credentials import KioskCredentials
    from edge.fleet.keys import new_kiosk_pair
    from edge.fleet.sync import FleetSync
    from edge.gallery.sqlite_replica import SqliteReplica

    pipeline = enrolled_pipeline(verify_bundle, tmp_path)
    gallery = pipeline.gallery.path
    KioskCredentials("door-1", "postgresql://edge_kiosk_door_1@127.0.0.1:1/fleet", "secret",
                     new_kiosk_pair()[0]).write(tmp_path / "kiosk.json")
    SqliteReplica(pipeline.gallery).apply(1, {}, {"settings": {"liveness": "none", "challenge": False}})
    pipeline.close()
    # at start, over the kiosk's own flags (the server cannot be reached: the replica's last settings)
    frames = tmp_path / "frames"
    frames.mkdir()
    for index, frame in enumerate(visitor_frames(6)):
        cv2.imwrite(str(frames / f"{index:03d}.png"), frame)
    assert main(["run", "--bundle", str(verify_bundle), "--source", str(frames), "--gallery", str(gallery),
                 "--fleet", str(tmp_path / "kiosk.json"), "--liveness", "planar"]) == 0
    assert "run: liveness as the fleet sets it: checks none, challenge no" in capsys.readouterr().err
    # a change while the kiosk runs: it stops to be started again with them
    pipeline = open_pipeline(verify_bundle, gallery_path=gallery)
    fleet = FleetSync(KioskCredentials.read(tmp_path / "kiosk.json"), gallery)
    reasons = []
    clock = Clock()
    service = KioskService(pipeline, "scripted://", source=ScriptedCamera(visitor_frames(5), clock), clock=clock,
                           fleet=fleet, restart=reasons.append)
    fleet.replica.apply(2, {}, {"settings": {"liveness": "planar", "challenge": True}})   # as the sync thread does
    fleet.policy = fleet.replica.policy()
    run_scripted(service)
    service.stop()
    pipeline.close()
    assert reasons and reasons[0] == "the fleet's liveness settings changed"


class Verdicts:
    """A liveness check that says whatever the test sets."""

    name = "scripted"

    def __init__(self, verdict):
        self.verdict = verdict

    def observe(self, look):
        return look.frame

    def judge(self, observed):
        from edge.liveness.checks import CheckResult

        return CheckResult(self.verdict if observed else "insufficient", 0.5, {"looks": len(observed)})

    def close(self):
        pass


class LiveFrom(Verdicts):
    """A liveness check that says live once it has seen a look at or after ``frame`` (the visitor turned their head
    when the page asked)."""

    def __init__(self, frame):
        super().__init__("live")
        self.frame = frame

    def judge(self, observed):
        from edge.liveness.checks import CheckResult

        live = bool(observed) and max(observed) >= self.frame
        return CheckResult("live" if live else "insufficient", 0.5, {"looks": len(observed)})


class Recorded:
    name = "recorded"

    def __init__(self):
        self.events = []

    def fire(self, event):
        self.events.append(event)

    def close(self):
        pass


def held_photo(frame: np.ndarray, count: int) -> list[np.ndarray]:
    """``frame`` as a photo held in front of the camera: tilting back and forth and drifting, as a hand holds it."""
    height, width = frame.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    frames = []
    for step in range(count):
        tilt = 0.08 * np.sin(step / 6) * np.float32([[width, height / 2], [-width, 0], [-width / 2, 0], [width, 0]])
        moved = (corners + tilt + np.float32([3 * step, np.sin(step / 4) * 4])).astype(np.float32)
        frames.append(cv2.warpPerspective(frame, cv2.getPerspectiveTransform(corners, moved), (width, height),
                                          borderMode=cv2.BORDER_REPLICATE))
    return frames


def liveness_service(bundle, tmp_path, checks, door, frames=None, challenge=False):
    from edge.kiosk.stream import KioskStream
    from edge.liveness.gate import LivenessGate
    from edge.runtime.boards import LivenessConfig

    clock = Clock()
    pipeline = enrolled_pipeline(bundle, tmp_path)
    camera = ScriptedCamera(visitor_frames(40) if frames is None else frames, clock)
    config = LivenessConfig(max_wait_s=0.5, challenge_s=0.5)
    stream = KioskStream(pipeline, liveness=LivenessGate(checks, config, challenge=challenge))
    return KioskService(pipeline, camera.uri, door=door, source=camera, clock=clock, stream=stream), pipeline


def test_a_named_flat_picture_opens_nothing_and_a_live_verdict_opens_the_door(verify_bundle, tmp_path):
    """A photo of the enrolled visitor held in front of the camera: planar finds no parallax, its visit goes as
    insufficient after the wait, and the door stays shut; the same visitor judged live opens it (planar on live
    faces: tests/real/test_liveness_real.py)."""
    from edge.kiosk.actions import DoorActions
    from edge.liveness.checks import CheckContext
    from edge.liveness.planar import PlanarCheck
    from edge.runtime.boards import load_board

    planar = PlanarCheck(CheckContext(verify_bundle, None, load_board("host"), None))
    door = DoorActions([], min_interval_s=0.001)
    service, pipeline = liveness_service(verify_bundle, tmp_path, [planar], door,
                                         held_photo(visitor_frames(12)[10], 60))
    run_scripted(service)
    named = [r for r in service.state.recent if r["outcome"] == "named"]
    assert named and all(r["liveness"]["verdict"] == "insufficient" and r["door"] == "not live" for r in named)
    assert named[0]["liveness"]["checks"]["planar"]["pairs"] >= 1
    logged = sqlite_rows(tmp_path / "home" / "gallery.db", "SELECT liveness FROM events WHERE identity='ann'")
    assert json.loads(logged[0][0])["verdict"] == "insufficient"
    service.stop()
    pipeline.close()
    door = DoorActions([], min_interval_s=0.001)
    service, pipeline = liveness_service(verify_bundle, tmp_path / "live", [Verdicts("live")], door)
    run_scripted(service)
    assert [r["door"] for r in service.state.recent if r["outcome"] == "named"][:1] == ["opened"]
    service.stop()
    pipeline.close()


def test_a_visitor_who_turns_their_head_after_going_out_insufficient_opens_the_door_on_a_second_chance(
        verify_bundle, tmp_path):
    """The named visit waits 0.5 s for its verdict and goes out insufficient (the door stays shut, the page asks for
    a head turn); at frame 30 its verdict turns live, within retry_s, and the decision goes out again, rejudged: the
    door opens, and the visit is still counted once."""
    from edge.kiosk.actions import DoorActions

    door = DoorActions([], min_interval_s=0.001)
    service, pipeline = liveness_service(verify_bundle, tmp_path, [LiveFrom(30)], door)
    run_scripted(service)
    named = [r for r in reversed(service.state.recent) if r["outcome"] == "named"]
    assert [(r["liveness"]["verdict"], r["door"], r["rejudged"]) for r in named] == [
        ("insufficient", "not live", False), ("live", "opened", True)]
    assert named[0]["track"] == named[1]["track"] and "second chance" in named[1]["reason"]
    assert service.state.decisions["named"] == 1 and service.state.liveness["live"] == 1
    logged = sqlite_rows(tmp_path / "home" / "gallery.db", "SELECT liveness FROM events WHERE identity='ann'")
    assert [json.loads(row[0])["verdict"] for row in logged] == ["insufficient", "live"]
    assert pipeline.gallery.visitors.kept() == []          # a named visit judged live is nobody to keep
    service.stop()
    pipeline.close()


def test_a_strangers_decision_goes_out_when_made_with_the_verdict_so_far_and_takes_no_second_chance(
        verify_bundle, tmp_path):
    """A stranger opens no door, so their decision waits for no verdict: it goes out in the frame it was made, with
    the looks taken until then, and their visit takes no more looks (the check would say live from frame 30)."""
    from edge.kiosk.actions import DoorActions

    check = LiveFrom(30)
    service, pipeline = liveness_service(verify_bundle, tmp_path, [check], DoorActions([], min_interval_s=0.001),
                                         visitor_frames(40, seed=650))
    looks = []
    check.observe = lambda look: looks.append(look.frame) or look.frame
    run_scripted(service)
    (stranger,) = [r for r in service.state.recent if r["track"] == 1]
    assert stranger["outcome"] != "named" and stranger["liveness"]["verdict"] == "insufficient"
    assert not stranger["rejudged"] and stranger["door"] == "not named"
    # decided on its second sample (the first after the 3 confirming frames, the next sample_gap 4 frames on), not
    # after the 0.5 s wait (15 frames), and no look after it went out
    assert looks and max(looks) <= stranger["frame"] <= 8
    service.stop()
    pipeline.close()


def test_an_attack_is_alerted_counted_kept_with_its_crop_and_shown(verify_bundle, tmp_path):
    from edge.kiosk.actions import DoorActions
    from edge.kiosk.web import create_app

    alerts, opened = Recorded(), Recorded()
    door = DoorActions([opened], min_interval_s=0.001, alerts=[alerts])
    service, pipeline = liveness_service(verify_bundle, tmp_path, [Verdicts("attack")], door)
    run_scripted(service)
    door.wait()
    attacks = [r for r in service.state.recent if r["liveness"]["verdict"] == "attack"]
    assert attacks and opened.events == [] and all(r["door"] in ("not named", "not live") for r in attacks)
    assert alerts.events and alerts.events[0]["alert"] == "presentation attack"
    assert alerts.events[0]["liveness"]["checks"]["scripted"]["verdict"] == "attack"
    kept = pipeline.gallery.visitors.kept()
    assert any(v["outcome"] == "named" and v["has_crop"] for v in kept)      # the named attack's crop is evidence
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    client = testclient.TestClient(create_app(service, tokens, tmp_path / "home" / "gallery.db"))
    metrics = client.get("/metrics", headers=bearer(tokens["read"])).text
    assert f'edge_face_liveness_verdicts_total{{verdict="attack"}} {float(len(attacks))}' in metrics
    assert "edge_face_liveness_on 1.0" in metrics
    status = client.get("/api/status", headers=bearer(tokens["read"])).json()
    assert status["liveness"]["checks"] == ["scripted"] and status["liveness"]["verdicts"]["attack"] == len(attacks)
    refused = client.post(f"/api/visitors/{kept[0]['id']}/name", data={"name": "mallory", "consent": "yes"},
                          headers=bearer(tokens["admin"]))
    assert refused.status_code == 422 and "not judged live (liveness attack)" in refused.json()["detail"]
    service.stop()
    pipeline.close()


def sqlite_rows(path, query):
    import sqlite3

    with sqlite3.connect(path) as db:
        return db.execute(query).fetchall()


def test_health_answers_while_an_enrolment_is_being_embedded(served, tmp_path):
    """Held on an event, not timed: /health must answer while the embedding has not finished."""
    import threading

    import httpx
    import uvicorn

    from edge.kiosk.web import create_app

    _, tokens, photos, service = served
    started, release = threading.Event(), threading.Event()
    look = service.pipeline.faces.enrolment_look

    def held(image):
        started.set()
        release.wait(60)
        return look(image)
    service.pipeline.faces.enrolment_look = held
    server = uvicorn.Server(uvicorn.Config(create_app(service, tokens, service.pipeline.gallery.path),
                                           host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    answer = {}

    def enrol():
        answer["enrol"] = httpx.post(f"{base}/api/gallery", data={"name": "ann", "consent": "yes"},
                                     files=[("photos", (photos[0].name, photos[0].read_bytes(), "image/png"))],
                                     headers=bearer(tokens["admin"]), timeout=120)
    enrolling = threading.Thread(target=enrol)
    enrolling.start()
    try:
        assert started.wait(60)
        health = httpx.get(f"{base}/health", timeout=60)        # a hang guard only: the embedding is still held
        assert health.status_code == 200 and not release.is_set() and "enrol" not in answer
    finally:
        release.set()
        enrolling.join(120)
        server.should_exit = True
    assert answer["enrol"].status_code == 200 and answer["enrol"].json()["enrolled"] == 1


def png_declaring(width: int, height: int) -> bytes:
    """A small real PNG whose header is changed to declare ``width`` x ``height`` pixels (as a hostile one would)."""
    import struct
    import zlib

    data = bytearray(cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_a_huge_declared_image_is_refused_from_its_header_before_decoding(served):
    client, tokens, _, _ = served
    for width, height in ((30000, 30000), (100000, 100000)):
        answer = client.post("/api/test", files={"photo": ("big.png", png_declaring(width, height), "image/png")},
                             headers=bearer(tokens["read"]))
        assert answer.status_code == 400 and answer.json()["detail"] == (
            f"{width}x{height} pixels, more than 25 megapixels")


def test_every_wrong_request_is_a_4xx_in_one_line(served):
    client, tokens, _, _ = served
    assert client.get("/api/status?token=%C3%B1").status_code == 401               # not ASCII: a no, not a 500
    assert client.get("/api/status", headers={"Authorization": "Bearer \u00f1".encode()}).status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers=bearer(tokens["read"])).json()["info"]["title"] == "edge-face kiosk"
    assert client.get("/docs", headers=bearer(tokens["read"])).status_code == 404
    too_large = client.get(f"/api/visitors/{2**70}/crop.jpg", headers=bearer(tokens["read"]))
    assert too_large.status_code == 422
    assert client.delete(f"/api/visitors/{2**63}", headers=bearer(tokens["admin"])).status_code == 422


@pytest.mark.parametrize("content, message", [
    ('{"read": 1, "admin": 2}', "must be at least 16 ASCII characters"),
    ('{"read": "a", "admin": "b"}', "must be at least 16 ASCII characters"),
    ('[1, 2]', "must hold the tokens read, admin"),
    (None, "is not a regular file"),
])
def test_a_broken_token_file_is_refused_at_start_in_one_line(tmp_path, content, message):
    path = tmp_path / "tokens.json"
    if content is None:
        path.mkdir(mode=0o700)
    else:
        path.write_text(content)
        path.chmod(0o600)
    with pytest.raises(UserError, match=message) as refused:
        load_or_create(path)
    assert "\n" not in str(refused.value)


def test_a_request_is_refused_before_its_body_is_read(served):
    """Only the headers are sent: the answer comes without the body, so nothing of it was spooled."""
    import socket
    import threading

    import uvicorn

    from edge.kiosk.web import create_app

    _, tokens, _, service = served
    server = uvicorn.Server(uvicorn.Config(create_app(service, tokens, service.pipeline.gallery.path),
                                           host="127.0.0.1", port=0, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    wait_for(lambda: server.started)
    port = server.servers[0].sockets[0].getsockname()[1]

    def status_of(headers: str) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(f"POST /api/gallery HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            return sock.recv(4096).decode().split("\r\n")[0]
    try:
        form = "Content-Type: multipart/form-data; boundary=b\r\n"
        assert status_of(f"{form}Content-Length: 300000000\r\n") == "HTTP/1.1 401 Unauthorized"
        admin = f"Authorization: Bearer {tokens['admin']}\r\n"
        assert status_of(f"{form}{admin}Content-Length: 300000000\r\n") == "HTTP/1.1 413 Request Entity Too Large"
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:     # a body that never says its size
            sock.sendall(f"POST /api/gallery HTTP/1.1\r\nHost: x\r\n{form}{admin}Transfer-Encoding: chunked\r\n"
                         f"\r\n".encode())
            part = (b'--b\r\nContent-Disposition: form-data; name="photos"; filename="x.png"\r\n'
                    b'Content-Type: image/png\r\n\r\n')
            sock.sendall(b"%x\r\n%s\r\n" % (len(part), part))
            chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
            try:
                for _ in range(80):                     # 80 MB offered; the server stops reading past 41 MB
                    sock.sendall(chunk)
            except OSError:
                pass
            assert sock.recv(4096).decode().startswith("HTTP/1.1 413")
    finally:
        server.should_exit = True


def test_an_enrolled_name_is_added_to_only_when_asked_and_every_name_is_removable(served):
    client, tokens, photos, service = served
    admin = bearer(tokens["admin"])

    def enrol(name, add="no"):
        return client.post("/api/gallery", data={"name": name, "consent": "yes", "add": add},
                           files=[("photos", (photos[0].name, photos[0].read_bytes(), "image/png"))], headers=admin)
    assert enrol("ann").status_code == 200
    again = enrol("ann")
    assert again.status_code == 409 and "already enrolled" in again.json()["detail"]
    assert enrol("ann", add="yes").json()["enrolled"] == 1
    assert enrol("ann\nmallory").status_code == 400 and enrol("a" * 65).status_code == 400
    people = client.get("/api/gallery", headers=bearer(tokens["read"])).json()["people"]
    assert people == [{"name": "ann", "templates": 2}]
    legacy = SqliteGallery(service.pipeline.gallery.path)              # a name written before names had one rule
    legacy._db.execute("INSERT INTO identities(name, created) VALUES ('x/../y', 'then')")
    legacy.close()
    assert client.delete("/api/gallery/x%2F..%2Fy", headers=admin).json() == {"removed": "x/../y"}


def test_command_line_enrolment_asks_for_consent_and_records_it(verify_bundle, tmp_path, capsys):
    from synthetic_faces.dataset import write_identity_folders

    from edge.commands.cli import main

    photos = tmp_path / "photos"
    write_identity_folders(photos, 1, 2, seed=500)
    gallery = tmp_path / "g.db"
    folder = str(next(photos.iterdir()))
    assert main(["enroll", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--name", "ann", folder]) == 2
    err = capsys.readouterr().err.strip()
    assert "add --consent" in err and len(err.splitlines()) == 1 and not gallery.exists()
    assert main(["enroll", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--name", "ann", "--consent",
                 folder]) == 0
    assert main(["enroll", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--name", "ann", "--consent",
                 folder]) == 2
    assert "already enrolled" in capsys.readouterr().err
    consent = SqliteGallery(gallery)._db.execute("SELECT consent FROM identities").fetchone()[0]
    assert consent.startswith("yes (command line) at ")


def test_kept_enrolment_crops_make_a_new_models_templates_and_the_others_are_named_to_enrol_again(verify_bundle,
                                                                                                     tmp_path, capsys):
    import sqlite3

    from synthetic_faces.dataset import write_identity_folders

    from edge.commands.cli import main
    from edge.gallery.store import EmbeddingKey

    photos = tmp_path / "photos"
    write_identity_folders(photos, 2, 2, seed=500)
    ann, bob = (str(folder) for folder in sorted(photos.iterdir()) if folder.is_dir())
    gallery = tmp_path / "g.db"
    base = ["enroll", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--consent"]
    assert main([*base, "--name", "ann", "--keep_crops", ann]) == 0
    assert main([*base, "--name", "bob", bob]) == 0                       # no consent to keeping crops
    with sqlite3.connect(gallery) as db:
        assert db.execute("SELECT COUNT(crop) FROM templates").fetchone()[0] == 2     # ann's two, sealed
        assert b"\xff\xd8" not in b"".join(row[0][:2] for row in db.execute("SELECT crop FROM templates "
                                                                             "WHERE crop IS NOT NULL"))
        # as if both had been enrolled with the model of an older bundle
        db.execute("UPDATE templates SET model_fingerprint='an older model', embedding_space='older space'")
    capsys.readouterr()
    assert main(["gallery", "--gallery", str(gallery), "--reembed", "--bundle", str(verify_bundle)]) == 0
    out = capsys.readouterr().out
    assert "reembed: 2 templates for 1 people" in out
    assert "1 must enrol again (no crop kept, or none usable): bob" in out
    opened = SqliteGallery(gallery)
    pipeline_key = open_pipeline(verify_bundle).faces.key
    templates = opened.people.templates(EmbeddingKey(pipeline_key.fingerprint, pipeline_key.space, pipeline_key.kind,
                                                     pipeline_key.accepts))
    assert templates.names == ["ann"] and templates.stale == {"bob": [str(p) for p in sorted(Path(bob).iterdir())]}
    opened.close()
    assert main(["gallery", "--gallery", str(gallery), "--reembed"]) == 2
    assert "--reembed and --bundle go together" in capsys.readouterr().err


def test_serve_refuses_a_missing_or_empty_gallery_at_start_and_makes_none(verify_bundle, tmp_path, capsys):
    from edge.base.paths import home
    from edge.commands.cli import main

    gallery = tmp_path / "gallery.db"
    for prepare, message in ((lambda: None, "no gallery at"), (lambda: gallery.touch(mode=0o600), "is empty")):
        prepare()
        assert main(["serve", "--bundle", str(verify_bundle), "--gallery", str(gallery)]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1
        assert not (tmp_path / "gallery.db.key").exists() and not (home() / "tokens.json").exists()


@pytest.mark.parametrize("failing, message", [
    (["--source", "v4l2:///dev/video99?retries=1&backoff_s=0.01"], "gave no frame after 1 attempts"),
    (["--gpio", "99", "--source", "synthetic://kiosk?seeds=1"], "--gpio 99: 99 is not a valid pin name"),
])
def test_serve_that_cannot_start_its_camera_or_door_leaves_no_tokens(verify_bundle, tmp_path, capsys, failing,
                                                                    message, monkeypatch):
    from edge.base.paths import home
    from edge.commands.cli import main

    if "--gpio" in failing:
        gpiozero = pytest.importorskip("gpiozero")
        monkeypatch.setenv("GPIOZERO_PIN_FACTORY", "mock")           # a board's pins, whatever ran before
        monkeypatch.setattr(gpiozero.Device, "pin_factory", None)

    SqliteGallery(tmp_path / "gallery.db", create=True).close()
    assert main(["serve", "--bundle", str(verify_bundle), "--gallery", str(tmp_path / "gallery.db"), *failing]) == 2
    assert message in capsys.readouterr().err
    assert not (home() / "tokens.json").exists()


def test_a_gallery_damaged_while_serving_stops_the_decisions_and_is_never_replaced(served):
    client, tokens, _, service = served
    wait_for(lambda: service.state.frames > 3)
    path = service.pipeline.gallery.path
    garbage = b"bad card " * 455                      # 4 KB of it, over every page
    for damaged in (path, Path(f"{path}-wal")):       # a card that went bad under the running kiosk
        size = damaged.stat().st_size
        with open(damaged, "r+b") as handle:
            handle.write((garbage * (size // len(garbage) + 1))[:size])
    answer = client.get("/api/gallery", headers=bearer(tokens["read"]))
    assert answer.status_code == 503 and "the gallery cannot be used" in answer.json()["detail"]
    wait_for(lambda: not service.state.running)       # the loop stopped deciding
    health = client.get("/health")
    assert health.status_code == 503 and "the gallery failed, no decisions are made" in health.json()["error"]
    assert not path.exists() or path.read_bytes().startswith(garbage)    # moved aside or left: never a new one
    assert client.get("/api/gallery", headers=bearer(tokens["read"])).status_code == 503
    assert not path.exists() or path.read_bytes().startswith(garbage)


def test_edge_run_is_the_service_loop_without_the_web_server(verify_bundle, tmp_path, capsys):
    """Kept unknown visitors, door refusals and JSON lines come from the one loop that edge serve runs."""
    from edge.commands.cli import main

    gallery = tmp_path / "gallery.db"
    assert main(["gallery", "--create", "--gallery", str(gallery)]) == 0
    capsys.readouterr()
    assert main(["run", "--bundle", str(verify_bundle), "--gallery", str(gallery), "--source",
                 "synthetic://kiosk?seeds=500,501&frames_per_person=30&gap_frames=2"]) == 0
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 2 and {d["outcome"] for d in lines} == {"unknown"} and "summary: " in err
    kept = SqliteGallery(gallery)
    assert len(kept.visitors.kept()) == 2 and kept.events.count() == 2      # kept to be named, as serve keeps them
    kept.close()
    import inspect

    import edge.commands.cli
    cli_source = inspect.getsource(edge.commands.cli)
    assert "watched_frames" not in cli_source and ".step(" not in cli_source


def recorded_samples(service) -> list[tuple[int, int]]:
    """(track, frame) of each look the service's visits take as a sample, filled as it runs."""
    samples, add_sample = [], service.stream.judge.add_sample

    def recording(track, frame, *rest):
        samples.append((track, frame))
        return add_sample(track, frame, *rest)

    service.stream.judge.add_sample = recording
    return samples


def test_a_visit_takes_liveness_looks_only_from_its_first_sample(verify_bundle, tmp_path):
    """Looks at a face that fails the quality gate (here blurred) can name no one, so they take no liveness looks
    either; the first one comes with the visit's first sample, in the same frame."""
    from edge.kiosk.actions import DoorActions

    frames = visitor_frames(40)
    blurred = [cv2.GaussianBlur(frame, (0, 0), 4) for frame in frames[:20]] + frames[20:]
    check = Verdicts("insufficient")
    service, pipeline = liveness_service(verify_bundle, tmp_path, [check], DoorActions([], min_interval_s=0.001),
                                         blurred)
    looks, samples = [], recorded_samples(service)
    check.observe = lambda look: looks.append(look.frame) or look.frame
    run_scripted(service)
    assert samples and samples[0][1] >= 20 and looks and looks[0] == samples[0][1]
    service.stop()
    pipeline.close()


def test_someone_else_found_in_a_visits_place_starts_a_new_visit_with_that_look(verify_bundle, tmp_path):
    """A face found again after a moment away is looked at once more; when it is not the visit's person, the visit
    is decided and a new one begins, that look its first sample."""
    from edge.sources import open_source

    with open_source("synthetic://kiosk?seeds=500,651&frames_per_person=20&gap_frames=2") as source:
        frames = [frame.image for frame in source][:42]
    # ann standing (frames 0-14), six frames without her, then from frame 21 the next visitor standing where she
    # stood (their colours swapped: the test bundle's verifier embeds a face's mean colour)
    frames = (frames[5:20] + [np.zeros_like(frames[0])] * 6
              + [np.ascontiguousarray(frame[..., ::-1]) for frame in frames[28:42]])
    clock = Clock()
    pipeline = enrolled_pipeline(verify_bundle, tmp_path)
    service = KioskService(pipeline, "scripted", source=ScriptedCamera(frames, clock), clock=clock)
    samples = recorded_samples(service)
    run_scripted(service)
    decided = {r["track"]: r for r in service.state.recent}
    assert decided[1]["outcome"] == "named" and decided[2]["outcome"] != "named"
    assert [frame for track, frame in samples if track == 2][0] == 21
    service.stop()
    pipeline.close()


def swapped_at(frame: int) -> list[np.ndarray]:
    """ann until ``frame``, then in the same place, with no frame missed, someone else (their colours swapped: the
    test bundle's verifier embeds a face's mean colour); 40 frames."""
    return visitor_frames(frame) + [np.ascontiguousarray(f[..., ::-1]) for f in visitor_frames(40 - frame, seed=651)]


@pytest.mark.parametrize("swap, live_from", [(12, 12), (20, 30)], ids=["while-held", "on-its-second-chance"])
def test_a_face_that_stops_being_the_named_visits_person_ends_the_visit_and_opens_nothing(verify_bundle, tmp_path,
                                                                                        swap, live_from):
    """A photo of ann is named and waits for its verdict (0.5 s); the attacker then shows their own face in its place
    without the tracker losing it, and turns their head (the check says live from ``live_from``), while the decision
    is held or on its second chance. Those looks are not ann's: the named visit goes out not live, the face goes on
    as a new visit, and no door opens."""
    from edge.kiosk.actions import DoorActions

    door = DoorActions([], min_interval_s=0.001)
    service, pipeline = liveness_service(verify_bundle, tmp_path, [LiveFrom(live_from)], door, swapped_at(swap))
    run_scripted(service)
    visits = {}
    for record in reversed(service.state.recent):
        visits.setdefault(record["track"], []).append(record)
    (ann,) = visits.pop(1)
    assert ann["outcome"] == "named" and ann["liveness"]["verdict"] == "insufficient" and ann["door"] == "not live"
    assert ("someone else" in ann["liveness"].get("stray", "")) == (swap == live_from)
    assert visits and all(r["outcome"] != "named" and r["door"] != "opened" for rs in visits.values() for r in rs)
    service.stop()
    pipeline.close()


def test_a_look_of_someone_else_during_a_challenge_fails_it_as_an_attack(verify_bundle, tmp_path):
    """With the challenge, every look is checked as it is taken: someone else in the visit's place while its request
    runs is an attack, alerted, and no door opens."""
    from edge.kiosk.actions import DoorActions

    alerts = Recorded()
    door = DoorActions([], min_interval_s=0.001, alerts=[alerts])
    service, pipeline = liveness_service(verify_bundle, tmp_path, [], door, swapped_at(12), challenge=True)
    run_scripted(service)
    door.wait()
    ann = [r for r in service.state.recent if r["track"] == 1]
    assert [(r["outcome"], r["liveness"]["verdict"], r["door"]) for r in ann] == [("named", "attack", "not live")]
    assert "a look during the challenge scores" in ann[0]["liveness"]["checks"]["challenge"]["stray"]
    assert alerts.events and alerts.events[0]["alert"] == "presentation attack"
    service.stop()
    pipeline.close()
