"""Liveness: fusing the checks' verdicts, holding a visit's decision for its verdict, the head-pose challenge, and
the planar check on image points that move as a plane or do not."""
import random

import cv2
import numpy as np
import pytest

from edge.faces.detect import Detection
from edge.faces.planarity import FollowedPair, LookPair
from edge.liveness import planar
from edge.liveness.challenge import REQUESTS, Challenge, head_pose
from edge.liveness.checks import CheckResult, Look
from edge.liveness.gate import TURN_REQUEST, LivenessGate, fuse
from edge.liveness.planar import LONGER_FROM, PAIR_SPAN_S, STILL_MOTION, PlanarCheck
from edge.runtime.boards import LivenessConfig

pytestmark = pytest.mark.unit
FACE = np.array([[40.0, 50.0], [80.0, 50.0], [60.0, 72.0], [60.0, 92.0]])     # eye, eye, nose, mouth


def test_any_attack_is_an_attack_every_live_is_live_and_anything_else_is_insufficient():
    live, attack, unsure = (CheckResult(v, 0.5) for v in ("live", "attack", "insufficient"))
    assert fuse({"planar": live, "texture": attack}).verdict == "attack"
    assert fuse({"planar": live, "texture": live}).verdict == "live"
    fused = fuse({"planar": unsure, "texture": live})
    assert fused.verdict == "insufficient" and fused.score == 0.5
    assert fused.record()["checks"]["texture"] == {"verdict": "live", "score": 0.5}
    assert fuse({}).verdict == "insufficient"


def test_a_check_live_alone_stands_in_for_a_want_of_movement_and_for_nothing_else():
    alone, sure = CheckResult("live", 0.999, alone=True), CheckResult("live", 0.9)
    unmoved, moved = CheckResult("insufficient", 0.004, unmoved=True), CheckResult("insufficient", 0.004)
    assert fuse({"planar": unmoved, "texture": alone}).verdict == "live"
    assert fuse({"planar": unmoved, "texture": sure}).verdict == "insufficient"        # live, but not alone
    assert fuse({"planar": moved, "texture": alone}).verdict == "insufficient"         # moved as a picture does
    asked = CheckResult("insufficient", 0.0)                                           # a challenge not yet followed
    assert fuse({"planar": unmoved, "texture": alone, "challenge": asked}).verdict == "insufficient"
    assert fuse({"planar": CheckResult("attack", 0.0), "texture": alone}).verdict == "attack"
    assert fuse({"planar": unmoved, "texture": alone}).stood_in == "unmoved"
    assert fuse({"planar": CheckResult("live", 0.02), "texture": alone}).stood_in == ""     # no one stood in


def test_a_check_sure_of_every_look_stands_in_for_one_that_came_near_live():
    sure, unsure = CheckResult("live", 0.999, sure=True), CheckResult("live", 0.9)
    near, far = CheckResult("insufficient", 0.01, near=True), CheckResult("insufficient", 0.004, unmoved=True)
    fused = fuse({"planar": near, "texture": sure})
    assert fused.verdict == "live" and fused.stood_in == "near" and fused.record()["stood_in"] == "near"
    assert fuse({"planar": near, "texture": unsure}).verdict == "insufficient"     # live, not sure of every look
    assert fuse({"planar": far, "texture": sure}).verdict == "insufficient"        # sure, but not alone: too few looks
    asked = CheckResult("insufficient", 0.0)
    assert fuse({"planar": near, "texture": sure, "challenge": asked}).verdict == "insufficient"
    assert fuse({"planar": near, "texture": CheckResult("attack", 0.05)}).verdict == "attack"
    assert "stood_in" not in fuse({"planar": far, "texture": unsure}).record()


def test_any_check_live_stands_in_for_one_that_came_near_live_twice_apart():
    live, near = CheckResult("live", 0.6), CheckResult("insufficient", 0.01, near=True)
    twice = CheckResult("insufficient", 0.011, near=True, near_twice=True)
    fused = fuse({"planar": twice, "texture": live})
    assert fused.verdict == "live" and fused.record()["stood_in"] == "near_twice"
    assert fuse({"planar": near, "texture": live}).verdict == "insufficient"       # near once: texture must be sure
    assert fuse({"planar": twice}).verdict == "insufficient"                        # nothing live to stand in
    assert fuse({"planar": twice, "texture": CheckResult("attack", 0.05)}).verdict == "attack"
    asked = CheckResult("insufficient", 0.0)
    assert fuse({"planar": twice, "texture": live, "challenge": asked}).verdict == "insufficient"
    sure = CheckResult("live", 0.999, sure=True)
    assert fuse({"planar": twice, "texture": sure}).stood_in == "near"            # the stronger route names it


