"""The real BlazeFace detector and the alignment on real faces from ../shared/data."""
import re

import numpy as np
import pytest

from edge.base.imageio import read_image
from edge.faces.align import align_face
from edge.faces.dataprep import largest
from edge.faces.detect import box_iou
from edge.faces.packaged_detector import load_packaged_detector
from edge.runtime.crops import crop_template, five_to_four, similarity_transform
from edge.sources import open_source

TEMPLATE_112 = crop_template("arcface112").array()

pytestmark = pytest.mark.real


@pytest.fixture(scope="module")
def detector():
    return load_packaged_detector()


def test_detects_every_orl_face(shared_data, detector):
    paths = sorted((shared_data / "orl").glob("s*/*.pgm"))
    found = sum(bool(detector.detect(read_image(p))) for p in paths)
    assert len(paths) == 400
    assert found / len(paths) >= 0.98


def _faces80(shared_data, count):
    lines = (shared_data / "faces80" / "landmarks.txt").read_text().split("\n")
    for line in lines[:count]:
        path, *values = line.split()
        values = np.array(values, np.float32)
        yield shared_data / "faces80" / path, np.stack([values[:5], values[5:]], axis=1)


def test_keypoints_match_faces80_landmarks(shared_data, detector):
    errors, found = [], 0
    for path, points in _faces80(shared_data, 300):
        face = largest(detector.detect(read_image(path)))
        if face is None:
            continue
        found += 1
        reference = five_to_four(points)
        inter_ocular = np.linalg.norm(reference[0] - reference[1])
        errors.append(np.linalg.norm(face.keypoints[:4] - reference, axis=1).mean() / inter_ocular)
    assert found >= 285
    assert np.median(errors) < 0.15          # measured 0.08 on this set


def test_alignment_lands_landmarks_on_the_template(shared_data, detector):
    deviations = []
    for path, points in _faces80(shared_data, 100):
        image = read_image(path)
        face = largest(detector.detect(image))
        if face is None:
            continue
        aligned = align_face(image, face.keypoints)
        assert aligned.shape == (112, 112, 3)
        # the ground-truth eyes, mapped by the same transform, should fall near the template's eyes
        matrix = similarity_transform(face.keypoints[:4], TEMPLATE_112)
        eyes = points[:2] @ matrix[:, :2].T + matrix[:, 2]
        deviations.append(np.linalg.norm(eyes - TEMPLATE_112[:2], axis=1).mean())
    assert np.median(deviations) < 5.0       # pixels in the 112x112 crop


def test_stage_clip_detection_rate(shared_data, detector):
    with open_source(str(shared_data / "video" / "stage_clip_360p.mp4")) as source:
        hits = [bool(detector.detect(frame.image)) for frame in source]
    assert len(hits) == 275
    assert np.mean(hits) >= 0.7              # short-range model, a performer far from the camera: 80% measured


def _labelled_boxes(shared_data, name):
    xml = (shared_data / "detect" / "testing.xml").read_text() + (shared_data / "detect" / "training.xml").read_text()
    block = re.search(rf"<image file='{re.escape(name)}'.*?</image>", xml, re.S).group(0)
    return [np.array([int(left), int(top), int(left) + int(w), int(top) + int(h)], np.float32)
            for top, left, w, h in re.findall(r"top='(\d+)' left='(\d+)' width='(\d+)' height='(\d+)'", block)]


def test_no_strong_face_in_the_dog_photo(shared_data, detector):
    # one dog's face scores 0.60 against the model's default 0.5 cut-off: a known weakness, kept visible here
    assert all(f.score < 0.65 for f in detector.detect(read_image(shared_data / "detect" / "dogs.jpg")))


# Photos whose faces are large enough for the short-range model (made for faces within ~2 m of the camera).
# In the group photos (faces under 10% of the image width) it finds few faces: the full-range model does.
NEAR_FACE_PHOTOS = ("2008_001009.jpg", "2008_001322.jpg", "2008_002506.jpg", "2009_004587.jpg")


@pytest.mark.parametrize("name", NEAR_FACE_PHOTOS)
def test_finds_the_labelled_faces_in_near_photos(shared_data, detector, name):
    faces = detector.detect(read_image(shared_data / "detect" / name))
    truth = _labelled_boxes(shared_data, name)
    found = [any(box_iou(t, np.stack([f.box]))[0] > 0.3 for f in faces) for t in truth]
    assert all(found)


def test_full_range_model_finds_the_small_faces_of_the_group_photos(shared_data):
    full = load_packaged_detector("blazeface_full")
    found = labelled = detections = 0
    for xml in ("training.xml", "testing.xml"):
        text = (shared_data / "detect" / xml).read_text()
        for name in re.findall(r"<image file='([^']+)'", text):
            faces = full.detect(read_image(shared_data / "detect" / name))
            detections += len(faces)
            for box in _labelled_boxes(shared_data, name):
                labelled += 1
                centre = (box[:2] + box[2:]) / 2
                found += any(f.box[0] <= centre[0] <= f.box[2] and f.box[1] <= centre[1] <= f.box[3] for f in faces)
    # measured: 42 of 43 labelled faces with 42 detections (short range: 13 of 43)
    assert labelled == 43 and found >= 40 and detections <= found + 3


def test_detect_benchmark_on_the_labelled_photos(shared_data, tmp_path, detector_bundle):
    """The host board's tiled strategy over each whole photo: recall >= 0.95 for faces of 40 px and more."""
    import json

    from benchmarks.cli import main

    bundle = detector_bundle()
    for boxes in ("training.xml", "testing.xml"):
        assert main(["detect", "--bundle", str(bundle), "--boxes", str(shared_data / "detect" / boxes),
                     "--results", str(tmp_path / "results")]) == 0
    results = [json.loads(p.read_text()) for p in (tmp_path / "results" / "host").glob("detect-*.json")]
    found = sum(r["recall_40px"] * r["faces_40px"] for r in results)
    assert found / sum(r["faces_40px"] for r in results) >= 0.95                # measured 1.0 (22 of 22)
    assert sum(r["found"] for r in results) >= 40                                  # measured 42 of 43, all sizes
