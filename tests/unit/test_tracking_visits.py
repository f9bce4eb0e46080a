"""Detection strategies, the tracker, the quality gate and one decision per visit, on made-up detections."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from edge.base.errors import UserError
from edge.faces.detect import Detection
from edge.faces.matching import Thresholds
from edge.faces.quality import crop_problem, face_yaw, geometry_problem, sharpness
from edge.faces.scan import (
    Region,
    TiledScan,
    WholeFrame,
    deduplicate,
    region_around,
    scan_turns,
    strategy_detectors,
    tile_regions,
)
from edge.faces.tracking import IouTracker
from edge.kiosk.visits import VisitJudge
from edge.runtime.boards import DetectionConfig, TrackingConfig, load_board

pytestmark = pytest.mark.unit

FPS = 30.0
TRACKING = TrackingConfig(confirm_hits=3, max_missed_s=4 / FPS, samples=4, sample_gap=2)


def face(x: float, y: float, size: float = 60.0, score: float = 0.9) -> Detection:
    """A frontal face box at (x, y) with BlazeFace-ordered key points."""
    box = np.array([x, y, x + size, y + size], np.float32)
    points = np.array([[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size],
                       [x + 0.5 * size, y + 0.6 * size], [x + 0.5 * size, y + 0.8 * size],
                       [x + 0.05 * size, y + 0.45 * size], [x + 0.95 * size, y + 0.45 * size]], np.float32)
    return Detection(box, score, points)


class RecordingDetector:
    """Stands in for a BlazeFace detector: returns the faces lying wholly inside what it is shown."""

    keypoint_names = ("eye_image_left", "eye_image_right", "nose", "mouth", "ear_image_left", "ear_image_right")
    size = 1 << 16         # an input larger than any frame: every look is cut from the frame itself, not a halving

    def __init__(self, faces: list[Detection], origin_of):
        self.faces, self.origin_of, self.calls = faces, origin_of, []

    def _inside(self, image, area_below=1.0):
        x, y = self.origin_of(image)
        height, width = image.shape[:2]
        self.calls.append((x, y, width, height))
        return [f.shifted(-x, -y) for f in self.faces
                if f.box[0] >= x and f.box[1] >= y and f.box[2] <= x + width and f.box[3] <= y + height]

    detect = detect_once = _inside


def frame_and_locator(width: int, height: int):
    """A frame whose pixels encode their own position, so a detector can tell which crop it was given."""
    frame = np.zeros((height, width, 3), np.uint16)
    frame[..., 0] = np.arange(width)[None, :]
    frame[..., 1] = np.arange(height)[:, None]
    return frame, lambda crop: (int(crop[0, 0, 0]), int(crop[0, 0, 1]))


def test_tiles_cover_a_1080p_frame_with_overlap_and_a_small_frame_is_one_region():
    tiles = tile_regions(1920, 1080, 640, 0.25)
    assert len(tiles) == 6
    covered = np.zeros((1080, 1920), bool)
    for t in tiles:
        covered[t.y1:t.y2, t.x1:t.x2] = True
        assert 0 <= t.x1 < t.x2 <= 1920 and 0 <= t.y1 < t.y2 <= 1080
    assert covered.all()
    assert tiles[1].x1 < tiles[0].x2              # neighbours overlap, so a face cut by one lies whole in the other
    assert tile_regions(640, 480, 640, 0.25) == []


def test_region_around_a_face_is_moved_inside_the_frame():
    region = region_around(np.array([5, 5, 45, 45]), 2.5, 640, 360)
    assert region == Region(0, 0, 100, 100)
    edge = region_around(np.array([600, 300, 640, 360]), 2.5, 640, 360)
    assert edge.x2 == 640 and edge.y2 == 360 and edge.x2 - edge.x1 == 150


def test_duplicates_keep_the_best_scoring_box():
    kept = deduplicate([face(10, 10, score=0.6), face(12, 11, score=0.9), face(200, 10)])
    assert [round(d.score, 1) for d in kept] == [0.9, 0.9] and kept[0].box[0] == 12


def test_tiled_scan_visits_every_region_once_per_period_and_looks_around_known_faces():
    frame, locate = frame_and_locator(1920, 1080)
    far = face(1500, 800, size=44)
    short, full = RecordingDetector([far], locate), RecordingDetector([far], locate)
    config = DetectionConfig(strategy="tiled", scan_period=6, tile_period=6)
    scan = TiledScan({"blazeface_short": short, "blazeface_full": full}, config)
    regions = scan.regions(1920, 1080)
    assert len(regions) == 8                       # the whole frame twice (short and full range) and 6 tiles
    seen = []
    elsewhere = np.array([100, 100, 140, 140], np.float32)       # a tracked face, so the scan keeps to its schedule
    for index in range(6):
        short.calls.clear()
        full.calls.clear()
        scan.detect(frame, index, [elsewhere])
        scans = [call for call in short.calls + full.calls if call[2] >= 500]
        seen += scans
        assert len(scans) <= 2                               # spread: no frame scans more than two regions
    assert len(seen) == 8 and len(set(seen)) == 7           # every region once (the whole frame by both)
    short.calls.clear()
    full.calls.clear()
    scan.detect(frame, 1, [])                               # nobody known: the whole frame is looked at now
    assert (0, 0, 1920, 1080) in short.calls
    short.calls.clear()
    found = scan.detect(frame, 1, [far.box])                 # a known face is looked for around where it was
    assert any(w < 300 for _, _, w, _ in short.calls)
    assert len(found) == 1 and np.allclose(found[0].box, far.box)


def test_tiles_take_a_longer_period_than_the_whole_frame_and_the_frames_without_a_whole_frame_look():
    frame, locate = frame_and_locator(1920, 1080)
    short, full = RecordingDetector([], locate), RecordingDetector([], locate)
    scan = TiledScan({"blazeface_short": short, "blazeface_full": full},
                     DetectionConfig(strategy="tiled", scan_period=6, tile_period=12))
    elsewhere = np.array([100, 100, 140, 140], np.float32)
    per_frame = []
    for index in range(12):
        short.calls.clear()
        full.calls.clear()
        scan.detect(frame, index, [elsewhere])
        per_frame.append(([call for call in short.calls if call[2:] == (1920, 1080)],
                          [call for call in full.calls if call[2:] == (1920, 1080)],
                          [call for call in full.calls if call[2] == 800]))
    assert [len(whole) for whole, _, _ in per_frame] == [1, 0, 0, 0, 0, 0] * 2        # every scan_period frames
    assert sum(len(whole) for _, whole, _ in per_frame) == 2
    tiles = [tile for _, _, frame_tiles in per_frame for tile in frame_tiles]
    assert len(tiles) == len(set(tiles)) == 6                                          # each once in tile_period
    assert all(len(whole_full) + len(frame_tiles) <= 1 for _, whole_full, frame_tiles in per_frame)
    assert scan_turns(2, 6, 6, 6)[2:] == [(6, frame) for frame in range(6)]           # too few free frames: all


def test_a_tile_whose_pixels_did_not_move_skips_its_turn_until_its_rescan_and_a_change_brings_it_back():
    frame, locate = frame_and_locator(1920, 1080)
    short, full = RecordingDetector([], locate), RecordingDetector([], locate)
    scan = TiledScan({"blazeface_short": short, "blazeface_full": full},
                     DetectionConfig(strategy="tiled", scan_period=8, tile_period=8, tile_rescan=3))
    tiles = [region for region, _ in scan.regions(1920, 1080)[2:]]
    elsewhere = np.array([100, 100, 140, 140], np.float32)

    def scans(image, turn):
        """(tiles scanned, whole-frame looks) over one turn of the scan."""
        short.calls.clear()
        full.calls.clear()
        for index in range(8 * turn, 8 * turn + 8):
            scan.detect(image, index, [elsewhere])
        looks = short.calls + full.calls
        return sum(call[2] == 800 for call in looks), sum(call[2:] == (1920, 1080) for call in looks)

    assert scans(frame, 0) == (6, 2)                       # the first turn scans every tile
    assert scans(frame, 1) == (0, 2) and scan.skipped == 6       # nothing moved: every tile skips, the whole frame not
    moved = frame.copy()
    moved[tiles[0].y1 + 50:tiles[0].y1 + 250, tiles[0].x1 + 50:tiles[0].x1 + 150] = 0     # someone walked in
    assert scans(moved, 2) == (1, 2)                       # only the tile where pixels moved
    assert scans(moved, 3) == (5, 2)                       # the others' third turn: scanned however still
    full.calls.clear()
    scan.detect_arrivals_now(moved, 8 * 4 + 2, [elsewhere])        # anonymisation scans every turn
    assert [call[2] for call in full.calls] == [800]


def test_whole_frame_strategy_and_the_detectors_each_strategy_needs():
    assert strategy_detectors(DetectionConfig()) == ["blazeface_short"]
    assert strategy_detectors(DetectionConfig(strategy="tiled")) == ["blazeface_short", "blazeface_full"]
    frame, locate = frame_and_locator(640, 360)
    detector = RecordingDetector([face(100, 100)], locate)
    assert len(WholeFrame({"blazeface_short": detector}, DetectionConfig()).detect(frame, 0, [])) == 1


def test_a_walking_face_keeps_one_track_and_its_visit_ends_after_max_missed_s():
    tracker = IouTracker(TRACKING)
    ids = set()
    for step in range(10):
        update = tracker.update([face(100 + 4 * step, 100)], step, step / FPS)
        ids.update(t.id for t in update.live)
    (track,) = tracker.tracks
    assert ids == {track.id} and track.confirmed and track.velocity[0] == pytest.approx(4, abs=0.5)
    ended = []
    for step in range(10, 14):                                    # 4 frames (max_missed_s) without the face
        ended += tracker.update([], step, step / FPS).ended
    assert ended == [] and tracker.tracks == [track]
    assert [t.id for t in tracker.update([], 14, 14 / FPS).ended] == [track.id] and tracker.tracks == []


def test_a_steady_face_is_looked_for_in_one_frame_of_steady_every_and_a_swerving_one_in_every_frame():
    """Still (1 px a frame) and walking at an even pace (20 px, a third of its width): both are steady, looked for
    in one frame of three, their boxes carried by their motion in between; one that swerves (20 px one way, then
    the other) is looked for in every frame."""
    tracker = IouTracker(replace(TRACKING, steady_every=3, steady_motion=0.1))
    looked, shown = {"still": [], "walking": []}, {"still": [], "walking": []}
    for step in range(12):
        boxes, resting = tracker.plan(step)
        found = {"still": face(100 + step, 100), "walking": face(300 + 20 * step, 100),
                 "swerving": face(700 + 20 * (step % 2), 100)}
        # found where it was looked for: the region around a 60 px face reaches 45 px beyond its box
        seen = [f for f in found.values() if any(np.abs(f.box - b).max() < 45 for b in boxes) or step < 1]
        update = tracker.update(seen, step, step / FPS, resting)
        assert max(t.missed for t in update.live) == 0                  # a resting face is not a missed one
        for name in looked:
            track = min(update.live, key=lambda t: abs(t.shown_box()[0] - found[name].box[0]))
            looked[name].append(track.detection is not None)
            shown[name].append(float(track.shown_box()[0]))
    for name, start in (("still", 100), ("walking", 300)):
        assert looked[name][:4] == [True] * 4            # confirmed, then its motion measured past the confirming
        assert all(looked[name][i:i + 3].count(True) == 1 for i in range(6, 10))      # then one frame in three
        pace, tolerance = (1, 0.6) if name == "still" else (20, 3.0)     # its smoothed velocity still converging
        assert shown[name] == pytest.approx([start + pace * step for step in range(12)], abs=tolerance)
    swerving = max(tracker.tracks, key=lambda t: t.box[0])
    assert swerving.rested == 0 and swerving.hits == 12                # looked for, and found, in every frame
    assert len(tracker.tracks) == 3                                    # none lost a frame


def test_looks_are_cut_from_the_frame_pyramid_and_land_where_the_frame_itself_puts_the_face(shared_data):
    """The stage clip at three times its size: the short-range model on the whole frame (a level of the frame's
    pyramid, 240 px wide) and on the region around the face (a finer level) finds the faces the packaged
    detector finds on the clip itself, at three times the coordinates."""
    from edge.faces.packaged_detector import load_packaged_detector
    from edge.faces.scan import FramePyramid
    from edge.sources import open_source

    detector = load_packaged_detector()
    with open_source(str(shared_data / "video" / "stage_clip_360p.mp4")) as source:
        small = [frame.image for frame in source][100]          # the performer, 98 px high
    large = cv2.resize(small, None, fx=3, fy=3, interpolation=cv2.INTER_LINEAR)
    truth = max(detector.detect(small), key=lambda d: d.score)
    pyramid = FramePyramid(large)
    crop, factor, x, y = pyramid.region(Region(0, 0, 1920, 1080), 128)
    assert (factor, crop.shape[:2], x, y) == (8, (135, 240), 0, 0) and len(pyramid.levels) == 4
    whole = WholeFrame({"blazeface_short": detector}, DetectionConfig()).detect(large, 0, [])
    nothing_due = DetectionConfig(strategy="tiled", scan_period=10**6, tile_period=10**6)
    near = TiledScan({"blazeface_short": detector, "blazeface_full": detector}, nothing_due).detect(
        large, 1, [truth.box * 3])
    tolerance = 0.08 * float(truth.box[3] - truth.box[1])      # what a model's boxes move between two looks
    for found in (whole, near):
        best = max(found, key=lambda d: d.score)
        assert np.abs(best.box / 3 - truth.box).max() < tolerance            # in the clip's pixels
        assert np.abs((best.keypoints + 0.5) / 3 - 0.5 - truth.keypoints).max() < tolerance


def test_a_face_that_sways_further_than_its_motion_carried_it_while_resting_keeps_its_track():
    """A head swaying back and forth: after two frames at rest its prediction (the motion carried on) lies past
    the face, overlapping it too little for the usual match; the face, found near where it was expected, continues
    its track instead of starting a second one on the same face."""
    tracker = IouTracker(replace(TRACKING, steady_every=3, steady_motion=0.5))
    xs = [100, 103, 106, 109, 112, 115, 118, 121, 100, 80, 60, 40]         # steady, then back the other way
    ids, rests = set(), 0
    for step, x in enumerate(xs):
        boxes, resting = tracker.plan(step)
        rests += len(resting)
        seen = [] if resting else [face(x, 100)]        # a resting face is not looked for
        update = tracker.update(seen, step, step / FPS, resting)
        ids.update(t.id for t in update.live)
    assert rests >= 2 and len(ids) == 1 and len(tracker.tracks) == 1


@pytest.mark.parametrize("outage_s", [1.0, 4.0, 20.0])
def test_a_visit_never_spans_a_camera_outage_even_with_a_face_at_the_same_place(outage_s):
    """Frames are counted in the camera's time: after an outage the face in the same place is a new visit."""
    tracker = IouTracker(TRACKING)
    for step in range(5):
        tracker.update([face(100, 100)], step, step / FPS)
    (before,) = tracker.tracks
    resumed = 4 / FPS + outage_s                                  # the next frame comes after the outage
    update = tracker.update([face(100, 100)], 5, resumed)        # the very next frame index: counting frames
    assert [t.id for t in update.ended] == [before.id]           # would have continued the visit
    (after,) = tracker.tracks
    assert after.id != before.id and not after.confirmed


