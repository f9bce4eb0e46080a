"""train -> compile -> enroll -> run at tiny sizes, on synthetic faces, through the real CLIs."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from benchmarks.cli import main as benchmarks_main
from compile.cli import main as compile_main
from edge.base.errors import UserError
from edge.commands.cli import main as edge_main
from edge.faces.pipeline import open_pipeline
from edge.gallery.sqlite import SqliteGallery
from edge.runtime.manifest import read_manifest
from edge.runtime.packaged import packaged_model_path
from trainer.cli import main as trainer_main

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]

ENROLLED = (300, 301)
STRANGERS = (302, 303)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    packaged_model_path("blazeface_short")           # fails clearly if the detector package is missing
    root = tmp_path_factory.mktemp("skeleton")
    assert edge_main(["synth", "--out", str(root / "raw"), "--identities", "40", "--images", "10"]) == 0
    assert edge_main(["synth", "--out", str(root / "visitors"), "--identities", "4", "--images", "8",
                      "--first_seed", str(ENROLLED[0])]) == 0
    assert edge_main(["align", "--src", str(root / "raw"), "--out", str(root / "aligned")]) == 0
    assert trainer_main(["verifier", "--data", str(root / "aligned"), "--out", str(root / "verifier.pt"),
                         "--epochs", "20"]) == 0
    assert trainer_main(["generator", "--data", str(root / "aligned"), "--out", str(root / "generator.pt"),
                         "--epochs", "2"]) == 0
    assert edge_main(["keygen", str(root / "keys")]) == 0
    code = compile_main(["--target", "host", "--checkpoints", str(root / "verifier.pt"), str(root / "generator.pt"),
                         "--calibration", str(root / "aligned"), "--calibration_images", "120",
                         "--out", str(root / "bundles"), "--sign", str(root / "keys" / "signing.key")])
    assert code == 0
    return root


@pytest.fixture(scope="module")
def one_enrolled(bundle):
    """A gallery with one visitor, for tests that need any gallery at all."""
    gallery = bundle / "one.db"
    if not gallery.exists():
        assert edge_main(["enroll", "--bundle", str(bundle / "bundles" / "host"), "--gallery", str(gallery),
                          "--name", "id0300", "--consent", str(bundle / "visitors" / "id0300")]) == 0
    return gallery


def test_manifest_carries_everything_edge_needs(bundle):
    manifest = read_manifest(bundle / "bundles" / "host")
    kinds = {(m.task, m.format, m.precision) for m in manifest.models}
    assert {("detect", "tflite", "fp32"), ("verify", "onnx", "fp32"), ("verify", "onnx", "int8"),
            ("verify", "tflite", "fp32"), ("generate", "onnx", "fp32")} <= kinds
    verifier = manifest.find("verify", "onnx", "int8")
    assert verifier.threshold is not None and verifier.calibration["images"] > 0
    assert verifier.accuracy["passed"] and verifier.input.mean == (127.5, 127.5, 127.5)
    assert verifier.input.crop == "arcface112" and verifier.source_sha256


def test_compile_signs_the_bundle_and_a_board_that_trusts_the_key_installs_it(bundle, capsys):
    import os
    import shutil

    from edge.base.paths import trusted_keys_dir
    from edge.bundles.signing import verify_bundle

    folder = bundle / "bundles" / "host"
    with pytest.raises(UserError, match="which this board does not trust"):
        verify_bundle(folder)
    trusted_keys_dir().mkdir(parents=True)
    shutil.copy(bundle / "keys" / "signing.pub", trusted_keys_dir() / "ci.pub")      # trusting = copying the .pub
    assert verify_bundle(folder).signed_by == "ci.pub"
    assert edge_main(["bundle", "install", str(folder)]) == 0
    assert "signed by ci.pub" in capsys.readouterr().out
    assert (bundle / "keys" / "signing.key").stat().st_mode & 0o777 == 0o600 and os.listdir(trusted_keys_dir())


def test_every_visitor_gets_one_decision_and_no_one_is_named_wrongly(bundle, capsys):
    bundle_dir, gallery = bundle / "bundles" / "host", bundle / "gallery.db"
    for seed in ENROLLED:
        name = f"id{seed:04d}"
        assert edge_main(["enroll", "--bundle", str(bundle_dir), "--gallery", str(gallery), "--name", name,
                          "--consent", str(bundle / "visitors" / name)]) == 0
    capsys.readouterr()
    seeds = ",".join(str(s) for s in ENROLLED + STRANGERS)
    source = f"synthetic://kiosk?seeds={seeds}&frames_per_person=20"
    assert edge_main(["run", "--bundle", str(bundle_dir), "--gallery", str(gallery), "--output",
                      str(bundle / "kiosk.mp4"), "--source", source]) == 0
    captured = capsys.readouterr()
    decisions = [json.loads(line) for line in captured.out.splitlines()]
    assert (bundle / "kiosk.mp4").stat().st_size > 0
    assert sorted(d["truth"] for d in decisions) == sorted(f"id{s:04d}" for s in ENROLLED + STRANGERS)
    enrolled = [d for d in decisions if d["truth"] in {f"id{s:04d}" for s in ENROLLED}]
    strangers = [d for d in decisions if d["truth"] in {f"id{s:04d}" for s in STRANGERS}]
    assert all(d["identity"] in (None, d["truth"]) for d in enrolled)            # no one named as someone else
    assert all(d["outcome"] != "named" for d in strangers)                       # no stranger named
    assert sum(d["identity"] == d["truth"] for d in enrolled) >= 1                # measured: both
    assert all(d["track"] and d["reason"] and d["samples"] >= 1 for d in decisions)
    assert "4 visits, 4 decisions" in captured.err and "visitors_with_one_decision 4" in captured.err
    logged = SqliteGallery(gallery)
    assert logged.events.count() == 4
    logged.close()


def test_both_backends_agree_on_the_same_bundle(bundle):
    bundle_dir = bundle / "bundles" / "host"
    images = sorted((bundle / "visitors").rglob("*.png"))[:6]
    from edge.base.imageio import read_image
    embeddings = {}
    for backend in ("onnxruntime", "tflite"):
        pipeline = open_pipeline(bundle_dir, backend=backend, precision="fp32")
        assert pipeline.faces.embedder.backend_name == backend
        embeddings[backend] = np.stack([pipeline.faces.embed_image(read_image(p)) for p in images])
        pipeline.close()
    np.testing.assert_allclose((embeddings["onnxruntime"] * embeddings["tflite"]).sum(1), 1.0, atol=1e-4)


def test_benchmarks_run_on_the_bundle(bundle):
    bundle_dir, results = bundle / "bundles" / "host", bundle / "results"
    assert benchmarks_main(["latency", "--bundle", str(bundle_dir), "--results", str(results),
                            "--warmup", "2", "--repeat", "5"]) == 0
    assert benchmarks_main(["pairs", "--images", str(bundle / "raw"), "--out", str(bundle / "pairs.txt"),
                            "--folds", "4", "--per_fold", "6"]) == 0
    assert benchmarks_main(["verify", "--bundle", str(bundle_dir), "--pairs", str(bundle / "pairs.txt"),
                            "--images", str(bundle / "raw"), "--results", str(results)]) == 0
    assert benchmarks_main(["pipeline", "--bundle", str(bundle_dir), "--results", str(results), "--frames", "20",
                            "--source", "synthetic://kiosk?seeds=1,2&frames_per_person=10"]) == 0
    report = (results / "host" / "report.md").read_text()
    assert "verifier.onnx.int8" in report and "Pipeline" in report
    # 2 detectors, 3 verifier files, 3 of the generator's reconstructing graph and 3 of its decoder
    assert len(list(Path(results / "host").glob("latency-*.json"))) == 11


BLOCK_TORCH = ("import sys\nfor name in ('torch', 'trainer', 'compile', 'onnx', 'litert_torch'):\n"
               "    sys.modules[name] = None\n")


def test_the_board_side_runs_without_torch(bundle):
    """What a board installs (the `edge` extra) has no torch: run and benchmark with torch made unimportable."""
    bundle_dir = bundle / "bundles" / "host"
    script = BLOCK_TORCH + (
        "from edge.commands.cli import main as edge\nfrom benchmarks.cli import main as bench\n"
        f"assert edge(['enroll', '--bundle', {str(bundle_dir)!r}, '--gallery', {str(bundle / 'g2.db')!r},"
        f" '--name', 'id0300', '--consent', {str(bundle / 'visitors' / 'id0300')!r}]) == 0\n"
        f"assert edge(['run', '--bundle', {str(bundle_dir)!r}, '--gallery', {str(bundle / 'g2.db')!r},"
        " '--source', 'synthetic://kiosk?seeds=1&frames_per_person=5']) == 0\n"
        f"assert bench(['latency', '--bundle', {str(bundle_dir)!r}, '--results', {str(bundle / 'r2')!r},"
        " '--warmup', '1', '--repeat', '3']) == 0\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "summary: 10 frames" in done.stderr


@pytest.mark.real
def test_verification_on_real_orl_pairs(bundle, shared_data):
    """The synthetic-trained bundle on real faces, through detect -> align -> embed: above chance, no misses."""
    pairs, results = bundle / "orl_pairs.txt", bundle / "orl_results"
    orl = str(shared_data / "orl")
    assert benchmarks_main(["pairs", "--images", orl, "--out", str(pairs), "--folds", "10", "--per_fold", "10"]) == 0
    assert benchmarks_main(["verify", "--bundle", str(bundle / "bundles" / "host"), "--pairs", str(pairs),
                            "--images", orl, "--results", str(results)]) == 0
    result = json.loads(next((results / "host").glob("verify-*.json")).read_text())
    assert result["faces_not_found"] == 0 and result["pair_count"] == 200
    assert result["roc_auc"] > 0.65             # a 40-identity synthetic toy set; the demo's bundle reaches 0.87


def test_sigterm_drains_the_loop_and_leaves_a_playable_video(bundle, one_enrolled):
    import signal
    import time

    import cv2

    video = bundle / "stopped.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "edge", "run", "--bundle", str(bundle / "bundles" / "host"), "--gallery",
         str(one_enrolled), "--output", str(video), "--source",
         "synthetic://kiosk?seeds=300,301,302,303&frames_per_person=400"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 60
    while not video.exists() and time.monotonic() < deadline:    # the first frame written: the loop is running
        time.sleep(0.2)
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err[-2000:]
    assert "Traceback" not in err and "run: interrupted; deciding the visits still open" in err
    assert "summary:" in err and len(out.splitlines()) >= 1           # the open visit was decided and printed
    capture = cv2.VideoCapture(str(video))
    frames = 0
    while capture.read()[0]:
        frames += 1
    assert frames > 0


def test_under_systemd_the_kiosk_reports_ready_and_feeds_the_watchdog(bundle, one_enrolled, tmp_path):
    import os
    import socket

    path = tmp_path / "notify"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(30)
    env = {**os.environ, "NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "100000"}
    done = subprocess.run([sys.executable, "-m", "edge", "run", "--bundle", str(bundle / "bundles" / "host"),
                           "--gallery", str(one_enrolled), "--source",
                           "synthetic://kiosk?seeds=300,302&frames_per_person=40"],
                          capture_output=True, text=True, cwd=ROOT, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    messages = []
    server.settimeout(0.5)
    try:
        while True:
            messages.append(server.recv(256).decode())
    except socket.timeout:
        pass
    server.close()
    assert messages[0].startswith("READY=1\nSTATUS=running verifier.onnx.int8 on synthetic://")
    assert sum(m.startswith("WATCHDOG=1") for m in messages) >= 3
