"""Matching against the gallery: its templates for this model, how they are scored (cosines, or their S-norm
against the verifier's cohort: edge.faces.score_norm), the threshold policy, and the decision log."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.faces.matching import MatchThreshold, Thresholds, match_threshold
from edge.faces.score_norm import ScoreNorm, TemplateScorer
from edge.gallery.store import EmbeddingKey, Gallery, GalleryTemplates
from edge.runtime.manifest import ModelEntry

# Two looks of a visit, or a look and the visit's template, are one person at this 1:1 false-accept rate or the
# bundle's own, whichever is looser: a look of someone else scores as an impostor pair and falls below it 99 times
# in 100, while a small or blurred look of the same person, weak evidence rather than someone else's, is not
# taken for a swap (the visit as a whole is still held to the match threshold for its gallery).
SAME_PERSON_PAIR_FAR = 0.01


class Matcher:
    def __init__(self, entry: ModelEntry, key: EmbeddingKey, gallery: Gallery | None = None,
                 threshold: float | None = None, per_probe_far: float | None = None, norm: ScoreNorm | None = None):
        """``norm``: the verifier file's cohort (edge.faces.score_norm.bundle_score_norm); its calibration's
        thresholds are in the normalised scores' units."""
        self.entry, self.key, self.gallery, self.norm = entry, key, gallery, norm
        self._request = (threshold, per_probe_far)
        self.reload()

    def reload(self) -> None:
        """Reads the templates again, and the open-set threshold for the gallery's new size."""
        self.templates = (self.gallery.people.templates(self.key) if self.gallery
                          else GalleryTemplates([], np.zeros((0, 0)), 0))
        self.scorer = TemplateScorer(self.templates.matrix, self.norm)
        self.match_threshold = self._threshold(*self._request)
        self.threshold = self.match_threshold.threshold

    def _threshold(self, explicit: float | None, per_probe_far: float | None) -> MatchThreshold:
        """The user's threshold, else the open-set one for this gallery's size from the artifact's calibration."""
        entry = self.entry
        size = max(1, len(self.templates.names))
        if explicit is not None:
            return MatchThreshold.fixed(explicit, size, "--threshold")
        if entry.match is not None:
            return match_threshold(entry.match, size, per_probe_far)
        if entry.threshold is not None:
            return MatchThreshold.fixed(entry.threshold, size, "the checkpoint (no real-pair calibration)")
        raise UserError(f"model {entry.name} has no calibrated threshold; pass --threshold, or recompile with "
                        f"real pairs (python -m compile ... --pairs_images DIR)")

    def visit_thresholds(self, unknown_far: float) -> Thresholds:
        """The match threshold and, below it, the one at the looser per-probe rate ``unknown_far`` under which a
        visitor is a stranger (one threshold for both when no real-pair calibration gives the lower one); and the
        1:1 threshold at which two looks are one person."""
        entry = self.entry
        if entry.match is None or self.match_threshold.origin != "real-pair calibration":
            return Thresholds(self.threshold, self.threshold, self.threshold)
        lower = match_threshold(entry.match, self.match_threshold.gallery_size, unknown_far).threshold
        same = min(match_threshold(entry.match, 1, SAME_PERSON_PAIR_FAR).threshold, entry.match.threshold)
        return Thresholds(self.threshold, min(lower, self.threshold), same)

    def match(self, embedding: np.ndarray) -> tuple[str | None, float, str | None]:
        if not self.templates.names:
            return None, -1.0, None
        best, score = self.scorer.best(embedding)
        name = self.templates.names[best]
        return (name if score >= self.threshold else None), score, name

    def identity_score(self, embedding: np.ndarray, name: str) -> float:
        """The score of ``embedding`` against ``name``'s template (-inf when ``name`` is not enrolled)."""
        if name not in self.templates.names:
            return float("-inf")
        return self.scorer.score(embedding, self.templates.names.index(name))

    @property
    def score_kind(self) -> str:
        """What the scores and thresholds are: "cosine", or "s-norm (top K of N faces)"."""
        return self.entry.match.score if self.norm is not None else "cosine"

    def pair_score(self, first: np.ndarray, second: np.ndarray) -> float:
        """The score of two embeddings (two looks of one visit), in the units of ``Thresholds.same_person``."""
        return self.norm.pair(first, second) if self.norm is not None else float(first @ second)

    def log(self, records: list[dict], source: str) -> None:
        """Logs decision records in the gallery (one transaction), with their source and this model's file."""
        if self.gallery and records:
            self.gallery.events.log([{**r, "source": source, "model_fingerprint": self.key.fingerprint}
                                     for r in records])

    def require_current(self, bundle: str | Path) -> None:
        """Refuses to run while enrolled people have templates only from a model whose embeddings differ."""
        stale = self.templates.stale
        if not stale:
            return
        name, sources = next(iter(sorted(stale.items())))
        photos = " ".join(sorted({str(Path(s).parent) for s in sources if s})) or "PHOTOS"
        raise UserError(f"{len(stale)} enrolled people ({', '.join(sorted(stale)[:5])}) were enrolled with a model "
                        f"whose embeddings this bundle's {self.entry.name} cannot compare; re-enrol each, "
                        f"e.g.: python -m edge enroll --bundle {bundle} --name {name} --consent --add {photos} "
                        f"(or remove them with python -m edge gallery --remove NAME)")