def test_a_brief_false_detection_never_becomes_a_visit_and_two_faces_keep_their_ids():
    tracker = IouTracker(TRACKING)
    tracker.update([face(500, 500)], 0, 0.0)
    assert tracker.update([], 1, 1 / FPS).ended == [] and tracker.tracks == []
    for step in range(6):
        tracker.update([face(100 + 5 * step, 100), face(300 - 5 * step, 100)], step, step / FPS)
    left, right = sorted(tracker.tracks, key=lambda t: t.box[0])
    assert left.id != right.id and left.velocity[0] > 0 > right.velocity[0]
    old = left.id
    assert tracker.split(left, 6) not in (old, right.id) and left.first_frame == 6    # someone else: a new visit
    assert tracker.finish() and tracker.tracks == []


def judge(gallery: dict[str, np.ndarray], config: TrackingConfig = TRACKING) -> VisitJudge:
    names = list(gallery)
    matrix = np.stack([gallery[n] / np.linalg.norm(gallery[n]) for n in names])

    def closest(embedding):
        scores = matrix @ embedding
        return names[int(np.argmax(scores))], float(scores.max())

    def identity_score(embedding, name):
        return float(matrix[names.index(name)] @ (embedding / np.linalg.norm(embedding)))
    return VisitJudge(config, Thresholds(match=0.8, unknown=0.4, same_person=0.8), closest, identity_score)


