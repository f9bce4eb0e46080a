"""The planar liveness measurement on real faces: the stage clip's people (the audience of a show: they laugh and
turn their heads) against a frame of the clip held as a photo, tilted."""
import cv2
import numpy as np
import pytest

from edge.faces.packaged_detector import load_packaged_detector
from edge.runtime.boards import load_board

pytestmark = pytest.mark.real


def test_points_tracked_on_a_live_face_move_unlike_a_photo_of_the_same_frame(shared_data):
    """The stage clip's largest face 8 frames apart, against the same frame held as a photo at two slightly different
    tilts: tracked points on paper fit a homography to the tracker's noise; on a live face that turns or laughs they
    do not."""
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
    threshold = load_board("host").liveness.planar_parallax
    print(f"live pairs above {threshold}: {np.mean(live_parallax >= threshold):.2f} of {len(live_parallax)}; "
          f"held photos' largest parallax {held_parallax.max():.4f}")
    # measured: about a quarter of the live pairs, 8 frames apart, are above the board's threshold (the largest face
    # turns or laughs; most of the time it barely moves), and no pair of held photos comes near it
    assert len(live_parallax) >= 30 and len(held_parallax) >= 30
    assert np.mean(live_parallax >= threshold) >= 0.15 and held_parallax.max() < 0.75 * threshold

