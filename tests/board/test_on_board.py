"""The board tier: run on the board itself with `pytest tests/board --board NAME` (skipped elsewhere).

Point EDGE_FACE_BUNDLE at the bundle compiled for that board (bundles/<board>); set EDGE_FACE_CAMERA to
override the board config's default camera URI.
"""
import os
import platform

import pytest

from edge.backends import BACKENDS
from edge.boards import load_board
from edge.manifest import read_manifest
from edge.pipeline import Pipeline
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


def test_bundle_was_built_for_this_board_and_runs(board, bundle_dir):
    assert read_manifest(bundle_dir).board == board.name
    pipeline = Pipeline.from_bundle(bundle_dir)
    with open_source("synthetic://kiosk?seeds=1,2&frames_per_person=10") as source:
        faces = sum(len(pipeline.process(frame.image).decisions) for frame in source)
    pipeline.close()
    assert faces >= 15


def test_default_camera_delivers_frames(board):
    with open_source(os.environ.get("EDGE_FACE_CAMERA", board.camera)) as camera:
        frames = [camera.read() for _ in range(30)]
    assert sum(f is not None for f in frames) >= 25
