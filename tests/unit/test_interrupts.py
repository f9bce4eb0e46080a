"""Ctrl+C and SIGTERM end a command with one line and exit code 130, and what it was writing is complete or
absent; a place that cannot be written is one line too."""
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from edge.base.errors import UserError
from edge.base.interrupts import INTERRUPTED, complete_or_absent

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_a_folder_written_whole_appears_in_one_rename(tmp_path):
    target = tmp_path / "out"
    with complete_or_absent(target, folder=True) as partial:
        (partial / "a.txt").write_text("a")
        assert not target.exists() and partial.parent == tmp_path
    assert (target / "a.txt").read_text() == "a" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("folder", [True, False])
def test_an_interrupted_write_leaves_nothing(tmp_path, folder):
    with pytest.raises(KeyboardInterrupt):
        with complete_or_absent(tmp_path / "out", folder=folder) as partial:
            (partial / "a.txt").write_text("a") if folder else partial.write_text("half")
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_nothing_is_written_over_and_bad_places_are_one_line(tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(UserError, match="taken exists; choose a new folder"):
        with complete_or_absent(tmp_path / "taken", folder=True):
            pass
    assert (tmp_path / "taken").read_text() == "mine"
    for bad, why in ((tmp_path / "taken" / "inside", "taken is a file, not a folder"),
                     (tmp_path / ("n" * 10_000), "too long")):
        with pytest.raises(UserError, match=why) as refused:
            with complete_or_absent(bad, folder=True):
                pass
        assert len(str(refused.value)) < 300
    with pytest.raises(UserError, match="/dev/null exists"):
        with complete_or_absent("/dev/null"):
            pass


def _interrupt(command: list[str], sig: int, tmp_path: Path, started: bytes) -> tuple[int, str]:
    """Runs ``python -m ...command``, sends ``sig`` once it printed ``started`` on stderr, and returns its exit code
    and everything it printed there."""
    # as a terminal's Ctrl+C finds it: a runner that started the tests in the background without job control leaves
    # SIGINT ignored, and Python keeps an inherited ignore; the child takes Python's own Ctrl+C handler back first
    child = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv = sys.argv[1:]; runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)")
    process = subprocess.Popen([sys.executable, "-c", child, *command], cwd=tmp_path, stderr=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(ROOT)})
    printed = b""
    while started not in printed:
        chunk = process.stderr.read1(4096)
        assert chunk, f"ended before it started: {printed.decode(errors='replace')[-500:]}"
        printed += chunk
    process.send_signal(sig)
    _, rest = process.communicate(timeout=60)
    return process.returncode, (printed + rest).decode(errors="replace")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_synth_stopped_by_ctrl_c_or_sigterm_leaves_no_half_dataset(tmp_path, sig):
    code, printed = _interrupt(["edge", "synth", "--out", "faces", "--identities", "200", "--images", "4"], sig,
                               tmp_path, b"synthetic faces")
    assert code == INTERRUPTED and "Traceback" not in printed
    assert "edge synth: interrupted; stopped" in printed
    assert list(tmp_path.iterdir()) == [], "neither the dataset nor a partial folder is left"


def test_align_of_a_folder_without_images_says_why(tmp_path, capsys):
    from edge.commands.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["align", "--src", str(tmp_path / "empty"), "--out", str(tmp_path / "out")]) == 2
    assert "error: " in capsys.readouterr().err and not (tmp_path / "out").exists()
