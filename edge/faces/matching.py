"""The open-set match threshold: one face against N enrolled people, at a target false-accept rate per probe.

A 1:1 threshold set at a false-accept rate f lets a stranger through with probability about 1 - (1 - f)^N
against N enrolled people, so the kiosk's threshold must rise with the gallery. Compile measures, with the
backend that runs each verifier file, the threshold at every 1:1 rate down to 1 / (impostor pairs) (the
manifest's ``far_curve``); the runtime reads off the rate a gallery of N needs.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.base.metrics import threshold_at_far
from edge.runtime.manifest import MatchCalibration

CURVE_POINTS = 40
LOOSER_POINTS = 10       # curve points above the target rate, up to:
LOOSEST_FAR = 0.5        # the loosest per-probe rate a lower threshold is read at (edge.kiosk.visits' "unknown")
TAIL_PAIRS = 200         # past one impostor pair, the curve goes on along an exponential tail fitted to these highest
TAIL_POINTS = 12         # ... with this many points, down to:
STRICTEST_FAR = 1e-9     # a 1:1 rate for a million enrolled at 0.001 per probe
MIN_TAIL_PAIRS = 20      # fewer impostor pairs than this: no tail is fitted


@dataclass(frozen=True)
class MatchThreshold:
    threshold: float
    gallery_size: int
    per_probe_far: float
    pair_far: float              # the 1:1 rate the threshold was read at
    resolved: bool               # False: the calibration had too few impostor pairs to reach ``pair_far``
    origin: str = "real-pair calibration"   # or "--threshold", "the checkpoint (no real-pair calibration)"
    extrapolated: bool = False   # read past the measured pairs, on the curve's fitted tail

    @classmethod
    def fixed(cls, threshold: float, gallery_size: int, origin: str) -> "MatchThreshold":
        """A threshold that does not move with the gallery: given by the user, or a checkpoint's 1:1 one."""
        return cls(threshold, gallery_size, float("nan"), float("nan"), True, origin)

    def describe(self) -> str:
        if self.origin != "real-pair calibration":
            return (f"threshold {self.threshold:.4f} from {self.origin}, the same for any gallery size "
                    f"({self.gallery_size} enrolled)")
        note = ("" if self.resolved else
                " (past one impostor pair in the calibration: from the exponential tail fitted to its highest "
                f"{TAIL_PAIRS} impostor scores)" if self.extrapolated else
                " (beyond the calibration's resolution: the strictest threshold it holds)")
        return (f"threshold {self.threshold:.4f} for {self.gallery_size} enrolled at {self.per_probe_far:g} false "
                f"accepts per probe (1:1 rate {self.pair_far:.2e}){note}")


@dataclass(frozen=True)
class Thresholds:
    match: float             # named at or above
    unknown: float           # a stranger below; undecided in between
    same_person: float       # two looks at or above this are one person (the 1:1 threshold, a gallery of one)

    def describe(self) -> str:
        return f"named at >= {self.match:.4f}, unknown below {self.unknown:.4f}, undecided between"


def pair_far_for_gallery(per_probe_far: float, gallery_size: int) -> float:
    """The 1:1 false-accept rate at which N independent comparisons give ``per_probe_far`` overall."""
    return 1.0 - (1.0 - per_probe_far) ** (1.0 / max(gallery_size, 1))


def far_curve(impostor_scores: np.ndarray, highest_far: float, points: int = CURVE_POINTS,
              loosest_far: float | None = LOOSEST_FAR) -> tuple:
    """(rate, threshold) from ``highest_far`` down to one impostor pair, log-spaced, and LOOSER_POINTS more up to
    ``loosest_far`` (where a visit's lower, "unknown" threshold is read); accept when score >= t. Past one pair,
    ``tail_points`` go on to STRICTEST_FAR.

    The threshold at rate f is just above the k-th highest impostor score, k = floor(f * impostors), so at most
    k impostor pairs pass it.
    """
    lowest = 1.0 / len(impostor_scores)
    top = max(highest_far, lowest)
    rates = np.geomspace(top, lowest, points) if highest_far > lowest else np.array([lowest])
    if loosest_far is not None and loosest_far > top:
        rates = np.concatenate([np.geomspace(loosest_far, top, LOOSER_POINTS, endpoint=False), rates])
    measured = tuple((float(rate), threshold_at_far(impostor_scores, rate)) for rate in rates)
    return measured + tail_points(impostor_scores, measured[-1][1])


def tail_points(impostor_scores: np.ndarray, strictest: float) -> tuple:
    """Thresholds for rates below one impostor pair, from an exponential fitted to the TAIL_PAIRS highest impostor
    scores (the rate falls by e every ``scale`` of score above the lowest of them; scale is their mean excess
    over it, its maximum-likelihood estimate), never below the strictest measured one. A kiosk enrolling
    thousands needs 1:1 rates no calibration set measures; a score's tail falling no faster than exponentially
    (S-norm scores are close to normal, whose tail falls faster) makes the threshold err strict."""
    scores = np.sort(np.asarray(impostor_scores, np.float64))[::-1]
    count = min(TAIL_PAIRS, len(scores) - 1)
    lowest = 1.0 / len(scores)
    if count < MIN_TAIL_PAIRS or lowest <= STRICTEST_FAR:
        return ()
    start = scores[count]
    scale = float(np.mean(scores[:count] - start))
    rates = np.geomspace(lowest, STRICTEST_FAR, TAIL_POINTS + 1)[1:]
    thresholds = np.maximum(start + scale * np.log(count / len(scores) / rates), strictest)
    return tuple((float(rate), float(threshold)) for rate, threshold in zip(rates, thresholds))


def curve_threshold(curve: tuple, rate: float) -> float:
    """The threshold the curve holds for ``rate`` exactly (the target it was measured from), else the next
    stricter point, else (too few impostor pairs to reach the rate) the strictest."""
    return next((threshold for point, threshold in curve if point <= rate * (1 + 1e-12)), curve[-1][1])


def match_threshold(match: MatchCalibration, gallery_size: int, per_probe_far: float | None = None) -> MatchThreshold:
    """The threshold that keeps a stranger's chance of being named at ``per_probe_far`` against ``gallery_size``."""
    target = match.target_far if per_probe_far is None else per_probe_far
    wanted = pair_far_for_gallery(target, gallery_size)
    rates = np.array([rate for rate, _ in match.far_curve])[::-1]            # rising
    thresholds = np.array([t for _, t in match.far_curve])[::-1]             # falling
    measured = wanted >= (1.0 / match.impostor_pairs) * 0.999
    if wanted <= rates[0]:
        return MatchThreshold(float(thresholds[0]), gallery_size, target, wanted, measured,
                              extrapolated=not measured and wanted >= rates[0] * 0.999)
    # Interpolate in log-rate: the curve is log-spaced and the impostor tail is close to exponential there.
    threshold = float(np.interp(np.log(min(wanted, rates[-1])), np.log(rates), thresholds))
    return MatchThreshold(threshold, gallery_size, target, wanted, measured, extrapolated=not measured)
