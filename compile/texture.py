"""A texture (passive liveness) model in compile: its crops cut from real photos, and its live-capture threshold.

Compile's calibration images are aligned face chips, the wrong crop for a model that looks at a few times the face
box. Its files are calibrated and gated instead on faces found by the packaged detector in the real photos compile
was given (``--detector_photos``, ``--pairs_images``), cut with the model's own box crop (``edge.runtime.crops``),
as the kiosk cuts them. Those photos are of live people, so each file's threshold is placed where a chosen share of
those single looks would be rejected: it says what the check costs live people, not what it stops.
Grey photos are skipped: to a colour texture model a grey face looks like a print. Beside that threshold, each
file gets a still threshold, the live probability half of those faces reach (``STILL_QUANTILE``): a visit whose
every look reaches it is live without moving (edge.liveness.texture).
"""
from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compile.report import ArtifactRow
from compile.validate import torch_reference
from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.progress import progress_bar
from edge.bundles.golden import run_artifact
from edge.faces.align import largest
from edge.liveness.texture import live_probability
from edge.runtime.boards import BoardConfig
from edge.runtime.crops import box_crop
from edge.runtime.manifest import ModelEntry
from edge.runtime.models import backend_here
from edge.runtime.preprocess import prepare_batch

DEFAULT_LIVE_REJECT = 0.05
STILL_QUANTILE = 0.5       # the still threshold: the live probability the median live face reaches


@dataclass(frozen=True)
class LiveFaces:
    """Faces of live people cut with one box crop: the first ``calibration`` calibrate INT8, the rest are held out."""

    crops: np.ndarray            # N,S,S,3 uint8 BGR
    calibration: int
    crop: str
    roots: tuple[str, ...]
    photos: int                  # photos read to find them
    no_face: int
    grey: int
    fingerprint: str             # of the photos' paths, in the order read

    def part(self, purpose: str) -> np.ndarray:
        return self.crops[:self.calibration] if purpose == "calibration" else self.crops[self.calibration:]

    def describe(self) -> str:
        return (f"{len(self.crops)} faces of live people from {', '.join(self.roots)} ({self.photos} photos read; "
                f"{self.no_face} without a face, {self.grey} grey skipped), cut as {self.crop}")


def is_grey(image: np.ndarray) -> bool:
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def load_live_faces(roots: list[Path], crop: str, detector, calibration: int, holdout: int,
                    seed: int) -> LiveFaces:
    """Reads the photos of ``roots`` in a seeded order until ``calibration`` + ``holdout`` colour faces are cut; too
    few is refused, saying how many there were (the set is never shrunk)."""
    cutter = box_crop(crop)
    files = [path for root in roots for path in list_images(root)]
    order = np.random.default_rng(seed).permutation(len(files))
    wanted = calibration + holdout
    crops, no_face, grey, read = [], 0, 0, 0
    digest = hashlib.sha256()
    with progress_bar(total=wanted, desc=f"live faces {crop}", unit="face") as bar:
        for index in order:
            if len(crops) == wanted:
                break
            image = read_image(files[index])
            read += 1
            if image is None or is_grey(image):
                grey += image is not None
                continue
            face = largest(detector.detect(image))
            if face is None:
                no_face += 1
                continue
            crops.append(cutter.cut(image, face.box))
            digest.update(f"{files[index]}\n".encode())
            bar.update()
    names = tuple(str(root) for root in roots)
    if len(crops) < wanted:
        raise UserError(f"the texture checkpoint needs {wanted} colour faces of live people (--calibration_images + "
                        f"--holdout_images); {', '.join(names)} gave {len(crops)} ({grey} grey photos, {no_face} "
                        f"without a face): give more colour photos with --detector_photos or ask for fewer")
    return LiveFaces(np.stack(crops), calibration, crop, names, read, no_face, grey, digest.hexdigest())


def with_live_faces(source, faces: LiveFaces):
    """The compile.bundle.SourceModel fed its live-face crops (calibration and held out) instead of compile's aligned
    chips."""
    def feeds(_images: list[np.ndarray], purpose: str) -> tuple[np.ndarray, None]:
        return prepare_batch(list(faces.part(purpose)), source.spec), None

    return dataclasses.replace(source, feeds=feeds)


@dataclass(frozen=True)
class TextureCalibration:
    """The live faces each texture source is measured on (by crop), and the share of them its threshold rejects."""

    faces: dict[str, LiveFaces]
    live_reject: float = DEFAULT_LIVE_REJECT

    def describe(self) -> str:
        where = "; ".join(f.describe() for f in self.faces.values())
        return (f"each texture file's own: the live probability below which {100 * self.live_reject:g} % of single "
                f"looks of live people fall ({where}); what it stops of attacks is not measured here")


def live_threshold(probabilities: np.ndarray, live_reject: float) -> float:
    """The live probability under which ``live_reject`` of the live faces fall."""
    return float(np.quantile(probabilities, live_reject))


def calibrate_texture(source, compiled: list[tuple[ModelEntry, ArtifactRow]],
                      calibration: TextureCalibration, staging: Path, board: BoardConfig,
                      threads: int) -> list[tuple[ModelEntry, ArtifactRow]]:
    """Each kept file's threshold from its own live probabilities on every live face, run as the board runs it;
    the FP32 PyTorch model's threshold beside it, for the record."""
    faces = calibration.faces[source.spec.crop]
    reference = live_threshold(live_probability(torch_reference(source.model, prepare_batch(list(faces.crops),
                                                                                            source.spec))),
                               calibration.live_reject)
    result = []
    for entry, row in compiled:
        if not row.passed:
            result.append((entry, row))
            continue
        batch = prepare_batch(list(faces.crops), entry.input)
        backend, _ = backend_here(entry, board)
        probabilities = live_probability(run_artifact(staging, entry, batch, backend, threads))
        threshold = live_threshold(probabilities, calibration.live_reject)
        record = {"live_reject": calibration.live_reject, "faces": len(probabilities),
                  "still_threshold": round(float(np.quantile(probabilities, STILL_QUANTILE)), 6),
                  "source": faces.describe(), "fingerprint": faces.fingerprint,
                  "torch_fp32_threshold": round(reference, 6),
                  "live_probability_quantiles": {f"{q:g}": round(float(np.quantile(probabilities, q)), 6)
                                                 for q in (0.01, 0.05, 0.1, 0.25, 0.5)},
                  "share_above_half": round(float(np.mean(probabilities >= 0.5)), 4)}
        entry = dataclasses.replace(entry, threshold=threshold, extra={**entry.extra, "live_threshold": record})
        result.append((entry, dataclasses.replace(row, threshold=threshold)))
    return result
