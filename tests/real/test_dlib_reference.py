"""dlib's face descriptor imported into PyTorch reproduces dlib itself on real faces from ../shared/data."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from edge.base.errors import UserError
from edge.base.imageio import read_image
from edge.runtime.preprocess import prepare_batch
from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.dlib_import.convert import load_dlib_resnet, packaged_dat_path

pytestmark = pytest.mark.real
dlib = pytest.importorskip("dlib")

FACES_PER_SET = 6


@pytest.fixture(scope="module")
def dat_path() -> Path:
    try:
        return packaged_dat_path()
    except UserError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="module")
def imported(dat_path):
    return load_dlib_resnet(dat_path)


@pytest.fixture(scope="module")
def chips(shared_data, dat_path) -> list[np.ndarray]:
    """150x150 RGB chips cut exactly as dlib cuts them: HOG detector, 5-point shape, get_face_chip."""
    detector = dlib.get_frontal_face_detector()
    shapes = dlib.shape_predictor(str(dat_path.parent / "shape_predictor_5_face_landmarks.dat"))
    sets = [sorted((shared_data / "orl").glob("s*/1.pgm")), sorted((shared_data / "faces80").glob("*/*.jpg"))]
    found = []
    for paths in sets:
        chips_here = []
        for path in paths[:60]:
            rgb = np.ascontiguousarray(read_image(path)[:, :, ::-1])
            faces = detector(rgb, 1)
            if faces:
                chips_here.append(dlib.get_face_chip(rgb, shapes(rgb, faces[0]), size=150, padding=0.25))
            if len(chips_here) == FACES_PER_SET:
                break
        found += chips_here
    assert len(found) == 2 * FACES_PER_SET, "dlib's detector should find faces in both sets"
    return found


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """What ``python -m trainer import dlib-resnet`` writes, read back."""
    path = tmp_path_factory.mktemp("dlib") / "dlib_resnet.pt"
    assert main(["import", "dlib-resnet", "--out", str(path)]) == 0
    return load_checkpoint(path)


def test_reads_the_whole_file(imported, dat_path):
    model, info = imported
    assert info["source_bytes"] == dat_path.stat().st_size == 22_466_066
    assert info["convs"] == 29 == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert info["layers"] == {"input_rgb_image_sized": 1, "con_4": 29, "affine_": 29, "relu_": 29, "max_pool_2": 1,
                              "tag/skip": 22, "add_prev_": 14, "avg_pool_2": 5, "fc_2": 1}
    assert 5.5e6 < info["parameters"] < 5.7e6


def test_matches_dlib_on_real_faces(imported, chips, dat_path, checkpoint):
    model, _ = imported
    reference = dlib.face_recognition_model_v1(str(dat_path))
    expected = np.array([reference.compute_face_descriptor(chip) for chip in chips], np.float32)   # N,128
    # Normalised by the edge runtime's own code, as the checkpoint's InputSpec says (chips are RGB, it takes BGR).
    batch = prepare_batch([chip[:, :, ::-1] for chip in chips], checkpoint.preprocessing)
    with torch.no_grad():
        got = model(torch.from_numpy(batch)).numpy()
    cosine = (got * expected).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(expected, axis=1)
    assert cosine.min() >= 0.9999
    assert np.abs(got - expected).max() < 1e-5               # measured 4e-7: the same network, float32 rounding


def test_cli_checkpoint_rebuilds_the_model(imported, chips, checkpoint):
    model, info = imported
    assert (checkpoint.architecture, checkpoint.task, checkpoint.threshold) == ("dlib_resnet", "verify", None)
    assert checkpoint.preprocessing.mean == (122.782, 117.001, 104.298)
    assert checkpoint.preprocessing.std == (256.0, 256.0, 256.0) and checkpoint.preprocessing.crop == "dlib150"
    assert checkpoint.metrics["source_sha256"] == info["source_sha256"]
    assert checkpoint.metrics["licence"].startswith("CC0-1.0")
    rebuilt = checkpoint.build_model()
    x = torch.from_numpy(prepare_batch([chip[:, :, ::-1] for chip in chips[:2]], checkpoint.preprocessing))
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))