class Scripted:
    """A check whose verdict is whatever the test says, counting the looks it observed."""

    name = "scripted"

    def __init__(self):
        self.verdict, self.closed = "insufficient", False

    def observe(self, look):
        return look.frame

    def judge(self, observed):
        return CheckResult(self.verdict, float(len(observed)), {"looks": len(observed)})

    def close(self):
        self.closed = True


def look(frame, time_s, keypoints=FACE):
    detection = Detection(np.array([30.0, 30.0, 90.0, 100.0]), 0.9, np.asarray(keypoints, np.float32))
    return Look(np.zeros((8, 8, 3), np.uint8), detection, time_s, frame)


def test_a_decision_waits_for_its_visits_verdict_and_at_most_the_wait_then_goes_as_insufficient():
    check = Scripted()
    gate = LivenessGate([check], LivenessConfig(max_wait_s=3.0, look_gap=2))
    assert gate.wants_look(1, 0)
    gate.look(1, look(0, 0.0))
    assert not gate.wants_look(1, 1) and gate.wants_look(1, 2)
    gate.hold(1, "decision of 1", 0.0)
    assert gate.release(1.0) == [] and gate.requests() == {1: TURN_REQUEST}
    released = gate.release(3.0)
    assert [(r.decision, r.verdict.verdict, r.newest_look_s) for r in released] == [
        ("decision of 1", "insufficient", 0.0)]
    # a visit that settles live is released at once, and takes no more looks
    gate.look(2, look(4, 4.0))
    gate.hold(2, "decision of 2", 4.0)
    check.verdict = "live"
    gate.look(2, look(6, 4.2))
    assert not gate.wants_look(2, 100)
    assert [(r.decision, r.verdict.verdict) for r in gate.release(4.2)] == [("decision of 2", "live")]
    # a visit that ends releases what it holds with the verdict it has, and is forgotten
    check.verdict = "insufficient"
    gate.hold(3, "decision of 3", 5.0)
    assert [(r.decision, r.verdict.verdict) for r in gate.end(3)] == [("decision of 3", "insufficient")]
    assert 3 not in gate.visits and gate.end(3) == []
    gate.close()
    assert check.closed


def test_the_gate_counts_each_checks_time_on_looks_and_not_on_verdicts_read_between_them():
    import time

    class Slow(Scripted):
        name = "slow"

        def observe(self, look):
            time.sleep(0.003)
            return look.frame

        def judge(self, observed):
            time.sleep(0.002)
            return super().judge(observed)

    gate = LivenessGate([Slow(), Scripted()], LivenessConfig(max_wait_s=3.0, look_gap=1))
    for frame in range(3):
        gate.look(1, look(frame, frame / 30))
    spent = dict(gate.check_s)
    assert set(spent) == {"slow", "scripted"} and spent["slow"] >= 3 * 0.005 > spent["scripted"]
    gate.verdict(1)                                   # read between looks: no look's time
    assert gate.check_s == spent


def test_a_live_verdict_is_vouched_for_before_it_settles_and_a_look_of_someone_else_makes_it_final_and_not_live():
    check, asked = Scripted(), []
    gate = LivenessGate([check], LivenessConfig(max_wait_s=3.0, look_gap=2))

    def vouch(reason):
        return lambda: asked.append(reason) or reason

    assert gate.look(1, look(0, 0.0), vouch("")) == "" and asked == []      # nothing would settle: nobody asked
    check.verdict = "live"
    assert gate.look(1, look(2, 0.1), vouch("")) == "" and gate.verdict(1).verdict == "live"
    gate.hold(2, "decision of 2", 0.0)
    assert gate.look(2, look(2, 0.1), vouch("a look of someone else")) == "a look of someone else"
    assert asked == ["", "a look of someone else"] and not gate.wants_look(2, 100)
    (released,) = gate.end(2)
    assert released.verdict.verdict == "insufficient" and released.verdict.record()["stray"] == "a look of someone else"


