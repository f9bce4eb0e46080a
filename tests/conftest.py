"""Test tiers (markers in pyproject.toml), the --board option, and the shared real-data location."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGE_FACE_DATA", ROOT.parent / "shared" / "data"))


def pytest_addoption(parser):
    parser.addoption("--board", default=None, help="run the board tier on this board (e.g. rpi4, jetson)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--board"):
        return
    skip = pytest.mark.skip(reason="board test: needs the hardware, run with --board NAME")
    for item in items:
        if "board" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real face data not found at {SHARED_DATA} (set EDGE_FACE_DATA)")
    return SHARED_DATA


@pytest.fixture
def detector_bundle(tmp_path):
    """Makes a host bundle holding one packaged detector file: ``detector_bundle("blazeface_full") -> folder``."""
    import shutil

    from edge.manifest import Manifest, write_manifest
    from edge.vendor_models import detector_entry, packaged_model_path

    def make(name: str = "blazeface_short") -> Path:
        folder = tmp_path / f"bundle-{name}"
        folder.mkdir()
        source = packaged_model_path(name)
        shutil.copy(source, folder / source.name)
        entry = detector_entry(name, source.name, folder / source.name)
        write_manifest(folder, Manifest(board="host", created="2026-01-01T00:00:00Z", tools={}, models=(entry,)))
        return folder
    return make
