"""What distillation learns from: unlabelled aligned faces and the teacher's embedding of each, computed once.

The teacher's targets are mirror-averaged (the face's embedding plus its mirror image's, normalised), the way
the kiosk embeds, so a flipped training image keeps its target. They come from the teacher's compiled file in a
bundle when one is given (its INT8 file: 2.7 ms a face on this CPU, against about 60 ms for dlib's ResNet in
PyTorch), else from the PyTorch teacher, and are cached next to the student keyed by the teacher file and every
image's bytes, so a second run over the same data starts training at once.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images
from edge.base.progress import progress_bar
from edge.runtime.manifest import InputSpec, read_manifest
from trainer.checkpoint import Checkpoint
from trainer.data import read_crop

MIN_IMAGES = 64


@dataclass
class Crops:
    """Aligned face crops from several folders, at the teacher's crop size."""

    images: np.ndarray        # N,H,W,3 uint8 BGR
    fingerprint: str          # sha256 over every image's relative path and bytes
    skipped: int              # files that could not be decoded
    per_root: dict[str, int]  # images loaded from each folder


def load_crops(roots: list[Path], side: int) -> Crops:
    """Every image under each root (any depth); unreadable ones are skipped and counted, a wrong size refused."""
    digest = hashlib.sha256()
    images, skipped, per_root = [], 0, {}
    for root in roots:
        paths = list_images(root)
        loaded = 0
        for path in progress_bar(paths, desc=f"faces {Path(root).name}", unit="img"):
            image = read_crop(path, side)
            if image is None:
                skipped += 1
                continue
            digest.update(f"{Path(root).name}/{path.relative_to(root)}\n".encode())
            digest.update(hashlib.sha256(path.read_bytes()).digest())
            images.append(image)
            loaded += 1
        per_root[str(root)] = loaded
    if len(images) < MIN_IMAGES:
        raise UserError(f"found {len(images)} readable face crops in {', '.join(map(str, roots))} "
                        f"({skipped} unreadable); distillation needs at least {MIN_IMAGES}")
    return Crops(np.stack(images), digest.hexdigest(), skipped, per_root)


class Teacher:
    """Mirror-averaged, L2-normalised teacher embeddings: from a compiled file of the teacher when a bundle
    holds one (its INT8 file first), else from the PyTorch model."""

    def __init__(self, checkpoint: Checkpoint, bundle: Path | None = None, threads: int = 1):
        self.checkpoint = checkpoint
        self.spec: InputSpec = checkpoint.preprocessing
        self._loaded = None
        self.source = f"PyTorch FP32 ({checkpoint.sha256[:12]})"
        self.identity = checkpoint.sha256
        if bundle is not None:
            self._loaded = _load_compiled(checkpoint, bundle, threads)
            entry = self._loaded.entry
            self.source = f"{entry.file} ({entry.precision}, {self._loaded.backend_name}) from {bundle}"
            self.identity = entry.sha256

    def embed(self, images: np.ndarray, desc: str = "teacher") -> np.ndarray:
        if self._loaded is not None:
            from edge.faces.reader import embed_faces

            return embed_faces(self._loaded, progress_bar(list(images), desc=desc, unit="face"), True)
        from trainer.evaluate import embed

        return embed(self.checkpoint.build_model(), images, self.spec, mirror=True, desc=desc).astype(np.float32)

    def close(self) -> None:
        if self._loaded is not None:
            self._loaded.close()


def _load_compiled(checkpoint: Checkpoint, bundle: Path, threads: int):
    from edge.runtime.backends.base import BackendOptions
    from edge.runtime.boards import load_board
    from edge.runtime.models import backend_here, load_model

    manifest = read_manifest(bundle)
    files = [e for e in manifest.for_task("verify") if e.source_sha256 == checkpoint.sha256]
    if not files:
        raise UserError(f"{bundle} holds no file compiled from this teacher checkpoint (sha256 "
                        f"{checkpoint.sha256[:12]}); compile it with python -m compile, or leave out --teacher_bundle")
    entry = sorted(files, key=lambda e: {"int8": 0, "fp16": 1}.get(e.precision, 2))[0]
    backend, _ = backend_here(entry, load_board(manifest.board))     # as compile's gates run it on this machine
    return load_model(bundle, entry, backend, BackendOptions(threads=threads))


def cached_targets(cache: Path, teacher: Teacher, crops: Crops) -> np.ndarray:
    """The teacher's targets for ``crops``, read from ``cache`` when it was made by the same teacher file from the
    same images, else computed and written there."""
    key = hashlib.sha256(f"{teacher.identity}\n{crops.fingerprint}".encode()).hexdigest()
    if cache.is_file():
        try:
            with np.load(cache) as stored:
                if str(stored["key"]) == key and len(stored["targets"]) == len(crops.images):
                    return stored["targets"]
        except (OSError, ValueError, KeyError):
            pass                          # a damaged or foreign cache is recomputed, never trusted
    targets = teacher.embed(crops.images, desc="teacher targets")
    cache.parent.mkdir(parents=True, exist_ok=True)
    partial = cache.with_name(cache.name + ".tmp.npz")
    np.savez(partial, key=np.array(key), targets=targets)
    partial.replace(cache)
    return targets