def test_a_decision_released_insufficient_goes_out_again_if_its_verdict_settles_within_its_second_chance():
    check = Scripted()
    gate = LivenessGate([check], LivenessConfig(max_wait_s=1.0, retry_s=5.0, look_gap=1))
    gate.look(1, look(0, 0.0))
    gate.hold(1, "may retry", 0.0, retry=True)
    gate.look(2, look(0, 0.0))
    gate.hold(2, "once only", 0.0)
    assert [(r.decision, r.verdict.verdict, r.again) for r in gate.release(1.0)] == [
        ("may retry", "insufficient", False), ("once only", "insufficient", False)]
    assert gate.requests() == {1: TURN_REQUEST}             # the page asks the one with a second chance to turn
    check.verdict = "live"
    gate.look(1, look(30, 3.0))
    gate.look(2, look(30, 3.0))
    assert [(r.decision, r.verdict.verdict, r.again, r.newest_look_s) for r in gate.release(3.0)] == [
        ("may retry", "live", True, 3.0)]
    assert gate.release(3.1) == [] and gate.requests() == {}
    # past its second chance, a verdict that settles releases nothing
    check.verdict = "insufficient"
    gate.look(3, look(40, 10.0))
    gate.hold(3, "too late", 10.0, retry=True)
    assert [r.again for r in gate.release(11.0)] == [False]
    check.verdict = "attack"
    gate.look(3, look(50, 16.5))
    assert gate.release(16.5) == [] and gate.end(3) == []


def test_a_decision_that_opens_no_door_goes_out_at_once_with_the_verdict_so_far_and_its_visit_looks_no_more():
    check = Scripted()
    gate = LivenessGate([check], LivenessConfig(max_wait_s=3.0, look_gap=1))
    check.verdict = "attack"
    gate.look(1, look(0, 0.0))
    released = gate.release_now(1, "a stranger's")
    assert (released.decision, released.verdict.verdict, released.newest_look_s) == ("a stranger's", "attack", 0.0)
    assert not gate.wants_look(1, 5) and gate.release(10.0) == [] and gate.requests() == {}
    check.verdict = "insufficient"
    released = gate.release_now(2, "no look yet")                      # decided before its first look
    assert released.verdict.verdict == "insufficient" and released.newest_look_s is None
    assert not gate.wants_look(2, 5)


def test_head_pose_is_kept_by_any_flat_picture_and_changed_by_a_turning_head():
    pose = head_pose(FACE, 0.0)
    rng = np.random.default_rng(1)
    for _ in range(20):            # a photo moved, turned, scaled, sheared: an affine map of its points
        matrix = np.column_stack([np.eye(2) + rng.uniform(-0.4, 0.4, (2, 2)), rng.uniform(-50, 50, 2)])
        moved = head_pose(FACE @ matrix[:, :2].T + matrix[:, 2], 1.0)
        assert abs(moved.turn - pose.turn) < 1e-9 and abs(moved.lift - pose.lift) < 1e-9
    # a head: eyes and mouth on the face, the nose tip 20 px in front of it, turned 25 degrees about the vertical
    face_3d = np.column_stack([FACE - [60, 70], [0, 0, -20, 0]])
    angle = np.radians(25)
    turned = face_3d @ np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    after = head_pose(turned[:, :2] + [60, 70], 1.0)
    assert abs(after.turn - pose.turn) > 0.2
    assert head_pose(np.zeros((4, 2)), 0.0) is None


def turning(degrees: float) -> np.ndarray:
    """FACE's key points with its nose tip 20 px in front, the head turned ``degrees`` to its left."""
    face_3d = np.column_stack([FACE - [60, 70], [0, 0, -20, 0]])
    angle = np.radians(-degrees)
    rotation = np.array([[np.cos(angle), 0, -np.sin(angle)], [0, 1, 0], [np.sin(angle), 0, np.cos(angle)]])
    return (face_3d @ rotation)[:, :2] + [60, 70]


def test_the_challenge_passes_a_head_that_follows_in_time_and_nothing_else():
    request = "turn your head to your left"
    assert REQUESTS[request] == ("turn", 1.0)
    challenge = Challenge(0.25, 6.0, random.Random(0))
    challenge.request = request
    still = [challenge.observe(look(i, i * 0.1)) for i in range(5)]
    assert challenge.judge(still).verdict == "insufficient"
    followed = still + [challenge.observe(look(5 + i, 0.5 + i * 0.1, turning(5 * i))) for i in range(1, 9)]
    result = challenge.judge(followed)
    assert result.verdict == "live" and result.evidence["followed"] >= 0.25
    wrong_way = still + [challenge.observe(look(5 + i, 0.5 + i * 0.1, turning(-5 * i))) for i in range(1, 9)]
    assert challenge.judge(wrong_way).verdict == "insufficient"
    late = still + [challenge.observe(look(99, 7.0, turning(30)))]
    result = challenge.judge(late)
    assert result.verdict == "insufficient" and "within 6 s" in result.evidence["why"]
    challenge.stray = "a look of someone else"
    assert challenge.judge(followed).verdict == "attack"


