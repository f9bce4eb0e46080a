"""The planar liveness measurement on geometry whose answer is known: a head turning shows parallax, a flat
picture moved any way shows none, and two looks from one view show no motion."""
import numpy as np
import pytest

from edge.faces.planarity import look_pair

pytestmark = pytest.mark.unit
EYES = (0, 1)


def face_points(flat: bool, count: int = 200, seed: int = 0) -> np.ndarray:
    """A face-sized cloud in millimetres: eyes 60 mm apart; a head's depth (nose out, cheeks back) or none."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-70, 70, (count, 2)) * [0.8, 1.0]
    squared = (xy ** 2).sum(axis=1)
    depth = np.zeros(count) if flat else -40 * np.exp(-squared / (2 * 30 ** 2)) + 0.004 * squared
    points = np.column_stack([xy, depth])
    points[EYES[0]], points[EYES[1]] = [-30, -20, points[0, 2]], [30, -20, points[1, 2]]
    return points


def seen(points: np.ndarray, yaw_deg: float, pitch_deg: float = 0.0, distance: float = 600.0,
         shift=(0.0, 0.0)) -> np.ndarray:
    """Pixel positions through a pinhole camera (focal 800 px) after turning the points about their centre."""
    yaw, pitch = np.radians([yaw_deg, pitch_deg])
    turn_y = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    turn_x = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    moved = points @ (turn_x @ turn_y).T + [shift[0], shift[1], distance]
    return 800 * moved[:, :2] / moved[:, 2:] + [320, 240]


def test_a_turning_head_shows_parallax_and_a_moved_picture_none():
    head, picture = face_points(flat=False), face_points(flat=True)
    turn = look_pair(seen(head, 0), seen(head, 20), EYES)
    tilt = look_pair(seen(picture, 0), seen(picture, 35, 15, 500, (40, -20)), EYES)   # held at an angle, moved
    assert turn.motion > 0.05 and tilt.motion > 0.05                                 # both changed view
    assert turn.parallax > 0.03 and tilt.parallax < 1e-6                            # only the head is not a plane


def test_two_looks_from_one_view_show_no_motion():
    head = face_points(flat=False)
    still = look_pair(seen(head, 5), seen(head, 5), EYES)
    assert still.motion < 1e-9 and still.parallax < 1e-9


def test_landmarks_that_are_not_a_face_are_refused():
    with pytest.raises(ValueError, match="the eyes coincide"):
        look_pair(np.zeros((10, 2)), np.zeros((10, 2)), EYES)


def test_the_face_mesh_lands_on_the_face_the_detector_found():
    from synthetic_faces import identity_from_seed, render_face, sample_nuisance

    from edge.faces.face_mesh import MESH_POINTS, FaceMesh
    from edge.faces.packaged_detector import load_packaged_detector

    image, _ = render_face(identity_from_seed(7), sample_nuisance(np.random.default_rng(1)), 160)
    face = max(load_packaged_detector().detect(image), key=lambda d: d.score)
    mesh = FaceMesh()
    try:
        found = mesh.mesh(image, face.box, face.keypoints[:2])
    finally:
        mesh.close()
    width = face.box[2] - face.box[0]
    assert found.points.shape == (MESH_POINTS, 3) and found.face_score > 0.5
    assert np.linalg.norm(found.points[1, :2] - face.keypoints[2]) < 0.1 * width      # the nose tip on the nose
    inside = (found.points[:, :2] >= face.box[:2] - 0.1 * width) & (found.points[:, :2] <= face.box[2:] + 0.1 * width)
    assert inside.all(axis=1).mean() > 0.95
