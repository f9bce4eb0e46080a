"""S-norm against a cohort: each score standardised by the probe's and the template's own cohort scores, the
kiosk's scorer and the pair scores agree, and a bundle's cohort file is checked like its models. (What it does to
identification on real faces: tests/real/test_identify_real.py.)"""
import dataclasses

import numpy as np
import pytest

from edge.base.errors import UserError
from edge.faces.packaged_detector import detector_entry
from edge.faces.score_norm import COHORT_TOP, ScoreNorm, TemplateScorer, bundle_score_norm, cohort_image_hashes
from edge.runtime.manifest import (
    Manifest,
    MatchCalibration,
    ScoreCohort,
    read_manifest,
    sha256_file,
    write_manifest,
)

pytestmark = pytest.mark.unit


def unit(vectors):
    vectors = np.asarray(vectors, np.float32)
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)


@pytest.fixture
def space():
    """A cohort spread around a direction all faces share, and two enrolled people."""
    rng = np.random.default_rng(0)
    common = unit(rng.standard_normal(64))

    def faces(count, pull):
        return unit(pull * common + rng.standard_normal((count, 64)) / 8)
    return common, faces(1000, 1.0), faces(1, 3.0)[0], unit(rng.standard_normal(64)), faces


def test_each_score_is_placed_among_the_cohort_scores_of_its_probe_and_of_its_template(space):
    _, cohort, typical, unusual, faces = space
    norm = ScoreNorm(cohort)
    probes, templates = faces(3, 1.0), np.stack([typical, unusual])
    probe, template = norm.stats(probes), norm.stats(templates)
    raw = probes @ templates.T
    by_probe = (raw - probe.mean[:, None]) / probe.deviation[:, None]
    expected = 0.5 * (by_probe + (raw - template.mean) / template.deviation)
    assert np.allclose(TemplateScorer(templates, norm).scores(probes), expected, atol=1e-4)
    assert np.allclose(TemplateScorer(templates).scores(probes), raw, atol=1e-6)
    # the typical face scores high against everyone, the unusual one low: normalised, the probes' scores against
    # each are measured from where that template's strangers sit
    assert template.mean[0] > template.mean[1]


def test_scores_pairs_and_statistics_agree(space):
    _, cohort, typical, unusual, faces = space
    norm = ScoreNorm(cohort)
    probes = faces(5, 1.0)
    scorer = TemplateScorer(np.stack([typical, unusual]), norm)
    matrix = scorer.scores(probes)
    for row, probe in zip(matrix, probes):
        assert np.allclose(row, scorer.scores(probe), atol=1e-5)
        assert np.isclose(row[1], norm.pair(probe, unusual), atol=1e-5)
        assert all(np.isclose(row[i], scorer.score(probe, i), atol=1e-5) for i in (0, 1))
        assert scorer.best(probe) == (int(np.argmax(row)), pytest.approx(float(row.max()), abs=1e-5))
    stats = norm.stats(probes)
    highest = np.sort(probes @ cohort.T, axis=1)[:, -COHORT_TOP:]
    assert np.allclose(stats.mean, highest.mean(axis=1), atol=1e-5)
    assert np.allclose(stats.deviation, highest.std(axis=1), atol=1e-5)
    with pytest.raises(UserError, match="at least 200"):
        ScoreNorm(cohort[:50])


def test_a_bundles_cohort_is_checked_like_its_models_and_names_its_images(tmp_path, space):
    _, cohort, *_ = space
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    cohort_file = tmp_path / "cohort.verifier.npz"
    np.savez(cohort_file, vectors=cohort, image_sha1=np.array(["ab" * 20, "cd" * 20]))
    record = ScoreCohort(cohort_file.name, sha256_file(cohort_file), len(cohort), COHORT_TOP, "test faces")
    match = MatchCalibration("test", 0.001, 3.0, 10, 5, ((0.001, 3.0),), cohort=record)
    entry = dataclasses.replace(detector_entry("blazeface_short", "m.tflite", model), name="verifier", task="verify",
                                match=match)
    write_manifest(tmp_path, Manifest(board="host", created="now", tools={"x": "1"}, models=(entry,)))
    read = read_manifest(tmp_path).find("verify")
    assert read.match.cohort == record and read.match.score == "s-norm (top 200 of 1000 faces)"
    assert cohort_image_hashes(tmp_path, read) == {"ab" * 20, "cd" * 20}
    assert np.allclose(bundle_score_norm(tmp_path, read).cohort, cohort)
    with open(cohort_file, "ab") as handle:
        handle.write(b"tampered")
    with pytest.raises(UserError, match="score cohort of verifier.* fails its checksum"):
        read_manifest(tmp_path)