def test_the_challenge_is_measured_from_where_the_head_first_held_still_not_from_scattered_first_poses():
    """A glare over a replayed photo scatters its first key points; its leaving is no head turn."""
    challenge = Challenge(0.25, 6.0, random.Random(0))
    challenge.request = "turn your head to your left"
    glare = [challenge.observe(look(i, i * 0.1, turning(degrees))) for i, degrees in enumerate((-45, -15, -30))]
    settled = [challenge.observe(look(3 + i, 0.3 + i * 0.1, turning(0))) for i in range(5)]
    assert challenge.judge(glare + settled).verdict == "insufficient"
    scattered = glare + [challenge.observe(look(3, 0.3, turning(10)))]
    assert challenge.judge(scattered).evidence["why"] == "the head never held still to start from"
    then_turned = glare + settled + [challenge.observe(look(8 + i, 0.8 + i * 0.1, turning(30))) for i in range(2)]
    assert challenge.judge(then_turned).verdict == "live"


def test_the_gate_shows_each_visits_challenge_until_it_settles():
    gate = LivenessGate([], LivenessConfig(challenge_s=6.0, max_wait_s=3.0), challenge=True, rng=random.Random(3))
    assert gate.wait_s == 6.0 and gate.names == ["challenge"]
    gate.look(7, look(0, 0.0))
    request = gate.requests()[7]
    assert request in REQUESTS and gate.challenged(7).request == request