def test_a_visit_is_named_after_two_clear_looks_and_decided_only_once():
    alice = np.array([1.0, 0, 0, 0])
    visits = judge({"alice": alice, "bob": np.array([0, 1.0, 0, 0])})
    assert visits.wants_sample(7, 10)
    assert visits.add_sample(7, 10, 10 / FPS, alice + 0.1, [0, 0, 1, 1]) is None        # one look is not enough
    assert not visits.wants_sample(7, 11)                                         # sample_gap frames between looks
    decision = visits.add_sample(7, 12, 12 / FPS, alice, [0, 0, 1, 1])
    assert decision.outcome == "named" and decision.identity == "alice" and decision.samples == 2
    assert not visits.wants_sample(7, 20)
    assert visits.end(7, 30, [0, 0, 1, 1]) is None                               # already decided


def test_a_stranger_is_unknown_and_an_unclear_visit_is_undecided_with_its_reason():
    alice = np.array([1.0, 0, 0, 0])
    visits = judge({"alice": alice})
    visits.add_sample(1, 0, 0 / FPS, np.array([0, 0, 1.0, 0]), [0, 0, 1, 1])
    assert visits.add_sample(1, 2, 2 / FPS, np.array([0, 0, 0, 1.0]), [0, 0, 1, 1]).outcome == "unknown"
    between = np.array([0.6, 0.8, 0, 0])                                          # cosine 0.6 to alice
    for frame in (0, 2, 4):
        assert visits.add_sample(2, frame, frame / FPS, between, [0, 0, 1, 1]) is None
    decision = visits.add_sample(2, 6, 6 / FPS, between, [0, 0, 1, 1])                    # the fourth and last look
    assert decision.outcome == "undecided" and "between" in decision.reason and decision.identity is None
    visits.reject(3, 0, "turned")
    visits.reject(3, 2, "turned")
    visits.reject(3, 4, "small")
    ended = visits.end(3, 9, [0, 0, 1, 1])
    assert ended.outcome == "undecided" and ended.reason == "no face good enough to judge (turned 2, small 1)"


