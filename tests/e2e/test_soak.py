"""A bounded soak: the service under a steady synthetic camera and concurrent API calls keeps its memory flat
and loses no enrolment that was acknowledged. It is measured in work done, not in seconds, so a loaded machine
runs the same soak, only slower."""
import threading

import pytest

from edge.faces.pipeline import open_pipeline
from edge.gallery.sqlite import SqliteGallery
from edge.kiosk.service import KioskService, Sink
from edge.kiosk.tokens import load_or_create

pytestmark = pytest.mark.e2e
testclient = pytest.importorskip("fastapi.testclient")
SAMPLES = 9                   # memory samples, one after every ENROLMENTS enrolments (each about 5 s on 2 idle cores)
ENROLMENTS = 120
WARM_UP = 50                  # frames the loop makes before the baseline: models, caches, first frames
FRAMES = 20                   # frames the loop makes at least between two samples, beside the API calls


def resident_mb() -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024


class FrameCount(Sink):
    """The loop's frames as it makes them, for a test that waits on work done."""

    def __init__(self):
        self.frames, self.changed = 0, threading.Condition()

    def frame(self, frame, step):
        with self.changed:
            self.frames += 1
            self.changed.notify_all()

    def wait_for(self, frames: int, timeout: float = 120.0) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: self.frames >= frames, timeout), f"the loop stopped at {self.frames}"


def test_memory_stays_flat_and_no_acknowledged_enrolment_is_lost(verify_bundle, tmp_path):
    from edge.kiosk.web import create_app
    from synthetic_faces.dataset import write_identity_folders

    write_identity_folders(tmp_path / "photos", 1, 2, seed=600)
    photo = sorted((tmp_path / "photos").rglob("*.png"))[0].read_bytes()
    gallery_path = tmp_path / "home" / "gallery.db"
    tokens = load_or_create(tmp_path / "home" / "tokens.json")
    pipeline = open_pipeline(verify_bundle, gallery_path=gallery_path, create_gallery=True)
    frames = FrameCount()
    service = KioskService(pipeline, "synthetic://kiosk?seeds=600,601,602&frames_per_person=100000", sinks=(frames,))
    service.start()
    # one client for the whole run: without its context, TestClient starts an event loop per request and the
    # harness itself would grow by about 20 MB a minute
    client = testclient.TestClient(create_app(service, tokens, gallery_path)).__enter__()
    admin = {"Authorization": f"Bearer {tokens['admin']}"}
    read = {"Authorization": f"Bearer {tokens['read']}"}
    acknowledged, removed, failures = [], set(), []
    stop = threading.Event()

    def enrol_and_remove(index):
        name = f"person{index}"
        answer = client.post("/api/gallery", data={"name": name, "consent": "yes"}, headers=admin,
                             files=[("photos", ("p.png", photo, "image/png"))])
        if answer.status_code == 200:
            acknowledged.append(name)
            if index % 2:                               # remove every other one again
                if client.delete(f"/api/gallery/{name}", headers=admin).status_code == 200:
                    removed.add(name)
        else:
            failures.append(answer.text)

    def read_status():
        while not stop.is_set():
            for path in ("/api/status", "/metrics", "/api/frame.jpg", "/api/gallery"):
                if client.get(path, headers=read).status_code not in (200, 503):
                    failures.append(path)

    reader = threading.Thread(target=read_status)
    try:
        frames.wait_for(WARM_UP)
        baseline = resident_mb()
        reader.start()
        samples = []
        for sample in range(SAMPLES):                   # enrolments here, status reads and the loop beside them
            for index in range(sample * ENROLMENTS, (sample + 1) * ENROLMENTS):
                enrol_and_remove(index)
            frames.wait_for(WARM_UP + (sample + 1) * FRAMES)
            samples.append(resident_mb())
    finally:
        stop.set()
        if reader.is_alive():
            reader.join(timeout=30)
        client.__exit__(None, None, None)
        service.stop()
        pipeline.close()
    print(f"soak: {service.state.frames} frames, {len(acknowledged)} enrolments ({len(removed)} removed again), "
          f"resident MB at start {baseline:.0f}, every {ENROLMENTS} enrolments {[round(s) for s in samples]}")
    assert not failures, failures[:3]
    assert len(acknowledged) >= 10 and service.state.frames > 100
    # flat: the second half of the run grows by less than 8 MB over the first half's peak (measured: 1 MB)
    half = len(samples) // 2
    assert max(samples[half:]) - max(samples[:half]) < 8, (baseline, samples)
    gallery = SqliteGallery(gallery_path)
    kept = {name for name, _ in gallery.people.identities()}
    gallery.close()
    assert kept == set(acknowledged) - removed
