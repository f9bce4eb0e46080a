"""The texture check: how live one look's face seems to a passive anti-spoofing model (MiniFASNet), from one crop.

Each look's face is cut with the crop its bundle entry names (a box crop of ``edge.runtime.crops``: a few times the
face box, so the model sees the face's surroundings) and scored as a live probability; the visit is live when the
mean over its looks (at least MIN_LOOKS) reaches the entry's threshold. That threshold was set by compile on
photos of live people (python -m compile ... --texture_live_reject), so it says how many single looks of live
people it rejects; what it stops of rendered attacks, python -m benchmarks liveness measures (docs/liveness.md).

A face that does not move gives planar nothing to measure. So a visit whose every look (at least the board's
``liveness.still_looks``, of its newest ``max_looks``) reaches the file's still threshold, the live probability half
of those live photos reach (compile.texture.STILL_QUANTILE), is live on texture alone (``CheckResult.alone``): it
stands in for planar's want of movement, never for a challenge or for another check's attack
(edge.liveness.gate.fuse). With fewer such looks (at least MIN_LOOKS) texture is ``sure``: it stands in only for a
planar that came near its threshold (edge.liveness.planar).
"""
from __future__ import annotations

import numpy as np

from edge.base.errors import UserError
from edge.liveness.checks import CheckContext, CheckResult, Look
from edge.runtime.crops import box_crop
from edge.runtime.models import choose_model, load_model

TASK = "liveness"
ROLE = "texture"           # the bundle files' name (texture.fp32.onnx ...) and the check's
LIVE_CLASS = 1             # the publisher's classes: 1 is a live face, 0 and 2 are attacks
MIN_LOOKS = 3              # looks before a verdict: the threshold rejects one live look in twenty by itself


def live_probability(logits: np.ndarray) -> np.ndarray:
    """(N, classes) logits -> (N,) softmax probability of the live class."""
    logits = np.asarray(logits, np.float64)
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (shifted[:, LIVE_CLASS] / shifted.sum(axis=1)).astype(np.float32)


class TextureCheck:
    """Runs the bundle's texture file (``choose_model``'s choice for task ``liveness``) on each look's face."""

    name = ROLE

    def __init__(self, context: CheckContext):
        if not context.manifest.for_task(TASK):
            raise UserError(f"the bundle has no {ROLE} file: import a MiniFASNet model (python -m trainer import "
                            f"minifasnet FILE.pth --out runs/{ROLE}.pt) and compile it in (python -m compile --target "
                            f"{context.board.name} --checkpoints ... runs/{ROLE}.pt --detector_photos PHOTOS)")
        choice = choose_model(context.manifest, context.board, TASK, profile=context.profile)
        entry = choice.entry
        if entry.threshold is None:
            raise UserError(f"{entry.file} has no live threshold: recompile the bundle with python -m compile "
                            f"--target {context.board.name}")
        self.crop = box_crop(entry.input.crop)
        self.threshold = float(entry.threshold)
        # None: the file was compiled before still thresholds were written; its visits must move to be live
        self.still_threshold = entry.extra.get("live_threshold", {}).get("still_threshold")
        self.still_looks = context.board.liveness.still_looks     # 0: never live without moving
        self.output = entry.outputs[0].name
        self.model = load_model(context.bundle_dir, entry, choice.backend, context.options)

    def observe(self, look: Look) -> float:
        """The live probability of this look's face."""
        crop = self.crop.cut(look.image, look.detection.box)
        return float(live_probability(self.model.run_images([crop])[self.output])[0])

    def judge(self, observed: list[float]) -> CheckResult:
        """Live or attack by the mean live probability of at least MIN_LOOKS looks; insufficient before. Live and
        ``sure`` when every look reaches the still threshold, ``alone`` too when they are at least ``still_looks``."""
        scores = np.asarray(observed, np.float64)
        mean = float(scores.mean()) if len(scores) else 0.0
        evidence = {"looks": len(scores), "threshold": round(self.threshold, 4)}
        if self.still_threshold is not None:
            evidence["still_threshold"] = round(self.still_threshold, 4)
        if len(scores) < MIN_LOOKS:
            return CheckResult("insufficient", mean, evidence)
        live = mean >= self.threshold
        sure = bool(live and self.still_threshold is not None and scores.min() >= self.still_threshold)
        alone = sure and 0 < self.still_looks <= len(scores)
        evidence = {**evidence, "min": round(float(scores.min()), 4), "max": round(float(scores.max()), 4)}
        return CheckResult("live" if live else "attack", mean,
                           {**evidence, "sure": sure, "alone": alone} if live else evidence, alone=alone, sure=sure)

    def close(self) -> None:
        self.model.close()
