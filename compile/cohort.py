"""The score-normalisation cohort (edge.faces.score_norm): faces of people nobody enrolls, detected and aligned as
the runtime does, embedded by every verifier file and shipped in the bundle as that file's templates, never as
photos. Each image's sha1 goes with them, so that ``benchmarks identify`` can refuse to evaluate on a face the
bundle was built from.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.progress import progress_bar
from edge.faces.align import Aligner
from edge.faces.score_norm import COHORT_TOP, ScoreNorm, file_sha1
from edge.runtime.manifest import ModelEntry, ScoreCohort, sha256_file

COHORT_FACES = 2000       # faces drawn from --cohort_images (faces80 holds 8,844)


@dataclass(frozen=True)
class CohortFaces:
    chips: np.ndarray            # N,S,S,3 uint8 BGR, aligned on the verifier's crop
    image_sha1: tuple[str, ...]  # of each face's image file
    source: str                  # e.g. "faces80: 2000 of 8844 images (seed 0)"


def load_cohort_faces(root: Path, crop: str, detector, count: int = COHORT_FACES, seed: int = 0) -> CohortFaces:
    """``count`` images of ``root`` (any depth), drawn by ``seed``; each one's largest face aligned on ``crop``.
    Images that cannot be read or hold no face are left out and counted in ``source``."""
    paths = list_images(root)
    chosen = sorted(np.random.default_rng(seed).choice(len(paths), min(count, len(paths)), replace=False))
    aligner = Aligner(crop, detector.keypoint_names)
    chips, hashes, skipped = [], [], 0
    for index in progress_bar(chosen, desc=f"cohort faces {Path(root).name}", unit="img"):
        image = read_image(paths[index])
        chip = aligner.align_chosen(image, detector.detect(image)) if image is not None else None
        if chip is None:
            skipped += 1
            continue
        chips.append(chip)
        hashes.append(file_sha1(paths[index]))
    if len(chips) < 2 * COHORT_TOP:
        raise UserError(f"--cohort_images {root}: {len(chips)} faces found in {len(chosen)} images; score "
                        f"normalisation needs at least {2 * COHORT_TOP} (each face is placed among its "
                        f"{COHORT_TOP} closest)")
    note = f", {skipped} without a face" if skipped else ""
    return CohortFaces(np.stack(chips), tuple(hashes),
                       f"{Path(root).name}: {len(chips)} of {len(paths)} images (seed {seed}{note})")


def write_cohort(bundle_dir: Path, entry: ModelEntry, norm: ScoreNorm, faces: CohortFaces) -> ScoreCohort:
    """The file's cohort templates beside it in the bundle, and the manifest's record of them."""
    path = Path(bundle_dir) / f"cohort.{entry.name}.npz"
    np.savez(path, vectors=norm.cohort.astype(np.float32), image_sha1=np.array(faces.image_sha1))
    return ScoreCohort(path.name, sha256_file(path), len(norm.cohort), norm.top, faces.source)
