"""Liveness on real faces: the head-pose challenge answered by ORL's people turning their heads, and refused to
one of their photos held tilted in front of a camera; the planar check on the stage clip's live performer and on
a frame of it held as a photo."""
import random

import cv2
import numpy as np
import pytest

from edge.base.imageio import list_images, read_image
from edge.faces.packaged_detector import load_packaged_detector
from edge.liveness.challenge import Challenge, head_pose
from edge.liveness.checks import CheckContext, Look
from edge.liveness.gate import LivenessGate
from edge.liveness.planar import PlanarCheck
from edge.runtime.boards import load_board
from tracked_looks import give_looks

pytestmark = pytest.mark.real
BOARD = load_board("host")


def pinhole_photo(image: np.ndarray, yaw_deg: float, pitch_deg: float, distance: float, size=(640, 480)):
    """``image`` printed and held ``distance`` (in its own pixels) in front of a pinhole camera (focal 600 px),
    turned ``yaw_deg`` about its vertical axis and ``pitch_deg`` about its horizontal one."""
    height, width = image.shape[:2]
    yaw, pitch = np.radians(yaw_deg), np.radians(pitch_deg)
    turn = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    tip = np.array([[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
    corners = np.float32([[-width / 2, -height / 2, 0], [width / 2, -height / 2, 0], [width / 2, height / 2, 0],
                          [-width / 2, height / 2, 0]]) @ (tip @ turn).T + [0, 0, distance]
    seen = (corners[:, :2] / corners[:, 2:] * 600 + np.float32(size) / 2).astype(np.float32)
    flat = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
    return cv2.warpPerspective(image, cv2.getPerspectiveTransform(flat, seen), size, borderValue=(90, 90, 90))


def face(detector, image):
    return max(detector.detect(image), key=lambda d: d.score, default=None)


def test_the_challenge_passes_real_head_turns_and_refuses_the_same_face_held_as_a_tilted_photo(shared_data):
    detector = load_packaged_detector()
    passed = refused = 0
    for person in (1, 4, 10, 23, 35):
        shots = [cv2.resize(read_image(p), None, fx=2, fy=2) for p in list_images(shared_data / "orl" / f"s{person}")]
        seen = [(head_pose(d.keypoints, 0).turn, shot) for shot in shots if (d := face(detector, shot)) is not None]
        seen.sort(key=lambda pair: pair[0])
        for request, order in (("turn your head to your left", seen), ("turn your head to your right", seen[::-1])):
            challenge = Challenge(BOARD.liveness.challenge_turn, BOARD.liveness.challenge_s, random.Random(0))
            challenge.request = request
            held = [shot for _, shot in order for _ in range(2)]      # each pose held for two looks, as a head does
            poses = [challenge.observe(Look(shot, face(detector, shot), 0.2 * i, i)) for i, shot in enumerate(held)]
            passed += challenge.judge(poses).verdict == "live"
        # the most frontal shot held as a photo, tilted and turned up to 40 degrees over six seconds
        frontal = min(seen, key=lambda pair: abs(pair[0]))[1]
        gate = LivenessGate([PlanarCheck(CheckContext(None, None, BOARD, None))], BOARD.liveness, challenge=True,
                            rng=random.Random(person))
        for step in range(60):
            angle = 40 * np.sin(step / 9)
            frame = pinhole_photo(frontal, angle, angle / 2, 700)
            detection = face(detector, frame)
            if detection is not None and gate.wants_look(1, step):
                gate.look(1, Look(frame, detection, step / 10, step))
        refused += gate.verdict(1).verdict != "live"
    assert passed == 10 and refused == 5


def test_planar_finds_the_live_performer_and_not_a_frame_of_them_held_as_a_photo(shared_data):
    from edge.sources import open_source

    detector = load_packaged_detector()
    with open_source(str(shared_data / "video" / "stage_clip_360p.mp4")) as source:
        frames = [frame.image for frame in source][:120]
    verdicts = {}
    for name, clip in (("live", frames),
                       ("photo", [pinhole_photo(cv2.resize(frames[30], None, fx=1.5, fy=1.5), 35 * np.sin(i / 12),
                                                10 * np.cos(i / 15), 900) for i in range(120)])):
        gate = LivenessGate([PlanarCheck(CheckContext(None, None, BOARD, None))], BOARD.liveness)
        for index, frame in enumerate(clip):
            detection = face(detector, frame)
            if detection is not None and gate.wants_look(1, index):
                gate.look(1, Look(frame, detection, index / 30, index))
        verdicts[name] = gate.verdict(1)
    assert verdicts["live"].verdict == "live"
    assert verdicts["photo"].verdict == "insufficient", verdicts["photo"]
    photo = verdicts["photo"].checks["planar"]
    assert photo["pairs"] >= 6 and photo["parallax"] < BOARD.liveness.planar_parallax, photo   # a pair in 2 looks


def test_the_challenge_with_planar_passes_no_rendered_attack_clip(shared_data, tmp_path):
    """Prints and screen replays of colour photos, and screen replays of the stage clip (a video of people moving
    their heads), each held up with a random request running: none is judged live."""
    from benchmarks.attacks import AttackOptions, render_attacks

    options = AttackOptions(shared_data / "faces80" / "AFLW", tmp_path / "attacks",
                            (shared_data / "video" / "stage_clip_360p.mp4",), clips_per_photo=1, max_photos=4, seed=3,
                            clips_per_video=2)
    render_attacks(options)

    detector = load_packaged_detector()
    clips = sorted((tmp_path / "attacks").rglob("*.mp4"))
    verdicts = []
    for number, clip in enumerate(clips):
        gate = LivenessGate([PlanarCheck(CheckContext(None, None, BOARD, None))], BOARD.liveness, challenge=True,
                            rng=random.Random(number))
        give_looks(gate, detector, BOARD.tracking, str(clip))
        verdicts.append(sorted({gate.verdict(track).verdict for track in gate.visits}))
    assert len(clips) == 10 and not any("live" in seen for seen in verdicts), list(zip(clips, verdicts))
    assert len(list((tmp_path / "attacks" / "video_replay").glob("*.mp4"))) == 2       # --clips_per_video


def test_benchmark_liveness_reports_each_kind_of_clip_and_the_live_visits_of_real_video(shared_data, verify_bundle,
                                                                                        tmp_path, capsys):
    """python -m benchmarks liveness on clips rendered from real photos and on the stage clip as live video: the
    result holds what docs/liveness.md quotes (APCER per kind of clip, BPCER over live visits, the clips counted,
    the ms per look, live verdicts refused for a look of someone else, the rates at a swept setting), and the
    report shows it."""
    import json

    from benchmarks.attacks import AttackOptions, render_attacks
    from benchmarks.cli import main

    stage = shared_data / "video" / "stage_clip_360p.mp4"
    render_attacks(AttackOptions(shared_data / "faces80" / "AFLW", tmp_path / "attacks", (stage,),
                                 clips_per_photo=1, max_photos=3, seed=5, clips_per_video=1))
    assert main(["liveness", "--bundle", str(verify_bundle), "--attacks", str(tmp_path / "attacks"), "--live",
                 str(stage), "--results", str(tmp_path / "results"), "--sweep", "planar_parallax=1"]) == 0
    printed = capsys.readouterr().out
    assert "liveness: APCER print" in printed and "ms per look (planar " in printed
    (path,) = (tmp_path / "results" / "host").glob("liveness-*.json")
    result = json.loads(path.read_text())
    fused = result["fused"]
    counted = sum(fused["attack_clips"].values()) + sum(result["clips_without_visit"]["counts"].values())
    assert counted == len(list((tmp_path / "attacks").rglob("*.mp4"))) == 7
    assert set(fused["apcer"]) == set(fused["attack_clips"]) and all(0 <= r <= 1 for r in fused["apcer"].values())
    assert fused["live_visits"] >= 3 and 0 <= fused["bpcer"] <= 1 and result["liveness_ms_per_look"] > 0
    split = result["liveness_ms_per_look_by_check"]     # planar's share, and the kiosk's own (aligning the looks)
    assert set(split) == {"planar"} and split["planar"] > 0 and result["liveness_ms_per_look_kiosk"] >= 0
    assert split["planar"] + result["liveness_ms_per_look_kiosk"] == pytest.approx(result["liveness_ms_per_look"],
                                                                                  abs=0.002)
    assert fused["live_sources"] == {str(stage): {"live_visits": fused["live_visits"],
                                                 "rejected": round(fused["bpcer"] * fused["live_visits"]),
                                                 "size": [640, 360], "fps": pytest.approx(29.97, abs=0.01)}}
    assert set(fused["someone_else"]) == {"attack_clips", "live_visits"} and set(result["checks"]) == {"planar"}
    for key in ("without_movement", "near_threshold", "near_twice"):  # planar alone: nothing stands in for it
        assert not any(fused[key]["attack_clips"].values()) and fused[key]["live_visits"] == 0
    (swept,) = result["sweep"]           # planar alone, at a parallax no face shows: nothing is live
    shipped = BOARD.liveness.planar_parallax
    assert swept["settings"] == {"planar_parallax": 1} and result["liveness_settings"]["planar_parallax"] == shipped
    assert swept["live_visits"] >= 3 and swept["bpcer"] == 1.0 and not any(swept["apcer"].values())
    report = (tmp_path / "results" / "host" / "report.md").read_text()
    assert "live looks of someone else" in report and f"of {fused['live_visits']}" in report
    assert "live without movement" in report and "live near planar's threshold" in report
    assert "live twice near planar's threshold" in report
    assert f"| {stage} | 640x360 | 29.97 | {fused['live_visits']} |" in report    # the live visits by source
    assert f"| as shipped: planar_parallax {shipped:g} |" in report and f"| 1.000 of {swept['live_visits']} |" in report
