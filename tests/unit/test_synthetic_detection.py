"""The synthetic faces feed the real detector: BlazeFace must find them, where the renderer says they are."""
import numpy as np
import pytest

from edge.faces.dataprep import largest
from edge.faces.detect import box_iou
from edge.faces.packaged_detector import load_packaged_detector
from edge.runtime.crops import five_to_four
from synthetic_faces import SceneScript, identities, render_face, sample_nuisance

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def detector():
    return load_packaged_detector()


def test_rendered_faces_are_detected_with_keypoints_on_the_landmarks(detector):
    people = identities(40, first_seed=500)
    found, errors = 0, []
    for i, person in enumerate(people * 3):
        image, landmarks = render_face(person, sample_nuisance(np.random.default_rng([7, i])))
        face = largest(detector.detect(image))
        if face is None:
            continue
        found += 1
        truth = five_to_four(landmarks)
        errors.append(np.linalg.norm(face.keypoints[:4] - truth, axis=1).mean() / np.linalg.norm(truth[0] - truth[1]))
    assert found / 120 >= 0.95                 # measured 1000 of 1000
    assert np.median(errors) < 0.2


def test_scene_frames_with_a_person_are_detected_and_empty_ones_are_not(detector):
    script = SceneScript(identities(4, first_seed=600), frames_per_person=15, gap_frames=4, seed=3)
    hits, false_alarms, people_frames = 0, 0, 0
    for index in range(len(script)):
        image, person, box = script.frame(index)
        faces = detector.detect(image)
        if person is None:
            false_alarms += bool(faces)
            continue
        people_frames += 1
        hits += any(box_iou(np.asarray(box, np.float32), np.stack([f.box]))[0] > 0.4 for f in faces)
    assert hits / people_frames >= 0.9         # measured 700 of 700
    assert false_alarms == 0


def test_the_tiled_strategy_finds_faces_of_40_px_in_1080p_where_short_range_alone_does_not(detector):
    from edge.faces.scan import TiledScan
    from edge.runtime.boards import load_board
    from edge.sources import open_source

    scan = TiledScan({"blazeface_short": detector, "blazeface_full": load_packaged_detector("blazeface_full")},
                     load_board("host").detection)
    heights, tiled, short = [], 0, 0
    uri = "synthetic://kiosk?seeds=1,2&frames_per_person=6&gap_frames=0&width=1920&height=1080&face_scale=0.12"
    with open_source(uri) as source:
        for frame in source:
            box = np.array(frame.truth["box"], np.float32)
            heights.append(box[3] - box[1])
            tiled += any(box_iou(box, d.box[None])[0] > 0.3 for d in scan.detect_all(frame.image))
            short += any(box_iou(box, d.box[None])[0] > 0.3 for d in detector.detect(frame.image))
    assert 35 <= min(heights) and max(heights) <= 55                  # faces of about 40-50 px in 1920x1080
    assert tiled == 12 and short <= 6                                  # measured: 12 of 12 against 0
