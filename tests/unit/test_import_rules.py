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
import edge.commands.cli, edge.kiosk.service, edge.kiosk.web, edge.kiosk.stream, edge.sources.camera
from edge.base.errors import UserError
from edge.sources import open_source
try:
    open_source("synthetic://kiosk")
except UserError as err:
    print(err)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install packages/synthetic-faces" in done.stdout


# edge's rooms, lowest first: a module imports from its own room and the rooms before it, never from a later one
EDGE_ROOMS = ("base", "runtime", "sources", "gallery", "fleet", "faces", "liveness", "bundles", "generation", "kiosk",
              "commands")
PROJECT = {"edge": ROOT / "edge", "trainer": ROOT / "trainer", "compile": ROOT / "compile",
           "benchmarks": ROOT / "benchmarks", "synthetic_faces": SOURCE_DIRS["synthetic_faces"]}


def project_modules() -> dict[str, Path]:
    """Every module of the project by dotted name (a package by its own name)."""
    modules = {}
    for package, folder in PROJECT.items():
        for path in folder.rglob("*.py"):
            parts = (package, *path.relative_to(folder).with_suffix("").parts)
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its file, inside functions too (such an import still ties
    the two files), each resolved to the deepest module that exists."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm, iterative)."""
    index, low, on_stack, stack, circles, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    circles.append(sorted(group))
    return circles


def test_no_two_project_files_import_each_other_even_through_others():
    modules = project_modules()
    graph = {name: imported_modules(name, path, modules) for name, path in modules.items()}
    assert import_circles(graph) == []


def test_the_circle_finder_finds_a_circle():
    assert import_circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def edge_room(module: str) -> str:
    return module.split(".")[1] if module.count(".") else ""


def test_edge_lives_in_its_rooms_and_imports_only_downwards():
    modules = project_modules()
    loose = sorted(name for name in modules if name.startswith("edge.") and edge_room(name) not in EDGE_ROOMS
                   and name != "edge.__main__")
    assert loose == [], f"every edge module belongs to one of the rooms {EDGE_ROOMS}"
    upward = {}
    for name, path in modules.items():
        if not name.startswith("edge.") or name == "edge.__main__":
            continue
        rank = EDGE_ROOMS.index(edge_room(name))
        above = sorted(m for m in imported_modules(name, path, modules)
                       if m.startswith("edge.") and EDGE_ROOMS.index(edge_room(m)) > rank)
        if above:
            upward[name] = above
    assert upward == {}, f"rooms, lowest first: {EDGE_ROOMS}"


def test_room_packages_re_export_nothing():
    """Import paths are not an interface to keep: a room's __init__ holds its own code or nothing, never a shim
    that re-exports a moved module's names."""
    shims = {}
    for init in (ROOT / "edge").rglob("__init__.py"):
        tree = ast.parse(init.read_text())
        imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and (node.module or "").startswith("edge") for alias in node.names}
        used = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        if imported - used:
            shims[str(init.relative_to(ROOT))] = sorted(imported - used)
    assert shims == {}
