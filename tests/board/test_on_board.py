"""The board tier: run on the board itself with `pytest tests/board --board NAME` (skipped elsewhere).

Point EDGE_FACE_BUNDLE at the bundle compiled for that board (bundles/<board>); set EDGE_FACE_CAMERA to
override the board config's default camera URI. Every compiled file, at each precision the bundle carries, must
reproduce the golden outputs stored at compile time (``edge.bundles.golden``) on the board's own backends: on a Jetson
that builds and runs every TensorRT engine (the first run builds them, minutes).
"""
import os
import platform

import numpy as np
import pytest

from edge.bundles.golden import GOLDEN_FILE, check_folder
from edge.faces.pipeline import open_pipeline
from edge.runtime.backends import BACKENDS
from edge.runtime.boards import load_board
from edge.runtime.manifest import read_manifest
from edge.runtime.models import runnable_here
from edge.sources import open_source

pytestmark = pytest.mark.board


@pytest.fixture(scope="module")
def board(request):
    return load_board(request.config.getoption("--board"))


@pytest.fixture(scope="module")
def bundle_dir(board):
    path = os.environ.get("EDGE_FACE_BUNDLE", f"bundles/{board.name}")
    if not os.path.isdir(path):
        pytest.fail(f"no bundle at {path}: compile one with python -m compile --target {board.name}")
    return path


def test_machine_matches_the_board_config(board):
    assert platform.machine() == board.arch


def test_every_preferred_backend_is_installed(board):
    for name in board.backends:
        BACKENDS.get(name)()
        assert runnable_here(name), f"{name} is not installed on this board"


def test_bundle_was_built_for_this_board(board, bundle_dir):
    assert read_manifest(bundle_dir).board == board.name


def test_every_file_at_every_precision_reproduces_its_golden_outputs(bundle_dir):
    checks = check_folder(bundle_dir)
    failed = [f"{c.file} ({c.precision}, {c.backend}): {c.reason}" for c in checks if not c.passed]
    assert checks and not failed, failed


def test_the_pipeline_finds_every_face_of_the_golden_frame(board, bundle_dir):
    with np.load(os.path.join(bundle_dir, GOLDEN_FILE)) as golden:
        frame = golden["frame"]
        expected = len(golden[f"detector.{board.detection.detector}.boxes"])
    pipeline = open_pipeline(bundle_dir)
    try:
        result = pipeline.process(frame)
    finally:
        pipeline.close()
    assert len(result.decisions) == expected > 0


def test_default_camera_delivers_frames(board):
    with open_source(os.environ.get("EDGE_FACE_CAMERA", board.camera)) as camera:
        frames = [camera.read() for _ in range(30)]
    assert sum(f is not None for f in frames) >= 25
