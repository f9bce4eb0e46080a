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
    "synthetic_faces": {"torch", "trainer", "compile", "benchmarks", "onnx", "litert_torch"},
}


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
                 for p in (ROOT / package).rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_kiosk_never_loads_the_face_renderer():
    """The renderer is data, not runtime: only the synthetic:// source (itself loaded on demand) imports it at
    module level, and a kiosk's modules load without it."""
    import subprocess
    import sys

    at_top = [str(p.relative_to(ROOT)) for p in (ROOT / "edge").rglob("*.py")
              if any(isinstance(node, (ast.Import, ast.ImportFrom)) and "synthetic_faces" in ast.dump(node)
                     for node in ast.parse(p.read_text()).body)]
    assert at_top == ["edge/sources/synthetic.py"]
    script = ("import sys, edge.cli, edge.service, edge.web, edge.stream, edge.sources, edge.sources.camera; "
              "print(sorted(m for m in sys.modules if m.startswith('synthetic_faces')))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
