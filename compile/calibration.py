"""The calibration set: aligned face crops chosen deterministically, split into calibration and held-out images.

Quantization ranges come from the calibration images; the accuracy gate measures on held-out images the
quantizer never saw, so a gate pass is not a calibration-set artefact. The fingerprint (paths + file hashes of
the calibration images) goes into the manifest so a bundle can be traced to the exact images that shaped it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.progress import progress_bar
from edge.runtime.manifest import sha256_file

HOLDOUT_IMAGES = 64
MIN_CALIBRATION_IMAGES = 8


@dataclass(frozen=True)
class CalibrationSet:
    root: Path
    images: list[np.ndarray]          # BGR uint8, for calibration
    paths: tuple[str, ...]            # relative to root, same order as images
    held_out: list[np.ndarray]        # BGR uint8, for the accuracy gate only
    skipped: int                      # unreadable files met while choosing
    available: int                    # image files found under root
    fingerprint: str
    seed: int

    def describe(self) -> dict:
        return {"root": str(self.root), "images": len(self.images), "held_out": len(self.held_out),
                "skipped_unreadable": self.skipped, "available": self.available, "seed": self.seed,
                "fingerprint": self.fingerprint}


def fingerprint(root: Path, relative_paths: list[str] | tuple[str, ...]) -> str:
    """sha256 over the sorted relative paths and each file's sha256: any renamed or edited image changes it."""
    digest = hashlib.sha256()
    for rel in sorted(relative_paths):
        digest.update(rel.encode("utf-8") + b"\0" + sha256_file(root / rel).encode("ascii") + b"\n")
    return digest.hexdigest()


def too_few(root: Path, found: int, what: str, count: int, holdout: int) -> str:
    return (f"{root} has {found} {what}; --calibration_images {count} and --holdout_images {holdout} need "
            f"{count + holdout}: add images or ask for fewer (hundreds make a trustworthy INT8 calibration)")


def enough_image_files(root: Path, count: int, holdout: int) -> list[Path]:
    """The folder's image files, refused when they cannot give ``count`` + ``holdout`` images (cheap: run it before
    any work)."""
    if count < MIN_CALIBRATION_IMAGES or holdout < 1:
        raise UserError(f"--calibration_images must be at least {MIN_CALIBRATION_IMAGES} and --holdout_images at "
                        f"least 1, got {count} and {holdout}")
    files = list_images(root)
    if len(files) < count + holdout:
        raise UserError(too_few(root, len(files), "image files", count, holdout))
    return files


def load_calibration_set(root: str | Path, count: int, seed: int, holdout: int = HOLDOUT_IMAGES) -> CalibrationSet:
    """Shuffles the image files with ``seed`` and reads them in that order until ``count`` calibration and
    ``holdout`` held-out images are readable. A folder with fewer is refused, saying how many it has: the set is
    never shrunk behind the user's back."""
    root = Path(root)
    files = enough_image_files(root, count, holdout)
    order = np.random.default_rng(seed).permutation(len(files))
    chosen: list[tuple[str, np.ndarray]] = []
    skipped = 0
    with progress_bar(total=count + holdout, desc="calibration images", unit="img") as bar:
        for index in order:
            if len(chosen) == count + holdout:
                break
            image = read_image(files[index])
            if image is None:
                skipped += 1
                continue
            chosen.append((files[index].relative_to(root).as_posix(), image))
            bar.update()
    if len(chosen) < count + holdout:
        raise UserError(too_few(root, len(chosen), f"readable images ({skipped} unreadable)", count, holdout))
    calibration, held_out = chosen[:count], chosen[count:]
    paths = tuple(rel for rel, _ in calibration)
    return CalibrationSet(root=root, images=[img for _, img in calibration], paths=paths,
                          held_out=[img for _, img in held_out], skipped=skipped, available=len(files),
                          fingerprint=fingerprint(root, paths), seed=seed)
