"""``edge serve``'s API over a running kiosk loop: health, tokens and scopes, enrolment from photos (with the
reasons photos are refused), the gallery reloaded while the loop runs, removal, /metrics, "test this image"."""
import time

import cv2
import numpy as np
import pytest

from edge.errors import UserError
from edge.gallery import Gallery
from edge.pipeline import Pipeline
from edge.service import KioskService
from edge.tokens import load_or_create

pytestmark = pytest.mark.unit
testclient = pytest.importorskip("fastapi.testclient")


@pytest.fixture
def served(verify_bundle, tmp_path):
    from synthetic_faces.dataset import write_identity_folders
    from edge.web import create_app

    photos = tmp_path / "photos"
    write_identity_folders(photos, 1, 3, seed=500)
    gallery = tmp_path / "home" / "gallery.db"
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    pipeline = Pipeline.from_bundle(verify_bundle, gallery_path=gallery, create_gallery=True)
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
                       "notes.png": "not an image (JPEG, PNG, BMP, WebP ...)"}
    people = client.get("/api/gallery", headers=bearer(tokens["read"])).json()["people"]
    assert people == [{"name": "ann", "templates": 2}]
    # the running loop notices the new gallery and matches against it
    wait_for(lambda: client.get("/api/status", headers=bearer(tokens["read"])).json()["enrolled"] == 1)
    consent = Gallery(service.pipeline.gallery.path)._db.execute("SELECT consent FROM identities").fetchone()[0]
    assert consent.startswith("yes at ")
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
    from edge.cli import main

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
    named = client.post(f"/api/visitors/{visitor['id']}/name", data={"name": "zoe", "consent": "yes"},
                        headers=admin)
    assert named.status_code == 200 and named.json()["enrolled"] >= 2
    people = client.get("/api/gallery", headers=read).json()["people"]
    assert [p["name"] for p in people] == ["zoe"]
    assert all(v["id"] != visitor["id"] for v in client.get("/api/visitors", headers=read).json()["visitors"])
    assert client.delete(f"/api/visitors/{visitor['id']}", headers=admin).status_code == 404


def test_the_page_shows_the_display_stream_with_the_boxes_scaled_onto_it(verify_bundle):
    from types import SimpleNamespace

    from edge.annotate import PENDING, draw_tracks
    from edge.detect import Detection

    image = np.zeros((240, 320, 3), np.uint8)                   # what the detector saw (picamera2's lores)
    display = np.zeros((480, 640, 3), np.uint8)                 # the same instant at twice the size (main)
    face = Detection(np.array([100, 50, 140, 100], np.float32), 0.9, np.zeros((6, 2), np.float32))
    track = SimpleNamespace(id=1, detection=face)
    drawn = draw_tracks(display, [track], SimpleNamespace(visits={}), scale=(2.0, 2.0))
    assert tuple(drawn[200, 240]) == PENDING and tuple(drawn[150, 280]) == PENDING   # box edges at 2x
    assert not drawn[75, 140].any()                                                  # not at 1x
    pipeline = Pipeline.from_bundle(verify_bundle)
    service = KioskService(pipeline, "unused://")
    service.state.latest = (image, display, [track])
    shown = cv2.imdecode(np.frombuffer(service.frame_jpeg(), np.uint8), cv2.IMREAD_COLOR)
    assert shown.shape == display.shape
    service.state.latest = (image, None, [track])
    assert cv2.imdecode(np.frombuffer(service.frame_jpeg(), np.uint8), cv2.IMREAD_COLOR).shape == image.shape
    pipeline.close()
