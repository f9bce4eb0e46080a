"""The planar liveness measurement on real faces: the stage clip's people (the audience of a show: they laugh and
turn their heads) against frames of the clip held as a photo, tilted."""
import numpy as np
import pytest

from edge.faces.packaged_detector import load_packaged_detector
from edge.runtime.boards import load_board

pytestmark = pytest.mark.real


def test_points_tracked_on_a_live_face_move_unlike_a_photo_of_the_same_frame(shared_data):
    """The stage clip's largest face 8 frames apart, against the same frames held as a photo at two tilts (corners
    moved by up to a tenth, then a fifth, of the frame: benchmarks.held_photos), measured as the kiosk measures (a
    parallax that reaches the board's threshold confirmed with the plane taken out): tracked points on paper fit a
    homography to the tracker's noise; on a live face that turns or laughs they do not."""
    from benchmarks.held_photos import held_pairs
    from edge.faces.planarity import tracked_pair
    from edge.sources import open_source

    detector = load_packaged_detector()
    threshold = load_board("host").liveness.planar_parallax
    with open_source(str(shared_data / "video" / "stage_clip_360p.mp4")) as source:
        frames = [frame.image for frame in source]
    live = []
    for index in range(0, len(frames) - 8, 4):
        face = max(detector.detect(frames[index]), key=lambda d: d.box[2] - d.box[0], default=None)
        if face is not None and face.box[2] - face.box[0] >= 40:
            live.append(tracked_pair(frames[index], frames[index + 8], face.box, confirm_at=threshold))
    live_parallax = np.array([pair.parallax for pair in live if pair is not None])
    held = {spread: np.array(held_pairs(frames[::4], spread, detector, 40, np.random.default_rng(0)))
            for spread in (0.1, 0.2)}
    print(f"live pairs at or above {threshold}: {np.mean(live_parallax >= threshold):.2f} of {len(live_parallax)}; "
          + "; ".join(f"photos tilted by up to {spread:.0%}: {len(p)} pairs, largest parallax {p[:, 0].max():.4f} "
                      f"measured once, {p[:, 1].max():.4f} confirmed" for spread, p in held.items()))
    # measured: about a quarter of the live pairs, 8 frames apart, reach the board's threshold (the largest face turns
    # or laughs; most of the time it barely moves); a held photo's parallax measured once reaches 0.0186 tilted by up
    # to a fifth of the frame (0.0111 by up to a tenth), above the threshold; confirmed, at most 0.0089
    assert len(live_parallax) >= 30 and all(len(p) >= 20 for p in held.values())
    assert np.mean(live_parallax >= threshold) >= 0.15
    assert all(p[:, 1].max() < threshold for p in held.values())


def test_the_held_photos_benchmark_prints_parallax_measured_once_and_confirmed_and_refuses_bad_spreads(
        shared_data, capsys):
    from benchmarks.held_photos import main

    assert main(["--video", str(shared_data / "video" / "stage_clip_360p.mp4"), "--step", "25",
                 "--spreads", "0.2"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].endswith(f"11 frames held as photos; host's planar_parallax "
                               f"{load_board('host').liveness.planar_parallax}")
    assert printed[1].startswith("corners moved by up to 0.2 of the frame: ") and "confirmed p95" in printed[1]
    for bad in ("0.6", "a,b"):
        with pytest.raises(SystemExit) as exit_code:
            main(["--video", "x.mp4", "--spreads", bad])
        assert exit_code.value.code == 2 and "--spreads" in capsys.readouterr().err
