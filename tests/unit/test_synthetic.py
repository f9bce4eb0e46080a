"""The synthetic face renderer: determinism, landmark geometry, dataset layout and the kiosk scene."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from synthetic_faces import (
    Identity, SceneScript, identities, identity_from_seed, render_face, sample_nuisance, write_identity_folders,
)


def _sample(n: int, size: int = 96) -> list[tuple[np.ndarray, np.ndarray]]:
    people = identities(n, first_seed=100)
    return [render_face(person, sample_nuisance(np.random.default_rng(i)), size) for i, person in enumerate(people)]


@pytest.mark.unit
def test_same_seed_gives_the_same_person_and_pixels():
    assert identity_from_seed(7) == identity_from_seed(7)
    assert identities(3, first_seed=5)[1] == identity_from_seed(6)
    first = render_face(identity_from_seed(7), sample_nuisance(np.random.default_rng(3)))
    second = render_face(identity_from_seed(7), sample_nuisance(np.random.default_rng(3)))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


@pytest.mark.unit
def test_different_identities_look_different():
    nuisance = sample_nuisance(np.random.default_rng(0), strength=0.0)
    one, _ = render_face(identity_from_seed(1), nuisance)
    two, _ = render_face(identity_from_seed(2), nuisance)
    assert identity_from_seed(1) != identity_from_seed(2)
    assert np.abs(one.astype(np.int16) - two.astype(np.int16)).mean() > 10


@pytest.mark.unit
def test_identity_is_a_flat_frozen_record():
    person = identity_from_seed(0)
    assert isinstance(person, Identity)
    with pytest.raises(AttributeError):
        person.jaw = 0.5


@pytest.mark.unit
def test_render_returns_image_and_five_landmarks_in_image_order():
    for image, landmarks in _sample(24):
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8
        assert landmarks.shape == (5, 2) and landmarks.dtype == np.float32
        assert np.all((landmarks >= 0) & (landmarks < 96))
        left_eye, right_eye, nose, mouth_left, mouth_right = landmarks
        assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
        assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.unit
def test_face_fills_about_half_the_image_width():
    eye_distances = [np.linalg.norm(lm[1] - lm[0]) / 96 for _, lm in _sample(12)]
    # Eye centres are about 45% of the face width apart; the face fills roughly 50-65% of the image.
    assert 0.15 < min(eye_distances) and max(eye_distances) < 0.4


@pytest.mark.unit
def test_invalid_arguments_raise_value_error():
    with pytest.raises(ValueError):
        identity_from_seed(-1)
    with pytest.raises(ValueError):
        sample_nuisance(np.random.default_rng(0), strength=-1)
    with pytest.raises(ValueError):
        render_face(identity_from_seed(0), sample_nuisance(np.random.default_rng(0)), size=8)
    with pytest.raises(ValueError):
        SceneScript([])


@pytest.mark.unit
def test_write_identity_folders_layout_and_determinism(tmp_path):
    stats = write_identity_folders(tmp_path / "a", n_identities=3, images_per_identity=2, seed=10, size=64)
    assert (stats.identities, stats.images) == (3, 6)
    root = tmp_path / "a"
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["id0010", "id0011", "id0012"]
    lines = (root / "landmarks.txt").read_text().splitlines()
    assert len(lines) == 6 and lines[0].split()[0] == "id0010/0000.png"
    for line in lines:
        fields = line.split()
        assert len(fields) == 11
        image = cv2.imread(str(root / fields[0]))
        assert image.shape == (64, 64, 3)
        xs, ys = np.array(fields[1:6], float), np.array(fields[6:], float)
        assert xs[0] < xs[1] and ys[:2].max() < ys[2]
    write_identity_folders(tmp_path / "b", n_identities=3, images_per_identity=2, seed=10, size=64)
    for line in lines:
        relpath = line.split()[0]
        assert (root / relpath).read_bytes() == (tmp_path / "b" / relpath).read_bytes()


@pytest.mark.unit
def test_scene_has_empty_gaps_then_one_person_inside_the_box():
    people = identities(2, first_seed=30)
    script = SceneScript(people, frames_per_person=4, gap_frames=2, width=320, height=240, seed=1)
    assert len(script) == 12
    who = [script.frame(i)[1] for i in range(len(script))]
    assert who == [None, None, people[0], people[0], people[0], people[0],
                   None, None, people[1], people[1], people[1], people[1]]
    for index in (0, 7):
        image, person, box = script.frame(index)
        assert image.shape == (240, 320, 3) and image.dtype == np.uint8 and box is None
    for index in (2, 5, 9):
        details = script.frame_details(index)
        x1, y1, x2, y2 = details.box
        assert 0 <= x1 < x2 <= 320 and 0 <= y1 < y2 <= 240
        assert 0.2 < (y2 - y1) / 240 < 0.5
        points = details.landmarks
        assert np.all((points[:, 0] > x1) & (points[:, 0] < x2) & (points[:, 1] > y1) & (points[:, 1] < y2))
    with pytest.raises(IndexError):
        script.frame(len(script))


@pytest.mark.unit
def test_scene_frames_are_reproducible_and_move_a_little():
    def make():
        return SceneScript(identities(1, first_seed=40), frames_per_person=10, gap_frames=1, width=320,
                           height=240, seed=2)

    np.testing.assert_array_equal(make().frame(6)[0], make().frame(6)[0])
    script = make()
    boxes = np.array([script.frame(i)[2] for i in (5, 6)])
    shift = np.abs(boxes[1] - boxes[0]).max()
    assert 0 < shift < 0.1 * 320