def test_quality_gate_measures_yaw_size_and_sharpness():
    frontal = face(100, 100, size=80)
    assert face_yaw(frontal.keypoints) == pytest.approx(0, abs=1e-6)
    turned = replace(frontal, keypoints=frontal.keypoints + np.array([[0, 0], [0, 0], [20, 0], [0, 0], [0, 0],
                                                                      [0, 0]], np.float32))
    assert face_yaw(turned.keypoints) == pytest.approx(0.625, abs=1e-3)
    assert geometry_problem(turned, TRACKING) == "turned"
    assert geometry_problem(face(0, 0, size=30), TRACKING) == "small"
    assert geometry_problem(frontal, TRACKING) is None
    rng = np.random.default_rng(0)
    sharp = cv2.resize(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8), (150, 150), interpolation=cv2.INTER_NEAREST)
    blurred = cv2.GaussianBlur(sharp, (0, 0), 10)
    assert sharpness(sharp) > 5 * sharpness(blurred)
    assert crop_problem(sharp, TRACKING) is None and crop_problem(blurred, TRACKING) == "blurred"


@pytest.mark.parametrize("change, message", [
    ("detection: {strategy: tiles}", "detection.strategy: unknown detection strategy 'tiles' (did you mean 'tiled'?)"),
    ("tracking: {tracker: sort}", "tracking.tracker: unknown tracker 'sort'"),
    ("detection: {tile_detector: yolo}", "detection.tile_detector: unknown detector 'yolo'"),
    ("tracking: {unknown_far: 2}", "tracking.unknown_far must be between 0 and 1"),
    ("detection: {scan_period: 0}", "detection.scan_period must be positive"),
    ("detection: {tile_period: -1}", "detection.tile_period must be positive"),
    ("liveness: {still_looks: -1}", "liveness.still_looks must be 0 (every face must move) up to liveness.max_looks"),
    ("liveness: {max_looks: 8, still_looks: 9}", "liveness.still_looks must be 0 (every face must move) up to"),
])
def test_a_bad_stream_setting_in_a_board_config_is_one_clear_line(tmp_path, change, message):
    from edge.base.paths import BOARD_DIR

    text = (BOARD_DIR / "host.yaml").read_text()
    blocks = ("detection:", "tracking:", "liveness:", " ")
    text = "\n".join(line for line in text.splitlines() if not line.startswith(blocks))
    path = tmp_path / "board.yaml"
    path.write_text(text + "\n" + change + "\n")
    with pytest.raises(UserError, match=None) as caught:
        load_board(path)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_swept_liveness_setting_replaces_the_boards_and_is_checked_as_a_board_configs_are():
    from edge.runtime.boards import with_liveness

    board = load_board("host")
    swept = with_liveness(board, {"planar_parallax": 0.01, "still_looks": 0}, "--sweep")
    assert (swept.liveness.planar_parallax, swept.liveness.still_looks) == (0.01, 0)
    assert swept.liveness.checks == board.liveness.checks and swept.tracking == board.tracking
    assert board.liveness.planar_parallax == 0.0125                    # the loaded config is left as it was
    assert with_liveness(board, {"planar_parallax": 1}, "--sweep").liveness.planar_parallax == 1.0
    for settings, message in [({"planar_paralax": 0.01}, "--sweep: liveness: unknown key 'planar_paralax'; valid"),
                              ({"still_looks": 0.5}, "key 'still_looks' must be of type int, got float 0.5"),
                              ({"still_looks": 40}, "--sweep: liveness.still_looks must be 0 (every face must move)"),
                              ({"planar_parallax": 0}, "--sweep: liveness.planar_parallax must be positive")]:
        with pytest.raises(UserError) as caught:
            with_liveness(board, settings, "--sweep")
        assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_visit_is_named_only_if_every_look_alone_matches_the_identity():
    alice = np.array([1.0, 0, 0, 0])
    visits = judge({"alice": alice})
    stranger = np.array([0.6, 0.8, 0, 0])                     # cosine 0.6 to alice, below same_person (0.8)
    visits.add_sample(1, 0, 0.0, alice, [0, 0, 1, 1])
    decision = visits.add_sample(1, 2, 2 / FPS, stranger, [0, 0, 1, 1])   # the mean still scores 0.89 to alice
    assert decision.outcome == "undecided" and decision.identity is None and decision.best_match == "alice"
    assert "look 2 of 2 scores 0.6000 against alice" in decision.reason and "not one person" in decision.reason