def textured(size=(240, 320), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.resize(rng.uniform(0, 255, (size[0] // 6, size[1] // 6)).astype(np.float32), size[::-1])
    return cv2.cvtColor(np.clip(noise, 0, 255).astype(np.uint8), cv2.COLOR_GRAY2BGR)


def planar_looks(frames: list[np.ndarray], box) -> list:
    check = PlanarCheck(type("Context", (), {"board": type("Board", (), {"liveness": LivenessConfig()})})())
    detection = Detection(np.asarray(box, np.float32), 0.9, np.zeros((6, 2), np.float32))
    # two looks per pair span, as at 30 fps with look_gap 4
    return check, [check.observe(Look(frame, detection, i * PAIR_SPAN_S / 2, i)) for i, frame in enumerate(frames)]


def held_tilting(picture: np.ndarray, most_px: float) -> list[np.ndarray]:
    """Ten frames of ``picture`` held ever more tilted, its corners moved by up to ``most_px``."""
    height, width = picture.shape[:2]
    corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    tilts = [corners + np.float32([[t, t / 2], [-t, 0], [-t / 2, 0], [t, -t / 3]])
             for t in np.linspace(0, most_px, 10)]
    return [cv2.warpPerspective(picture, cv2.getPerspectiveTransform(corners, tilt), (width, height),
                                borderMode=cv2.BORDER_REPLICATE) for tilt in tilts]


def test_planar_finds_no_parallax_on_a_tilting_picture_and_finds_it_where_parts_move_apart():
    picture = textured()
    height, width = picture.shape[:2]
    check, observed = planar_looks(held_tilting(picture, 80), [100, 60, 220, 180])
    flat = check.judge(observed)
    assert flat.verdict == "insufficient" and flat.evidence["pairs"] >= 4 and flat.evidence["motion"] > 0.01
    assert flat.evidence["parallax"] < 0.3 * check.threshold
    # the middle of the "face" slides against its rim, more with each look, as a turning head's nose and middle
    # move against the cheeks and jaw
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    bump = np.exp(-((grid_x - 160) ** 2 + (grid_y - 120) ** 2) / (2 * 45.0 ** 2))
    moving = [cv2.remap(picture, grid_x - 8.0 * step * bump, grid_y, cv2.INTER_LINEAR) for step in range(10)]
    check, observed = planar_looks(moving, [100, 60, 220, 180])
    result = check.judge(observed)
    assert result.verdict == "live" and result.score >= check.threshold


def test_planar_measures_a_pair_that_comes_close_again_over_the_longer_span(monkeypatch):
    """A head turning slowly: each quarter second shows most of the threshold, half a second all of it."""
    picture = textured()
    height, width = picture.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    bump = np.exp(-((grid_x - 160) ** 2 + (grid_y - 120) ** 2) / (2 * 45.0 ** 2))
    slow = [cv2.remap(picture, grid_x - shift * bump, grid_y, cv2.INTER_LINEAR) for shift in (0, 4, 8, 12, 16, 20)]
    check, observed = planar_looks(slow, [100, 60, 220, 180])
    result = check.judge(observed)
    assert result.verdict == "live" and result.score >= check.threshold
    monkeypatch.setattr(planar, "LONGER_FROM", 2.0)              # never measured again: one span falls short
    check, observed = planar_looks(slow, [100, 60, 220, 180])
    short = check.judge(observed)
    assert short.verdict == "insufficient" and LONGER_FROM * check.threshold <= short.score < check.threshold
    shifted = [cv2.warpAffine(picture, np.float32([[1, 0, shift], [0, 1, shift / 2]]), (width, height),
                              borderMode=cv2.BORDER_REPLICATE) for shift in (0, 4, 8, 12, 16, 20)]
    check, observed = planar_looks(shifted, [100, 60, 220, 180])
    assert check.judge(observed).score < 0.3 * check.threshold   # a picture moved as far shows none at either span


def test_planar_says_a_face_that_came_within_reach_of_live_is_near_once_confirmed_and_no_nearer_one_is():
    picture = textured()
    height, width = picture.shape[:2]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    bump = np.exp(-((grid_x - 160) ** 2 + (grid_y - 120) ** 2) / (2 * 45.0 ** 2))
    verdicts = {}
    for shift in (6.0, 8.0):          # the middle slides once, by this much, then holds: no longer span sees more
        frames = [cv2.remap(picture, grid_x - step * bump, grid_y, cv2.INTER_LINEAR) for step in (0, 0, *[shift] * 4)]
        check, observed = planar_looks(frames, [100, 60, 220, 180])
        verdicts[shift] = check.judge(observed)
    near = verdicts[8.0]
    assert near.verdict == "insufficient" and LONGER_FROM * check.threshold <= near.score < check.threshold
    assert near.near and near.evidence["near"]
    assert verdicts[6.0].score < LONGER_FROM * check.threshold and not verdicts[6.0].near
    check, observed = planar_looks([picture] * 6, [100, 60, 220, 180])
    assert not check.judge(observed).near


def test_planar_counts_a_pair_near_only_when_it_stays_near_with_the_plane_taken_out(monkeypatch):
    """A strongly tilted picture's tracking errors can read as parallax measured once; taken out with the plane
    (edge.faces.planarity.FollowedPair), they go."""
    check, observed = planar_looks([textured()] * 2, [100, 60, 220, 180])
    confirmed = []

    class Tilted(FollowedPair):              # 0.01 measured once, within reach of 0.0125; 0.004 with the plane out
        def confirmed(self):
            confirmed.append(self.pair.parallax)
            return LookPair(self.pair.motion, 0.004)
    monkeypatch.setattr(planar, "follow_looks", lambda first, second: Tilted(LookPair(0.05, 0.01), *[None] * 5))
    result = check.judge(observed)
    assert result.verdict == "insufficient" and result.score == 0.01 and not result.near and confirmed == [0.01]


def test_planar_is_near_twice_only_for_two_near_pairs_that_share_no_look(monkeypatch):
    """Looks 0.125 s apart, each measured against the one 0.25 s before it: looks 3 and 4 pair with 1 and 2 (four
    looks), looks 2 and 4 with 0 and 2 (one look in both: a look gone wrong could make both near)."""
    class Steady(FollowedPair):              # stays as near with the plane taken out
        def confirmed(self):
            return self.pair

    def judged(near_looks: set[int]):
        check, observed = planar_looks([textured()] * 6, [100, 60, 220, 180])
        monkeypatch.setattr(planar, "follow_looks", lambda first, second: Steady(LookPair(
            0.02, 0.01 if round(second.time_s / (PAIR_SPAN_S / 2)) in near_looks else 0.002), *[None] * 5))
        return check.judge(observed)

    apart, meeting, once = judged({3, 4}), judged({2, 4}), judged({5})
    assert apart.verdict == "insufficient" and apart.near and apart.near_twice and apart.evidence["near_twice"]
    assert meeting.near and not meeting.near_twice and not meeting.evidence["near_twice"]
    assert once.near and not once.near_twice


def test_planar_says_a_face_that_did_not_move_wants_movement_and_one_that_moved_as_a_picture_does_not():
    picture = textured()
    check, observed = planar_looks([picture] * 6, [100, 60, 220, 180])
    still = check.judge(observed)
    assert still.verdict == "insufficient" and still.unmoved and still.evidence["unmoved"]
    check, observed = planar_looks(held_tilting(picture, 120), [100, 60, 220, 180])
    flat = check.judge(observed)
    assert flat.verdict == "insufficient" and flat.evidence["motion"] >= STILL_MOTION * check.threshold
    assert not flat.unmoved and not flat.evidence["unmoved"]
    assert not check.judge(observed[:1]).unmoved              # no pair measured: nothing was seen either way
