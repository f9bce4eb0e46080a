import cv2
import numpy as np
import pytest

from edge.base.errors import UserError
from edge.faces.detect import letterbox, ssd_anchors, weighted_nms
from edge.sources import open_source, source_scheme

pytestmark = pytest.mark.unit


def test_anchor_layout_of_short_range_blazeface():
    anchors = ssd_anchors(128, [8, 16, 16, 16])
    assert anchors.shape == (896, 2)
    np.testing.assert_allclose(anchors[0], [0.5 / 16, 0.5 / 16])
    np.testing.assert_allclose(anchors[1], anchors[0])            # two anchors per 16x16 cell
    np.testing.assert_allclose(anchors[512], [0.5 / 8, 0.5 / 8])  # then six per 8x8 cell
    np.testing.assert_allclose(anchors[517], anchors[512])


def test_full_range_blazeface_entry_decodes_its_own_anchor_layout():
    from edge.faces.packaged_detector import detector_entry
    from edge.runtime.packaged import packaged_model_path

    path = packaged_model_path("blazeface_full")
    entry = detector_entry("blazeface_full", path.name, path)
    assert entry.input.size == (192, 192) and entry.decode.strides == (4,) and entry.decode.anchors_per_layer == 1
    assert [o.shape for o in entry.outputs] == [(1, 2304, 16), (1, 2304, 1)]
    anchors = ssd_anchors(192, entry.decode.strides, entry.decode.anchor_offset, entry.decode.anchors_per_layer)
    assert anchors.shape == (2304, 2)                                # one anchor per cell of a 48x48 grid
    np.testing.assert_allclose(anchors[1] - anchors[0], [1 / 48, 0])


def test_letterbox_keeps_aspect_and_reports_padding():
    canvas, scale, (pad_x, pad_y) = letterbox(np.full((100, 200, 3), 255, np.uint8), 128)
    assert canvas.shape == (128, 128, 3) and scale == pytest.approx(0.64)
    assert pad_x == 0 and pad_y == 32
    assert canvas[0, 0].max() == 0 and canvas[64, 64].min() == 255


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    points = np.zeros((3, 6, 2), np.float32)
    kept = weighted_nms(boxes, points, np.array([0.9, 0.6, 0.8]), 0.3)
    assert len(kept) == 2
    assert 0 < kept[0][0][0] < 1                                   # averaged towards the second box


def test_folder_source_skips_corrupt_images(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((8, 8, 3), i * 40, np.uint8))
    (tmp_path / "3.png").write_bytes(b"not a png")
    with open_source(str(tmp_path)) as source:
        frames = list(source)
        assert [f.index for f in frames] == [0, 1, 2] and source.skipped == 1


def test_video_file_source(tmp_path):
    path = tmp_path / "v.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 24))
    for i in range(5):
        writer.write(np.full((24, 32, 3), i * 50, np.uint8))
    writer.release()
    with open_source(str(path)) as source:
        frames = list(source)
    assert len(frames) == 5 and frames[0].image.shape == (24, 32, 3)


def test_unknown_scheme_and_missing_path():
    with pytest.raises(UserError, match="unknown source scheme 'rtps'"):
        open_source("rtps://camera")
    with pytest.raises(UserError, match="neither an existing file"):
        source_scheme("/no/such/video.mp4")


def test_missing_camera_is_retried_then_refused():
    message = r"gave no frame after 2 attempts \(cannot open: /dev/video99 is not available\)"
    with pytest.raises(UserError, match=message):
        open_source("v4l2:///dev/video99?retries=2&backoff_s=0.01")


def test_source_options_are_checked():
    with pytest.raises(UserError, match="unknown option 'fps_'"):
        open_source("v4l2:///dev/video99?fps_=3")


@pytest.mark.parametrize("uri, why", [
    ("synthetic://kiosk?fps=0", "option fps='0' in synthetic://kiosk[?]fps=0 must be above 0"),
    ("synthetic://kiosk?width=100000&height=100000", "option width='100000' .* must be at most 8192 pixels"),
    ("synthetic://kiosk?seeds=", "option seeds='' .* must be comma-separated whole numbers"),
    ("synthetic://kiosk?seeds=1,,2", "option seeds='1,,2' .* must be comma-separated whole numbers"),
    ("synthetic://kiosk?frames_per_person=-3", "must be a whole number of at least 1, got -3"),
    ("v4l2:///dev/video99?backoff_s=nan", "option backoff_s='nan' .* must be a number above 0"),
    ("v4l2:///dev/video99?retries=0", "option retries='0' .* must be a whole number of at least 1"),
    ("v4l2://door:s3cret@cam/x?width=abc", "option width='abc' in v4l2://door:[*][*][*]@cam/x[?]width=abc must be"),
])
def test_numbers_inside_a_source_uri_follow_the_flags_rules(uri, why):
    """One rule per kind of number, on the command line and inside a URI: each refusal is one line, before any
    frame (or camera) is opened."""
    with pytest.raises(UserError, match=why) as refused:
        with open_source(uri) as source:
            source.read()
    assert "\n" not in str(refused.value) and "s3cret" not in str(refused.value)


def test_ports_are_tcp_ports(capsys):
    from edge.commands.cli import main

    for verb in (["serve", "--bundle", "b"], ["generate", "--bundle", "b", "--serve"]):
        with pytest.raises(SystemExit) as stopped:
            main([*verb, "--port", "99999"])
        assert stopped.value.code == 2
        assert "argument --port: must be a port between 1 and 65535, got 99999" in capsys.readouterr().err


def test_image_lists_follow_symlinked_identity_folders(tmp_path):
    real = tmp_path / "real" / "alice"
    real.mkdir(parents=True)
    cv2.imwrite(str(real / "1.png"), np.zeros((4, 4, 3), np.uint8))
    (tmp_path / "set").mkdir()
    (tmp_path / "set" / "alice").symlink_to(real)
    from edge.base.imageio import list_images
    assert [p.name for p in list_images(tmp_path / "set")] == ["1.png"]

