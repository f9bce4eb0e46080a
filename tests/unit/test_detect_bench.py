"""Detection against labelled boxes: the imglab reader, the matching rule, and the benchmark end to end."""
import json

import numpy as np
import pytest

from benchmarks.cli import main
from benchmarks.detect_bench import size_bin
from benchmarks.labelled_boxes import LabelledImage, match_detections, parse_imglab
from edge.base.errors import UserError

pytestmark = pytest.mark.unit


def test_imglab_boxes_and_ignored_regions_are_read(tmp_path):
    path = tmp_path / "boxes.xml"
    path.write_text("<dataset><images><image file='a.jpg'><box top='10' left='20' width='30' height='40'/>"
                    "<box top='0' left='0' width='5' height='5' ignore='1'/></image></images></dataset>")
    (image,) = parse_imglab(path)
    np.testing.assert_allclose(image.boxes, [[20, 10, 50, 50]])
    np.testing.assert_allclose(image.ignored, [[0, 0, 5, 5]])


@pytest.mark.parametrize("text, message", [
    ("<dataset><images><image file='a.jpg'>", "does not parse as XML"),
    ("<dataset><images/></dataset>", "holds no <image> elements"),
    ("<dataset><images><image file='a.jpg'><box top='x' left='1' width='2' height='3'/></image></images></dataset>",
     "needs numeric top, left, width and height"),
])
def test_a_labelled_boxes_file_that_does_not_parse_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "boxes.xml"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        parse_imglab(path)


def test_matching_needs_the_centre_inside_and_similar_heights_once_each():
    labelled = LabelledImage("a.jpg", np.array([[0, 0, 100, 100], [200, 0, 240, 40]], np.float32),
                             np.array([[400, 400, 450, 450]], np.float32))
    detections = np.array([[10, 10, 90, 90],        # finds the first face
                           [12, 12, 88, 88],        # a second hit on the same face: false
                           [205, 5, 215, 15],       # centre inside the second, but 4x smaller: false
                           [410, 410, 440, 440]],   # in an ignored region: neither
                          np.float32)
    found, false = match_detections(labelled, detections, np.array([0.9, 0.8, 0.7, 0.6]))
    assert found.tolist() == [True, False] and false == 2


def test_size_bins_cover_every_height():
    assert [size_bin(h) for h in (5, 20, 39.9, 40, 100, 500)] == ["0-20", "20-40", "20-40", "40-80", "80-160",
                                                                   ">=160"]


def test_detect_benchmark_writes_json_and_report(tmp_path, detector_bundle):
    from synthetic_faces.dataset import write_identity_folders

    bundle = detector_bundle()
    faces = tmp_path / "faces"
    write_identity_folders(faces, 2, 2, seed=7)
    lines = [line.split() for line in (faces / "landmarks.txt").read_text().splitlines()]
    images = []
    for rel, *coords in lines:
        xs, ys = np.array(coords[:5], float), np.array(coords[5:], float)
        side = 2.2 * (xs[1] - xs[0])                 # a face box around the landmarks, about dlib's convention
        cx, cy = xs.mean(), ys.mean()
        images.append(f"<image file='{rel}'><box top='{cy - side / 2:.0f}' left='{cx - side / 2:.0f}' "
                      f"width='{side:.0f}' height='{side:.0f}'/></image>")
    (faces / "boxes.xml").write_text(f"<dataset><images>{''.join(images)}</images></dataset>")
    code = main(["detect", "--bundle", str(bundle), "--boxes", str(faces / "boxes.xml"),
                 "--results", str(tmp_path / "results")])
    assert code == 0
    (result_file,) = (tmp_path / "results" / "host").glob("detect-*.json")
    assert result_file.name == "detect-boxes-tiled-tflite-fp32.json"       # a run at another precision gets its own
    result = json.loads(result_file.read_text())
    assert result["labelled_faces"] == 4 and result["found"] == 4 and result["precision"] == 1.0
    assert "Detection against labelled boxes" in (tmp_path / "results" / "host" / "report.md").read_text()
    # a precision the bundle's detectors do not come in is refused, naming what they do come in
    code = main(["detect", "--bundle", str(bundle), "--boxes", str(faces / "boxes.xml"), "--precision", "int8",
                 "--results", str(tmp_path / "results")])
    assert code == 2 and len(list((tmp_path / "results" / "host").glob("detect-*.json"))) == 1
