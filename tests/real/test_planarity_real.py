"""The planar liveness measurement on real faces: ORL's people turning their heads between shots against a photo
of one of those shots held tilted in front of the camera (the shot warped by a random homography)."""
import cv2
import numpy as np
import pytest

from edge.base.imageio import list_images, read_image
from edge.faces.face_mesh import FaceMesh
from edge.faces.packaged_detector import load_packaged_detector
from edge.faces.planarity import look_pair

pytestmark = pytest.mark.real
MOVED = 0.05           # looks whose view changed at least this much (the similarity's residual over the eyes)
# How far the photo's corners move, as a share of the frame. Measured: at 0.12 the held photo's parallax stays at the
# mesh's noise (p95 0.02) below live turns (p10 0.038); at 0.2 it reaches p95 0.041 (0.063 on 22 key points alone)
# and the two overlap. The mesh is not equivariant under perspective: it reads a strongly tilted photo of a face as a
# turned head. Judging strong tilts needs image points tracked on the face itself (which a plane carries exactly
# by a homography), not a model's landmarks.
TILT = 0.12


def test_live_head_turns_show_parallax_that_a_held_photo_does_not(shared_data):
    detector, mesh = load_packaged_detector(), FaceMesh()
    rng = np.random.default_rng(0)

    def landmarks(image):
        face = max(detector.detect(image), key=lambda d: d.score, default=None)
        return None if face is None else mesh.mesh(image, face.box, face.keypoints[:2]).points

    live, held = [], []
    try:
        for person in range(1, 21):
            shots = [read_image(p) for p in list_images(shared_data / "orl" / f"s{person}")]
            first = landmarks(shots[0])
            live += [look_pair(first, other) for other in map(landmarks, shots[1:]) if other is not None]
            height, width = shots[0].shape[:2]
            corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
            for _ in range(4):
                tilted = (corners + rng.uniform(-TILT, TILT, (4, 2)) * [width, height]).astype(np.float32)
                photo = cv2.warpPerspective(shots[0], cv2.getPerspectiveTransform(corners, tilted), (width, height),
                                            borderMode=cv2.BORDER_REPLICATE)
                seen = landmarks(photo)
                if seen is not None:
                    held.append(look_pair(first, seen))
    finally:
        mesh.close()
    turned = np.array([pair.parallax for pair in live if pair.motion >= MOVED])
    flat = np.array([pair.parallax for pair in held])
    # measured: 52 of 180 live pairs moved enough; their parallax p5 0.037, the held photos' p95 0.02
    assert len(turned) >= 30 and len(flat) >= 60
    assert np.percentile(turned, 10) > np.percentile(flat, 95)


def test_points_tracked_on_a_live_performer_move_unlike_a_photo_of_the_same_frame(shared_data):
    """The stage clip's performer 8 frames apart, against the same frame held as a photo at two slightly different
    tilts: tracked points on paper fit a homography to the tracker's noise; on a live face they mostly do not."""
    from edge.faces.planarity import tracked_pair
    from edge.sources import open_source

    detector = load_packaged_detector()
    with open_source(str(shared_data / "video" / "stage_clip_360p.mp4")) as source:
        frames = [frame.image for frame in source]
    rng = np.random.default_rng(0)
    live, held = [], []
    for index in range(0, len(frames) - 8, 4):
        first = frames[index]
        face = max(detector.detect(first), key=lambda d: d.box[2] - d.box[0], default=None)
        if face is None or face.box[2] - face.box[0] < 40:
            continue
        live.append(tracked_pair(first, frames[index + 8], face.box))
        height, width = first.shape[:2]
        corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        photos = [cv2.warpPerspective(first, cv2.getPerspectiveTransform(
            corners, (corners + rng.uniform(-0.1, 0.1, (4, 2)) * [width, height]).astype(np.float32)),
            (width, height)) for _ in range(2)]
        photo_face = max(detector.detect(photos[0]), key=lambda d: d.box[2] - d.box[0], default=None)
        if photo_face is not None:
            held.append(tracked_pair(photos[0], photos[1], photo_face.box))
    live_parallax = np.array([pair.parallax for pair in live if pair is not None])
    held_parallax = np.array([pair.parallax for pair in held if pair is not None])
    # measured: live p50 0.025 (p10 0.003: a performer who only moves sideways shows none), held p95 0.011
    assert len(live_parallax) >= 30 and len(held_parallax) >= 30
    assert np.median(live_parallax) > np.percentile(held_parallax, 95)

