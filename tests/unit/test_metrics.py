import numpy as np
import pytest

from edge.base import metrics

pytestmark = pytest.mark.unit


def test_perfect_separation():
    scores = np.array([0.9, 0.8, 0.7, 0.2, 0.1, 0.0] * 4)
    same = np.array([1, 1, 1, 0, 0, 0] * 4, bool)
    assert metrics.roc_auc(scores, same) == pytest.approx(1.0)
    assert metrics.equal_error_rate(scores, same)[0] == pytest.approx(0.0)
    assert metrics.kfold_accuracy(scores, same, folds=4).mean == pytest.approx(1.0)
    threshold = metrics.threshold_at_far(scores[~same], 0.0)
    assert 0.2 < threshold <= 0.7
    assert metrics.tar_at_far(scores, same, 0.0) == 1.0


def test_random_scores_give_chance():
    rng = np.random.default_rng(0)
    scores = rng.random(4000)
    same = rng.random(4000) < 0.5
    assert metrics.roc_auc(scores, same) == pytest.approx(0.5, abs=0.03)
    assert metrics.equal_error_rate(scores, same)[0] == pytest.approx(0.5, abs=0.03)


def test_known_auc_with_ties():
    # genuine {0.5, 1.0}, impostor {0.5, 0.0}: P(g > i) + P(tie)/2 = (3 + 0.5) / 4
    assert metrics.roc_auc(np.array([1.0, 0.5, 0.5, 0.0]), np.array([1, 1, 0, 0], bool)) == pytest.approx(0.875)


def test_psnr_and_cosine():
    a = np.zeros((4, 4))
    assert metrics.psnr(a, a + 0.1) == pytest.approx(20.0)
    assert metrics.psnr(a, a) == float("inf")
    np.testing.assert_allclose(metrics.cosine_similarity(np.eye(2), np.array([[1, 0], [1, 1]])), [1, 2 ** -0.5])


def test_ssim_is_one_for_identical_images_and_falls_with_noise_and_blur():
    import cv2

    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.random((64, 64, 3)), (0, 0), 2)            # smooth, like a face crop
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    noisy = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
    blurred = cv2.GaussianBlur(image, (0, 0), 3)
    assert 0 < metrics.ssim(image, noisy) < 0.9 and metrics.ssim(image, blurred) < 1.0
    assert metrics.ssim(image.transpose(2, 0, 1), noisy.transpose(2, 0, 1)) == pytest.approx(metrics.ssim(image, noisy))


def test_frechet_distance_is_zero_for_one_set_and_grows_with_the_shift():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert metrics.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    near, far = metrics.frechet_distance(a, a + 0.1), metrics.frechet_distance(a, a + 1.0)
    assert near == pytest.approx(8 * 0.01, rel=1e-6) and far == pytest.approx(8.0, rel=1e-6)
    wider = metrics.frechet_distance(a, 2 * a)                       # same mean, twice the spread
    assert wider > 0.5 * 8


def test_a_rate_becomes_a_threshold_one_way_for_the_trainer_and_for_compile():
    from edge.faces.matching import far_curve

    impostors = np.random.default_rng(1).normal(0.2, 0.1, 1000)
    ranked = np.sort(impostors)[::-1]
    for far in (0.001, 0.01, 0.1):
        threshold = metrics.threshold_at_far(impostors, far)
        assert (impostors >= threshold).sum() == int(far * 1000)            # at most k = far * N pass ...
        assert ranked[int(far * 1000)] < threshold <= np.nextafter(ranked[int(far * 1000)], 1)   # ... the lowest
    curve = dict(far_curve(impostors, 0.01, loosest_far=None))
    measured = {rate: t for rate, t in curve.items() if rate >= 1 / len(impostors) * 0.999}   # past them: the tail
    assert len(measured) < len(curve)
    assert all(t == metrics.threshold_at_far(impostors, rate) for rate, t in measured.items())
