"""What a board installs works outside a clone: the wheel carries the board configs and not the face renderer,
which is a distribution of its own."""
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def build_wheel(project: Path, into: Path) -> list[str]:
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(project), "--no-deps", "--no-build-isolation",
                            "-w", str(into), "-q"], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = into.glob("*.whl")
    return zipfile.ZipFile(wheel).namelist()


def packages_in(names: list[str]) -> set[str]:
    return {n.split("/")[0] for n in names if n.endswith(".py")}


def test_the_face_renderer_is_a_distribution_of_its_own(tmp_path):
    assert packages_in(build_wheel(ROOT / "packages" / "synthetic-faces", tmp_path)) == {"synthetic_faces"}


def test_the_wheel_carries_every_board_config_and_board_names_work_from_it(tmp_path):
    names = build_wheel(ROOT, tmp_path / "wheel")
    assert packages_in(names) == {"edge", "trainer", "compile", "benchmarks", "board_configs"}
    (wheel,) = (tmp_path / "wheel").glob("edge_face-*.whl")
    boards = sorted(p.name for p in (ROOT / "board_configs").glob("*.yaml"))
    assert sorted(Path(n).name for n in names if n.startswith("board_configs/") and n.endswith(".yaml")) == boards
    zipfile.ZipFile(wheel).extractall(tmp_path / "site")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    script = ("import edge.runtime.boards as b; from edge.runtime.boards import load_board; print(b.__file__); "
              "print(load_board('jetson').name, load_board('rpi4').threads)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=outside,
                          env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    where, *loaded = done.stdout.split()
    assert where.startswith(str(tmp_path / "site")) and loaded == ["jetson-orin-nano", "4"]