def test_a_visit_cut_short_is_decided_on_its_looks_and_marked_interrupted():
    alice = np.array([1.0, 0, 0, 0])
    visits = judge({"alice": alice})
    visits.add_sample(4, 3, 3 / FPS, alice, [0, 0, 1, 1])
    decision = visits.end(4, 5, [0, 0, 1, 1], interrupted="the camera stopped delivering frames")
    assert decision.outcome == "named" and decision.interrupted and decision.look_time_s == pytest.approx(0.1)
    assert decision.reason.startswith("the camera stopped delivering frames; visit ended after 1 looks")
    visits.reject(6, 0, "turned")
    cut = visits.end(6, 2, [0, 0, 1, 1], interrupted="the kiosk stopped")
    assert cut.outcome == "undecided" and cut.interrupted == "the kiosk stopped" and cut.look_time_s is None


def test_a_visit_that_ends_with_looks_is_decided_on_them():
    alice = np.array([1.0, 0, 0, 0])
    visits = judge({"alice": alice})
    visits.add_sample(5, 0, 0 / FPS, alice, [0, 0, 1, 1])                       # one look, then the visit ends
    assert visits.mean_embedding(5) is not None
    decision = visits.end(5, 20, [0, 0, 1, 1])
    assert decision.outcome == "named" and decision.reason.startswith("visit ended after 1 looks")
    assert visits.mean_embedding(5) is None


