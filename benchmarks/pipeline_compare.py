"""What the pipeline benchmark compares: the faces each mode found per frame, the visits the tracked mode
decided against the per-frame mode's decisions on the same faces, and both against dlib's detector."""
from __future__ import annotations

from collections import Counter

import cv2
import numpy as np

from benchmarks.dlib_reference import DlibDetector
from benchmarks.labelled_boxes import box_matches


class FacesByFrame:
    """Reported face boxes per frame, with the track each belongs to (None without tracking)."""

    def __init__(self):
        self.frames: dict[int, list[tuple[np.ndarray, int | None]]] = {}

    def add(self, index: int, boxes: list[tuple[np.ndarray, int | None]]) -> None:
        self.frames[index] = boxes

    def frames_with_face(self) -> int:
        return sum(bool(boxes) for boxes in self.frames.values())

    def mean_faces(self) -> float:
        return float(np.mean([len(b) for b in self.frames.values()])) if self.frames else 0.0


class DlibFaceFrames:
    """dlib's detections on the frames it is shown (a sample: it takes about a second per 1080p frame)."""

    def __init__(self):
        self.detector = DlibDetector()
        self.boxes: dict[int, list[np.ndarray]] = {}

    def add(self, index: int, image_bgr: np.ndarray) -> None:
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        self.boxes[index] = [face.box for face in self.detector.faces(rgb)]

    def describe(self) -> dict:
        return {"detector": self.detector.name, "frames": len(self.boxes),
                "frames_with_face": sum(bool(b) for b in self.boxes.values()),
                "faces": sum(len(b) for b in self.boxes.values())}


def face_recall(reference: DlibFaceFrames, faces: FacesByFrame) -> dict:
    """Of the frames where dlib finds a face, the share where the mode reports one; of dlib's faces, the share
    the mode reports (a box whose centre lies inside dlib's, heights within 2x)."""
    with_face = [i for i, boxes in reference.boxes.items() if boxes]
    frames_found = sum(bool(faces.frames.get(i)) for i in with_face)
    total = found = 0
    for index, boxes in reference.boxes.items():
        ours = [box for box, _ in faces.frames.get(index, [])]
        for label in boxes:
            total += 1
            found += any(box_matches(label, box) for box in ours)
    return {"frames_with_dlib_face": len(with_face), "frames_found": frames_found,
            "frame_recall": frames_found / len(with_face) if with_face else None,
            "dlib_faces": total, "faces_found": found, "face_recall": found / total if total else None}


def visit_agreement(visits, tracked_faces: FacesByFrame, per_frame_decisions) -> dict:
    """For each visit the tracked mode decided, the identity most per-frame decisions gave the same face over
    the visit's frames (None for "not named"), against the visit's own (None unless it named someone)."""
    per_frame: dict[int, list] = {}
    for index, decision in per_frame_decisions:
        per_frame.setdefault(index, []).append(decision)
    boxes_by_track: dict[int, list[tuple[int, np.ndarray]]] = {}
    for index, faces in tracked_faces.frames.items():
        for box, track in faces:
            boxes_by_track.setdefault(track, []).append((index, box))
    compared = same = 0
    differing = []
    for visit in visits:
        votes = Counter(d.identity for index, box in boxes_by_track.get(visit.track, [])
                        for d in per_frame.get(index, []) if box_matches(box, np.asarray(d.box)))
        if not votes:
            continue
        compared += 1
        majority = votes.most_common(1)[0][0]
        if majority == visit.identity:
            same += 1
        elif len(differing) < 10:
            differing.append({"track": visit.track, "visit": visit.identity, "outcome": visit.outcome,
                              "per_frame_majority": majority, "per_frame_votes": dict(votes)})
    return {"visits": len(visits), "compared": compared, "same_identity": same, "differing": differing}
