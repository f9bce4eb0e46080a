"""``python -m edge generate``: sampling from a compiled decoder, and anonymising a stream, failing closed."""
from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.pipeline_bench import altered
from edge.commands.cli import main
from edge.faces.scan import load_detectors
from edge.generation.anonymise import PIXEL_BLOCKS, Anonymiser
from edge.generation.generate import open_generator, pick_role
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import load_board
from edge.runtime.manifest import read_manifest
from edge.sources import open_source
from tests.unit.test_trainer import make_faces

pytestmark = pytest.mark.unit
STREAM = "synthetic://kiosk?seeds=3,4&frames_per_person=12&gap_frames=2&width=640&height=360"


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A host bundle holding an autoencoder's reconstructing graph and its decoder (FP32 ONNX)."""
    from compile.cli import main as compile_main
    from trainer.cli import main as trainer_main

    root = tmp_path_factory.mktemp("generate")
    faces = make_faces(root / "faces", identities=4, images=8)
    assert trainer_main(["generator", "--data", str(faces), "--out", str(root / "generator.pt"), "epochs=1",
                         "batch_size=8", "dedup_distance=0", "--threads", "1"]) == 0
    assert compile_main(["--target", "host", "--checkpoints", str(root / "generator.pt"), "--calibration", str(faces),
                         "--calibration_images", "16", "--holdout_images", "8", "--artifacts", "onnx:fp32",
                         "--out", str(root / "bundles")]) == 0
    return root / "bundles" / "host"


def test_sample_writes_a_grid_or_one_png_per_face(bundle, tmp_path, capsys):
    assert main(["generate", "--bundle", str(bundle), "--count", "10", "--out", str(tmp_path / "faces.png")]) == 0
    grid = cv2.imread(str(tmp_path / "faces.png"))
    assert grid.shape == (2 * 64, 8 * 64, 3)
    assert main(["generate", "--bundle", str(bundle), "--count", "3", "--out", str(tmp_path / "each")]) == 0
    assert sorted(p.name for p in (tmp_path / "each").iterdir()) == [f"face_000{i}.png" for i in range(3)]
    assert "generator_decoder" in capsys.readouterr().err


@pytest.mark.parametrize("out, count, why", [
    ("g.png", "100000000", "--count 100000000: at most 1024 faces"),
    ("g.txt", "4", "--out .*g.txt: a grid is a .png/.jpg/.jpeg file"),
    ("taken.png", "4", "--out .*taken.png exists; choose a new name"),
])
def test_sample_refuses_what_it_cannot_or_should_not_write_before_loading_anything(bundle, tmp_path, capsys, out,
                                                                                  count, why):
    (tmp_path / "taken.png").write_bytes(b"mine")
    assert main(["generate", "--bundle", str(bundle), "--count", count, "--out", str(tmp_path / out)]) == 2
    assert re.search(why, capsys.readouterr().err)
    assert (tmp_path / "taken.png").read_bytes() == b"mine" and not (tmp_path / "g.txt").exists()


