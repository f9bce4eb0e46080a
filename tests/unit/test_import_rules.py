"""DESIGN.md's import rules, checked on the source: edge and benchmarks must run on a board without torch."""
import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = {
    "edge": {"torch", "trainer", "compile", "benchmarks", "onnx", "litert_torch"},
    "trainer": {"compile", "benchmarks"},
    "compile": {"benchmarks"},
    "benchmarks": {"torch", "trainer", "compile", "onnx", "litert_torch"},
    "synthetic_faces": {"edge", "torch", "trainer", "compile", "benchmarks", "onnx", "litert_torch"},
}
SOURCE_DIRS = {"synthetic_faces": ROOT / "packages" / "synthetic-faces" / "synthetic_faces"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_keeps_to_its_imports(package):
    offenders = {str(p.relative_to(ROOT)): sorted(imported_roots(p) & FORBIDDEN[package])
                 for p in SOURCE_DIRS.get(package, ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_kiosk_runs_without_the_face_renderer():
    """The renderer is data, not runtime, and a distribution of its own: no edge module imports it (the
    synthetic:// source and `edge synth` load it on demand), the kiosk's modules load with it absent, and
    asking for a synthetic source then names what to install."""
    import subprocess
    import sys

    importers = [str(p.relative_to(ROOT)) for p in (ROOT / "edge").rglob("*.py")
                 if "synthetic_faces" in imported_roots(p)]
    assert importers == []
    script = """
import importlib.abc, sys
class Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "synthetic_faces":
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Absent())
import edge.cli, edge.service, edge.web, edge.stream, edge.sources.camera
from edge.errors import UserError
from edge.sources import open_source
try:
    open_source("synthetic://kiosk")
except UserError as err:
    print(err)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install packages/synthetic-faces" in done.stdout
