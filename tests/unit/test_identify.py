"""The open-set identification protocol of ``benchmarks identify``: who is enrolled at each gallery size, who
probes, and how FNIR at an FPIR and rank-1 are read."""
import cv2
import numpy as np
import pytest

from benchmarks.identify import IdentifyOptions, build_protocol, identification_metrics
from edge.base.errors import UserError
from edge.faces.score_norm import file_sha1

pytestmark = pytest.mark.unit


def photos(folder, count, colour):
    folder.mkdir(parents=True)
    for n in range(count):
        cv2.imwrite(str(folder / f"{n}.png"), np.full((8, 8, 3), (colour * 7 + n) % 256, np.uint8))


@pytest.fixture
def folders(tmp_path):
    for index in range(6):
        photos(tmp_path / "people" / f"p{index}", 3, index)
    photos(tmp_path / "people" / "loner", 1, 50)               # one photo: never enrolled
    photos(tmp_path / "others", 5, 90)                         # one person per photo
    return tmp_path


def test_smaller_galleries_are_part_of_larger_ones_and_everyone_not_enrolled_probes_once(folders):
    options = IdentifyOptions(folders / "bundle", (folders / "people",), (3, 8), distractors=folders / "others",
                              probes=2)
    protocol = build_protocol(options, refused=set())
    assert protocol.candidates == 6 and [p.name for p in protocol.loners] == ["loner"]
    small, small_outside = protocol.gallery(3)
    large, large_outside = protocol.gallery(8)
    assert large[:3] == small and all(p.name.startswith("p") for p in large[:6])
    assert all(p.name.startswith("distractor:") for p in large[6:])       # the distractors fill beyond
    assert all(p.enrol == (p.enrol[0],) and len(p.mated) == 2 for p in small)
    assert {p.name for p in small_outside} == {p.name for p in protocol.people[3:]} | {"loner"}
    assert len(large_outside) == 3 + 1                         # three distractors left and the loner
    again = build_protocol(options, refused=set())
    assert [p.name for p in again.people] == [p.name for p in protocol.people]      # seeded
    other = build_protocol(IdentifyOptions(**{**options.__dict__, "seed": 1}), refused=set())
    assert [p.name for p in other.people] != [p.name for p in protocol.people]


def test_a_gallery_larger_than_the_people_given_and_a_labelled_photo_of_the_cohort_are_refused(folders):
    with pytest.raises(UserError, match="a gallery of 20 needs 20 people.*--distractors"):
        build_protocol(IdentifyOptions(folders / "b", (folders / "people",), (20,)), refused=set())
    with pytest.raises(UserError, match="1 photos .*people/p2/1.png.* score cohort"):
        build_protocol(IdentifyOptions(folders / "b", (folders / "people",), (3,)),
                       refused={file_sha1(folders / "people" / "p2" / "1.png")})
    # a distractor the cohort was made from is left out, and counted
    options = IdentifyOptions(folders / "b", (folders / "people",), (3,), distractors=folders / "others")
    protocol = build_protocol(options, refused={file_sha1(folders / "others" / "2.png")})
    assert protocol.distractors_in_cohort == 1 and len(protocol.people) == 6 + 4
    assert "distractor:2.png" not in {p.name for p in protocol.people}


def test_fnir_is_read_at_the_threshold_the_non_mated_probes_give():
    strangers = np.linspace(0.0, 0.99, 100)                    # the highest at 0.99, then 0.98 ...
    mated = np.array([1.2, 0.985, 0.5, -np.inf])               # the last: no face found
    hit = np.array([True, True, True, False])
    metrics = identification_metrics(mated, hit, strangers, named=0.6, unknown=0.3)
    # FPIR 1e-2 lets one stranger of 100 through: the threshold sits just above the second highest, 0.98
    assert metrics["fnir_at_fpir"]["1e-2"] == pytest.approx(0.5)
    assert metrics["fnir_at_fpir"]["1e-1"] == pytest.approx(0.5)
    assert metrics["fnir_at_fpir"]["1e-3"] is None             # 100 strangers cannot resolve it
    assert metrics["rank1"] == 0.75
    named = metrics["at_shipped_thresholds"]["named"]
    assert named["fnir"] == 0.5 and named["fpir"] == pytest.approx(0.4)     # 0.60 .. 0.99
    wrong_mate = identification_metrics(mated, np.array([False, True, True, False]), strangers, None, None)
    assert wrong_mate["fnir_at_fpir"]["1e-2"] == 0.75 and wrong_mate["at_shipped_thresholds"] == {}
