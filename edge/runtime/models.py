"""Choosing and loading a bundle's model files: which file, on which backend, at which precision.

``choose_model`` is the one place that decides; the pipeline, the benchmarks and compile's accuracy gates all
ask it, so what compile measured is what the board runs.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.runtime.backends import BACKEND_FORMATS, BACKENDS, ENGINE_CACHE, RUNTIME_MODULES
from edge.runtime.backends.base import Backend, BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import BoardConfig
from edge.runtime.manifest import Manifest, ModelEntry, verify_entry_file
from edge.runtime.preprocess import prepare_batch


@dataclass(frozen=True)
class Choice:
    entry: ModelEntry
    backend: str
    reason: str          # why this file and backend, for logs: "board default int8 on onnxruntime", ...


def backend_for(entry: ModelEntry, preference: tuple[str, ...] | list[str], backend: str | None = None) -> str:
    """``backend`` if it runs the entry's format, else the first in ``preference`` that does; errors say what would."""
    if backend is not None:
        BACKENDS.target(backend)                      # an unknown name fails with the valid ones
        if entry.format not in BACKEND_FORMATS.get(backend, ()):
            raise UserError(f"backend {backend} cannot run {entry.format} file {entry.file}")
        return backend
    for name in preference:
        if entry.format in BACKEND_FORMATS.get(name, ()):
            return name
    able = [name for name, formats in BACKEND_FORMATS.items() if entry.format in formats]
    raise UserError(f"no backend in {list(preference)} runs {entry.format} files; backends that do: {able or 'none'}")


def choose_model(manifest: Manifest, board: BoardConfig, task: str, backend: str | None = None,
                 precision: str | None = None, architecture: str | None = None,
                 profile: BoardProfile | None = None) -> Choice:
    """The entry for ``task`` that the board (or the user) would run, and the backend that runs it.

    Backends are tried in the board's preference order, after the one the board's measured ``profile`` found
    fastest for the task (or just ``backend``); at each, the requested precision, or, when none was requested, the
    task's default (the profile's, else the board's) and then fp32, since every bundle keeps an FP32 reference.
    An explicit precision is never replaced by another. ``architecture`` narrows the choice to one model (a
    bundle may carry several detectors).
    """
    candidates = [e for e in manifest.for_task(task) if architecture in (None, e.architecture)]
    if not candidates:
        which = f"{architecture} {task} model" if architecture else f"{task} model"
        raise UserError(f"the bundle has no {which} (board {board.name} needs it); recompile it with "
                        f"python -m compile --target {board.name}")
    kinds = [(e.format, e.precision) for e in candidates]
    found = pick_kind(kinds, board, task, backend, precision, profile)
    if found is None:
        have = ", ".join(f"{e.format}/{e.precision}" for e in candidates)
        wanted = precision or " or ".join(default_precisions(board, task, profile)[0])
        raise UserError(f"no {task} model in the bundle for backend {backend or list(board.backends)} "
                        f"at precision {wanted}; the bundle has {have}")
    index, name, reason = found
    return Choice(candidates[index], name, reason)


def default_precisions(board: BoardConfig, task: str, profile: BoardProfile | None) -> tuple[tuple[str, ...], str]:
    """The precisions tried for ``task`` when none is asked for, in order (its default, then fp32), and where the
    default comes from."""
    measured = profile is not None and task in profile.precisions
    default = (profile.precisions if measured else board.precision).get(task, "fp32")
    return tuple(dict.fromkeys((default, "fp32"))), "measured default" if measured else "board default"


def pick_kind(kinds: list[tuple[str, str]], board: BoardConfig, task: str, backend: str | None = None,
              precision: str | None = None, profile: BoardProfile | None = None) -> tuple[int, str, str] | None:
    """The decision itself, on (format, precision) pairs: (which pair, on which backend, why), or None when the
    board would run none of them. ``choose_model`` asks it about a bundle's files, compile about the files it is
    going to make."""
    if backend is not None:
        BACKENDS.target(backend)
    measured = profile.backends.get(task) if profile else None      # the measured fastest backend goes first
    backends = (backend,) if backend else tuple(dict.fromkeys([*([measured] if measured else []), *board.backends]))
    defaults, default_kind = default_precisions(board, task, profile)
    for wanted in (precision,) if precision else defaults:
        for name in backends:
            formats = BACKEND_FORMATS.get(name, ())
            runnable = [i for i, (fmt, made_at) in enumerate(kinds) if fmt in formats and made_at == wanted]
            if runnable:
                origin = "requested" if precision else (default_kind if wanted == defaults[0] else "fp32 fallback")
                return runnable[0], name, f"{origin} {wanted} on {name}"
    return None


def backend_on_board(entry: ModelEntry, board: BoardConfig) -> str:
    """The backend the board would run this one file with: ``choose_model`` asked about it alone, so compile's
    gates measure each file the way the runtime will run it."""
    only = Manifest(board=board.name, created="", tools={}, models=(entry,))
    return choose_model(only, board, entry.task, precision=entry.precision).backend


def runnable_here(backend: str) -> bool:
    """Whether this machine has the backend's runtime installed (nothing is imported)."""
    try:
        return importlib.util.find_spec(RUNTIME_MODULES[backend]) is not None
    except (ImportError, ValueError):
        return False


def backend_here(entry: ModelEntry, board: BoardConfig) -> tuple[str, str]:
    """The backend that checks a file on this machine, and a note when it is not the board's: compile on a PC
    for a Jetson measures a file TensorRT will run there with the next runtime in the board's order that runs
    here, and says so (``python -m edge bundle check`` on the board runs the board's own)."""
    own = backend_on_board(entry, board)
    if runnable_here(own):
        return own, ""
    for name in dict.fromkeys((*board.backends, *BACKEND_FORMATS)):
        if entry.format in BACKEND_FORMATS.get(name, ()) and runnable_here(name):
            return name, (f"checked with {name} here: {own}, the board's runtime, does not run on this machine "
                          f"(python -m edge bundle check runs it on the board)")
    raise UserError(f"no runtime on this machine runs {entry.format} files: install {own}")


@dataclass
class LoadedModel:
    """A manifest entry bound to a loaded backend: the unit every stage of the pipeline calls."""

    entry: ModelEntry
    backend: Backend
    backend_name: str

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.backend.infer(feeds)

    def infer_image_batch(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """A batch already prepared for the image input (the entry's first)."""
        return self.backend.infer({self.entry.input.name: batch})

    def run_images(self, images_bgr) -> dict[str, np.ndarray]:
        """Images cropped as the entry's input spec says -> outputs by name, one batch per call."""
        return self.infer_image_batch(prepare_batch(images_bgr, self.entry.input))

    def close(self) -> None:
        self.backend.close()


def load_model(bundle_dir: str | Path, entry: ModelEntry, backend: str, options: BackendOptions) -> LoadedModel:
    """Checks the file's checksum, then loads it with ``backend`` (chosen by ``choose_model`` or ``backend_for``).

    A file the kiosk always feeds several images per face (mirror averaging) runs them as concurrent one-image
    calls (``BackendOptions.split_batch``), wherever it is loaded: the pipeline, compile's gates, benchmarks."""
    path = verify_entry_file(Path(bundle_dir), entry)
    backend_for(entry, (), backend)
    instance = BACKENDS.get(backend)()
    instance.load(path, replace(options, split_batch=entry.images_per_face > 1, precision=entry.precision,
                                batch=entry.images_per_face, engine_recipe=entry.extra.get("tensorrt"),
                                engine_cache=Path(bundle_dir) / ENGINE_CACHE))
    return LoadedModel(entry, instance, backend)
