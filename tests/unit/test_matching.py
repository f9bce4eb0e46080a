"""The open-set threshold: it rises with the gallery so a stranger's chance of a name stays at the target."""
import types

import numpy as np
import pytest

from edge.base.metrics import balanced_accuracy
from edge.faces.matching import (
    STRICTEST_FAR,
    TAIL_POINTS,
    curve_threshold,
    far_curve,
    match_threshold,
    pair_far_for_gallery,
)
from edge.runtime.manifest import MatchCalibration

pytestmark = pytest.mark.unit


def _calibration(impostors: np.ndarray, target: float) -> MatchCalibration:
    curve = far_curve(impostors, target)
    return MatchCalibration(source="test", target_far=target, threshold=curve_threshold(curve, target),
                            impostor_pairs=len(impostors),
                            genuine_pairs=0, far_curve=curve)


def test_pair_rate_for_a_gallery_keeps_the_per_probe_rate():
    assert pair_far_for_gallery(0.01, 1) == pytest.approx(0.01)
    rate = pair_far_for_gallery(0.01, 100)
    assert 1 - (1 - rate) ** 100 == pytest.approx(0.01)
    assert rate == pytest.approx(0.01 / 100, rel=0.01)


def test_far_curve_thresholds_let_through_at_most_the_rate():
    impostors = np.random.default_rng(0).normal(0.1, 0.1, 20000)
    for rate, threshold in far_curve(impostors, 0.01):
        assert np.mean(impostors >= threshold) <= rate + 1e-12
    rates = [rate for rate, _ in far_curve(impostors, 0.01)]
    assert rates[0] == pytest.approx(0.5)                                               # looser points for "unknown"
    assert rates[-1] == pytest.approx(STRICTEST_FAR) and 1 / 20000 in rates            # past one pair: the tail
    assert 0.01 in rates and rates == sorted(rates, reverse=True)


def test_threshold_rises_with_the_gallery_and_holds_the_per_probe_rate():
    rng = np.random.default_rng(1)
    impostors = rng.normal(0.0, 0.1, 200000)
    calibration = _calibration(impostors, 0.01)
    one, hundred = match_threshold(calibration, 1), match_threshold(calibration, 100)
    assert one.threshold == pytest.approx(calibration.threshold)
    assert hundred.threshold > one.threshold and hundred.resolved
    # Strangers against 100 enrolled people: a false accept is any of 100 impostor scores passing.
    strangers = rng.normal(0.0, 0.1, (20000, 100)).max(axis=1)
    assert np.mean(strangers >= hundred.threshold) == pytest.approx(0.01, abs=0.003)


def test_past_one_impostor_pair_the_fitted_tail_holds_the_per_probe_rate_erring_strict():
    rng = np.random.default_rng(2)
    calibration = _calibration(rng.normal(0.0, 1.0, 20000), 0.01)      # one pair in 20,000: 1000 people need 1e-5
    thousand = match_threshold(calibration, 1000)
    assert not thousand.resolved and thousand.extrapolated and "exponential tail" in thousand.describe()
    assert thousand.threshold > calibration.far_curve[-TAIL_POINTS - 1][1]     # above the strictest measured
    strangers = np.concatenate([rng.normal(0.0, 1.0, (2000, 1000)).max(axis=1) for _ in range(5)])
    assert 0.001 <= np.mean(strangers >= thousand.threshold) <= 0.01
    # a calibration too small to fit a tail keeps its strictest threshold, and says so
    few = _calibration(rng.normal(0.0, 1.0, 15), 0.1)
    assert few.far_curve[-1][0] == pytest.approx(1 / 15) and not match_threshold(few, 1000).extrapolated


def test_a_gallery_beyond_the_tail_uses_the_strictest_threshold_and_says_so():
    calibration = _calibration(np.linspace(-0.2, 0.3, 1000), 0.01)
    far = match_threshold(calibration, 10**9)
    assert not far.resolved and not far.extrapolated
    assert far.threshold == pytest.approx(calibration.far_curve[-1][1])
    assert "beyond the calibration's resolution" in far.describe()


def test_balanced_accuracy_weighs_people_and_strangers_alike():
    scores = np.array([0.9, 0.8, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    same = np.array([True, True, False, False, False, False, False, False])
    assert balanced_accuracy(scores, same, 0.55) == pytest.approx((1.0 + 5 / 6) / 2)


def test_the_unknown_threshold_is_read_below_the_match_threshold():
    impostors = np.random.default_rng(2).normal(0.0, 0.1, 50000)
    calibration = _calibration(impostors, 0.001)
    for size in (1, 10):
        strict, loose = match_threshold(calibration, size), match_threshold(calibration, size, 0.5)
        assert loose.threshold < strict.threshold
        assert np.mean(impostors >= loose.threshold) == pytest.approx(loose.pair_far, rel=0.05)


def test_two_looks_are_one_person_at_a_one_in_a_hundred_pair_rate_or_the_bundles_own_if_looser():
    from edge.faces.matcher import SAME_PERSON_PAIR_FAR, Matcher

    impostors = np.random.default_rng(3).normal(0.0, 0.1, 50000)
    for target in (0.001, 0.05):
        calibration = _calibration(impostors, target)
        matcher = Matcher(types.SimpleNamespace(match=calibration, threshold=None, name="verifier"), key=None)
        thresholds = matcher.visit_thresholds(0.5)
        looser = min(calibration.threshold, match_threshold(calibration, 1, SAME_PERSON_PAIR_FAR).threshold)
        assert thresholds.same_person == pytest.approx(looser)
        assert np.mean(impostors >= thresholds.same_person) == pytest.approx(max(target, SAME_PERSON_PAIR_FAR),
                                                                            rel=0.05)
