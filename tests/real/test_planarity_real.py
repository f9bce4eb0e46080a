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