def test_each_mode_picks_a_generator_that_fits_and_refuses_one_that_does_not(bundle, tmp_path, capsys):
    manifest = read_manifest(bundle)
    assert pick_role(manifest, "sample") == "generator_decoder"
    assert pick_role(manifest, "reconstruct") == "generator"
    assert pick_role(manifest, "anonymise") == "generator_decoder"     # no face swap here: a decoder's faces
    cases = [(["--model", "generator", "--out", str(tmp_path / "x.png")],
              "generator generator takes a face, which sample cannot use"),
             ([], "--mode sample writes faces: give --out"),
             (["--mode", "anonymise", "--output", str(tmp_path / "a.mp4")], "give --source"),
             (["--model", "nobody", "--out", str(tmp_path / "x.png")], "the bundle has no generator 'nobody'")]
    for extra, message in cases:
        assert main(["generate", "--bundle", str(bundle), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def _anonymiser(bundle: Path, mode: str = "anonymise") -> Anonymiser:
    manifest = read_manifest(bundle)
    board = load_board(manifest.board)
    generator, _ = open_generator(bundle, manifest, board, mode, threads=1)
    detectors = load_detectors(bundle, manifest, board, BackendOptions(threads=1))
    return Anonymiser(detectors, generator, board.detection, board.tracking)


def _changed(before: np.ndarray, after: np.ndarray, box: np.ndarray) -> float:
    x1, y1, x2, y2 = np.clip(box, 0, [before.shape[1], before.shape[0]] * 2).astype(int)
    return float(np.abs(before[y1:y2, x1:x2].astype(np.int16) - after[y1:y2, x1:x2]).mean())


@pytest.mark.parametrize("mode", ["anonymise", "reconstruct"])
def test_every_face_the_detector_finds_is_altered_in_every_frame(bundle, mode):
    anonymiser = _anonymiser(bundle, mode)
    from edge.faces.packaged_detector import load_packaged_detector

    detector = load_packaged_detector()              # an independent look at every input frame
    frames = faces = 0
    with open_source(STREAM) as source:
        for frame in source:
            step = anonymiser.step(frame.image, frame.index, frame.time_s)
            for found in detector.detect(frame.image):
                faces += 1
                assert altered(frame.image, step.image, found.box), f"frame {frame.index}: a face left as it was"
            frames += 1
    assert frames == 28 and faces >= 20


def test_a_face_the_detector_loses_for_a_frame_is_pixelated_not_shown(bundle, monkeypatch):
    anonymiser = _anonymiser(bundle)
    with open_source(STREAM) as source:
        frames = [frame.image for frame, _ in zip(source, range(6))]
    for index, image in enumerate(frames[:5]):
        step = anonymiser.step(image, index, index / 30)
    assert step.replaced == 1
    box = next(t for t in anonymiser.tracker.tracks).box
    monkeypatch.setattr(anonymiser.strategy, "detect_arrivals_now", lambda *args: [])   # the detector blinks
    blink = anonymiser.step(frames[5], 5, 5 / 30)
    assert blink.replaced == 0 and blink.pixelated == 1
    assert _changed(frames[5], blink.image, box) > 8
    x1, y1, x2, y2 = box.astype(int)
    colours = np.unique(blink.image[y1:y2, x1:x2].reshape(-1, 3), axis=0)
    assert len(colours) <= 2 * PIXEL_BLOCKS ** 2          # flat blocks (the box overlaps at most 7 x 7 of them)


def test_anonymise_writes_the_video_and_reports_what_it_replaced(bundle, tmp_path, capsys):
    out = tmp_path / "anonymised.mp4"
    assert main(["generate", "--bundle", str(bundle), "--mode", "anonymise", "--source", STREAM,
                 "--output", str(out), "--max_frames", "10"]) == 0
    assert '"frames": 10' in capsys.readouterr().out
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 10
    capture.release()


def test_benchmarks_time_the_decoders_on_latents_and_the_anonymiser_on_a_stream(bundle, tmp_path):
    from benchmarks.latency import LatencyOptions, run_latency
    from benchmarks.pipeline_bench import PipelineOptions, run_pipeline

    _, results = run_latency(LatencyOptions(bundle, warmup=1, repeat=3))
    decoder = next(r for r in results if r["model"]["name"] == "generator_decoder.onnx.fp32")
    assert decoder["input"].startswith("8 latents from its prior") and decoder["summary"]["p50"] > 0
    board, result = run_pipeline(PipelineOptions(bundle, STREAM, frames=10, warmup=2, modes=("anonymise",)))
    anonymise = result["modes"]["anonymise"]
    assert board == "host" and anonymise["frames"] == 10 and anonymise["fps"] > 0
    assert anonymise["generator"].startswith("generator_decoder.fp32.onnx")
    assert set(anonymise["stages"]) == {"read", "detect", "generate", "blend", "total"}
    assert anonymise["witness_faces"] >= 5 and anonymise["witness_faces_unaltered"] == 0


def test_the_anonymised_stream_is_served_as_a_page_with_only_output_frames(bundle):
    import time

    from fastapi.testclient import TestClient

    from edge.generation.anonymise import AnonymisedStream
    from edge.generation.anonymise_web import create_app

    anonymiser = _anonymiser(bundle)
    with open_source(STREAM) as source:
        stream = AnonymisedStream(anonymiser, source, max_frames=8, keep_jpeg=True).start()
        client = TestClient(create_app(stream))
        deadline = time.monotonic() + 60
        while not stream.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        stream.stop()
    assert "Anonymised stream" in client.get("/").text
    status = client.get("/api/status").json()
    assert status["frames"] == 8 and status["faces_replaced"] >= 1 and status["error"] is None
    frame = client.get("/api/frame.jpg")
    assert frame.status_code == 200 and frame.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(frame.content, np.uint8), cv2.IMREAD_COLOR).shape == (360, 640, 3)
    assert client.get("/health").json()["ok"]
