"""Real faces for a verifier's threshold and gates: identity folders, detected and aligned as the runtime does.

Faces come from ``root/<identity>/<image>`` folders (ORL, Yale B, your own), aligned by the packaged detector
onto each model's own crop template, so compile measures what the kiosk will see. Identities are split once,
by seed and per folder, into a calibration half (every impostor pair among them places the threshold) and a
report half (balanced accuracy, flips and AUC are quoted there, on pairs that did not choose the threshold).
"""
from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from compile.cohort import CohortFaces
from edge.base.errors import UserError
from edge.base.imageio import read_image, scan_identity_folders
from edge.base.progress import progress_bar
from edge.faces.align import Aligner
from edge.faces.score_norm import ScoreNorm

MIN_IDENTITIES = 4          # two per half: fewer gives no impostor pairs on one side


@dataclass(frozen=True)
class PairFaces:
    chips: np.ndarray            # N,S,S,3 uint8 BGR, aligned on ``crop``
    identity: np.ndarray         # N int, index into ``names``
    names: tuple[str, ...]       # "<root name>/<identity>"
    report: np.ndarray           # N bool: the face's identity belongs to the report half
    crop: str
    no_face: int
    unreadable: int
    fingerprint: str             # of the identity/file list, so a report can say which faces it used
    cohort: CohortFaces | None = None   # faces nobody enrolls, that scores are normalised against (compile.cohort)

    @functools.cached_property
    def calibration_pairs(self) -> "PairIndex":
        """Every pair within the calibration identities (built once: each file's measurement reuses it)."""
        return PairIndex.within(self, report=False)

    @functools.cached_property
    def report_pairs(self) -> "PairIndex":
        """Every pair within the report identities."""
        return PairIndex.within(self, report=True)

    def describe(self) -> str:
        roots = sorted({n.split("/")[0] for n in self.names})
        calibration_ids = len({self.names[i] for i in self.identity[~self.report]})
        return (f"real: {', '.join(roots)} ({len(self.names)} identities, {len(self.chips)} faces; "
                f"{calibration_ids} identities calibrate, the rest report)")


def load_pair_faces(roots: list[Path], crop: str, detector, seed: int = 0) -> PairFaces:
    """Detects the largest face of every image and aligns it on ``crop``; images without one are counted."""
    aligner = Aligner(crop, detector.keypoint_names)
    rng = np.random.default_rng(seed)
    chips, identity, names, report = [], [], [], []
    no_face = unreadable = 0
    digest = hashlib.sha256()
    for root in roots:
        folders = scan_identity_folders(root)
        # Each folder is split on its own, so both halves hold every kind of face (lighting, pose, source).
        in_report = set(rng.permutation(folders.names)[: len(folders.names) // 2])
        jobs = [(name, path) for name in folders.names for path in folders.images[name]]
        for name, path in progress_bar(jobs, desc=f"pair faces {Path(root).name}", unit="img"):
            image = read_image(path)
            if image is None:
                unreadable += 1
                continue
            chip = aligner.align_chosen(image, detector.detect(image))
            if chip is None:
                no_face += 1
                continue
            key = f"{Path(root).name}/{name}"
            if key not in names:
                names.append(key)
            digest.update(f"{key}/{path.name}\n".encode())
            chips.append(chip)
            identity.append(names.index(key))
            report.append(name in in_report)
    if len(names) < MIN_IDENTITIES:
        raise UserError(f"--pairs_images gave {len(names)} identities with a detected face ({no_face} images "
                        f"without one); threshold calibration needs at least {MIN_IDENTITIES}")
    return PairFaces(np.stack(chips), np.asarray(identity), tuple(names), np.asarray(report), crop, no_face,
                     unreadable, digest.hexdigest())


@dataclass(frozen=True)
class PairIndex:
    """Every pair of faces within one half: (first, second, same identity)."""

    first: np.ndarray
    second: np.ndarray
    same: np.ndarray

    @classmethod
    def within(cls, faces: PairFaces, report: bool) -> "PairIndex":
        members = np.nonzero(faces.report == report)[0]
        first, second = np.triu_indices(len(members), k=1)
        first, second = members[first], members[second]
        return cls(first, second, faces.identity[first] == faces.identity[second])

    def scores(self, templates: np.ndarray, probes: np.ndarray | None = None,
               norm: ScoreNorm | None = None) -> np.ndarray:
        """Scores of unit embeddings, as the kiosk gives them: cosines, or their S-norm against ``norm``'s cohort;
        with ``probes``, templates come from one model and probes from another (a gallery enrolled with an older
        file, matched by a new one)."""
        probes = templates if probes is None else probes
        cosines = np.einsum("ij,ij->i", templates[self.first], probes[self.second])
        if norm is None:
            return cosines
        enrolled = norm.stats(templates)
        probed = enrolled if probes is templates else norm.stats(probes)
        return norm.normalise(cosines, probed.take(self.second), enrolled.take(self.first)).astype(np.float64)