def test_a_detector_the_runtime_does_not_know_is_refused_in_one_line(detector_bundle):
    import json

    from edge.faces.detect import build_detector
    from edge.faces.scan import load_detectors
    from edge.runtime.backends.base import BackendOptions
    from edge.runtime.manifest import read_manifest
    from edge.runtime.models import load_model

    bundle = detector_bundle()
    manifest_file = bundle / "manifest.json"
    manifest = json.loads(manifest_file.read_text())
    manifest["models"][0]["architecture"] = "retinaface"
    manifest_file.write_text(json.dumps(manifest))
    entry = read_manifest(bundle).models[0]
    with pytest.raises(UserError, match=r"unknown detector architecture 'retinaface'; valid: blazeface_full, "
                                        r"blazeface_short"):
        build_detector(load_model(bundle, entry, "tflite", BackendOptions(threads=1)))
    with pytest.raises(UserError, match="the bundle has no blazeface_short detect model .board host needs it.; "
                                        "recompile it with python -m compile --target host"):
        load_detectors(bundle, read_manifest(bundle), load_board("host"), BackendOptions(threads=1))


def test_a_group_photo_is_refused_for_enrolment_and_a_small_background_face_is_not_counted():
    from edge.faces.dataprep import enrolment_face

    assert enrolment_face([]) == (None, "no face found")
    assert enrolment_face([face(0, 0, 100), face(200, 0, 90)]) == (None, "2 faces: use a photo of this person alone")
    chosen, why = enrolment_face([face(0, 0, 100), face(300, 0, 30)])
    assert why is None and chosen.box[2] == 100
