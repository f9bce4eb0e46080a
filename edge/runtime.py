"""Loading a bundle's model files through the backend registry, in the board's backend preference order."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.backends import BACKEND_FORMATS, BACKENDS
from edge.backends.base import Backend
from edge.errors import UserError
from edge.manifest import ModelEntry, verify_entry_file
from edge.preprocess import prepare_batch


def backend_for_format(fmt: str, preference: tuple[str, ...] | list[str]) -> str:
    """The first backend in ``preference`` that runs ``fmt``; an error lists what would."""
    for name in preference:
        if fmt in BACKEND_FORMATS.get(name, ()):
            return name
    able = [name for name, formats in BACKEND_FORMATS.items() if fmt in formats]
    raise UserError(f"no backend in {list(preference)} runs {fmt} files; backends that do: {able or 'none'}")


@dataclass
class LoadedModel:
    """A manifest entry bound to a loaded backend: the unit every stage of the pipeline calls."""

    entry: ModelEntry
    backend: Backend
    backend_name: str

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.backend.infer(batch)

    def run_images(self, images_bgr) -> list[np.ndarray]:
        """Images cropped as the entry's input spec says -> raw outputs, one batch per call."""
        return self.backend.infer(prepare_batch(images_bgr, self.entry.input))

    def close(self) -> None:
        self.backend.close()


def load_model(bundle_dir: str | Path, entry: ModelEntry, threads: int,
               backend: str | None = None, preference: tuple[str, ...] = ("onnxruntime", "tflite")) -> LoadedModel:
    """Checks the file's checksum, then loads it with ``backend`` or the first that runs its format."""
    path = verify_entry_file(Path(bundle_dir), entry)
    name = backend or backend_for_format(entry.format, preference)
    if entry.format not in BACKEND_FORMATS.get(name, ()):
        raise UserError(f"backend {name} cannot run {entry.format} file {entry.file}")
    instance = BACKENDS.get(name)()
    instance.load(path, threads)
    return LoadedModel(entry, instance, name)
