"""Anonymising a stream: every detected face replaced by a generated one and blended back into the frame.

Each frame is searched as the kiosk searches it (the board's detection strategy, edge.faces.scan) and its faces tracked
(edge.faces.tracking). A face found in this frame is aligned, replaced by the generator's face (a face swap's output,
or a decoder's face from a latent kept for the whole visit, so a person does not flicker between strangers),
colour-matched to the original and pasted back through the alignment's inverse with a feathered oval. It fails
closed: a face seen in the last ``hold_s`` seconds but not found in this one (turned away, blurred, occluded) has its
last box pixelated instead, so no frame shows a tracked face unaltered while the detector blinks.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.faces.align import Aligner
from edge.faces.scan import build_strategy
from edge.faces.tracking import TIME_TOLERANCE_S, build_tracker
from edge.generation.generate import Generator
from edge.runtime.boards import DetectionConfig, TrackingConfig

TEMPLATE = "arcface112"    # the crop every generator here was trained on (edge.runtime.preprocess.generator_input_spec)
PIXEL_BLOCKS = 6               # a pixelated face is this many blocks across: no identity survives it
BOX_MARGIN = 0.25              # a pixelated box grows by this share of its size on each side
STAGES = ("detect", "generate", "blend", "total")


@dataclass
class AnonymisedFrame:
    image: np.ndarray
    replaced: int                       # faces found and replaced in this frame
    pixelated: int                      # faces recently seen, not found in this frame, their boxes pixelated
    timings_ms: dict = field(default_factory=dict)


class Anonymiser:
    def __init__(self, detectors: dict, generator: Generator, detection: DetectionConfig,
                 tracking: TrackingConfig, seed: int = 0, hold_s: float | None = None):
        self.generator = generator
        self.strategy = build_strategy(detection, detectors)
        self.tracker = build_tracker(tracking)
        self.hold_s = tracking.max_missed_s if hold_s is None else hold_s
        self.aligner = Aligner(TEMPLATE, next(iter(detectors.values())).keypoint_names)
        self.rng = np.random.default_rng(seed)
        self.latents: dict[int, np.ndarray] = {}        # track id -> the decoder row its face is drawn from
        self.recent: dict[int, tuple[np.ndarray, float]] = {}   # track id -> (last box, stream time last seen)
        self.mask: np.ndarray | None = None

    def step(self, image: np.ndarray, frame_index: int, time_s: float) -> AnonymisedFrame:
        start = time.perf_counter()
        timings = dict.fromkeys(STAGES, 0.0)
        detections = self.strategy.detect_arrivals_now(image, frame_index, self.tracker.expected_boxes())
        update = self.tracker.update(detections, frame_index, time_s)
        timings["detect"] = _ms(start)
        out = image.copy()
        replaced = 0
        for track in update.live:
            if track.detection is None:
                continue
            mark = time.perf_counter()
            matrix = self.aligner.matrix(track.detection)
            crop = self.aligner.warp(image, matrix)
            face = self._face_for(track.id, crop)
            timings["generate"] += _ms(mark)
            mark = time.perf_counter()
            self._paste(out, face, crop, matrix)
            timings["blend"] += _ms(mark)
            self.recent[track.id] = (track.detection.box.astype(np.float32), time_s)
            replaced += 1
        pixelated = self._fail_closed(out, update.live, time_s)
        for ended in update.ended:
            self.latents.pop(ended.id, None)
        timings["total"] = _ms(start)
        return AnonymisedFrame(out, replaced, pixelated, timings)

    def _face_for(self, track_id: int, crop: np.ndarray) -> np.ndarray:
        if self.generator.prior is None:
            return self.generator.transform([crop])[0]
        if track_id not in self.latents:
            self.latents[track_id] = self.generator.prior.draw(1, self.rng)
        return self.generator.decode(self.latents[track_id])[0]

    def _paste(self, frame: np.ndarray, face: np.ndarray, crop: np.ndarray, matrix: np.ndarray) -> None:
        """``face`` (in the template's layout, any side) blended into ``frame`` where ``crop`` was cut."""
        side = face.shape[0]
        mask = self._oval(side)
        original = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA).astype(np.float32)
        face = face.astype(np.float32)
        weights = mask[..., None] / max(float(mask.sum()), 1e-6)
        face = np.clip(face + (original * weights).sum((0, 1)) - (face * weights).sum((0, 1)), 0, 255)
        to_face = matrix * (side / self.aligner.template.size)                     # frame -> face pixels
        inverse = cv2.invertAffineTransform(to_face)
        corners = np.array([[0, 0, 1], [side, 0, 1], [0, side, 1], [side, side, 1]], np.float32) @ inverse.T
        height, width = frame.shape[:2]
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, [width, height])
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int), 0, [width, height])
        if x1 <= x0 or y1 <= y0:
            return
        shifted = to_face.copy()
        shifted[:, 2] += to_face[:, :2] @ np.array([x0, y0], np.float32)  # the same map, from the region's pixels
        size = (int(x1 - x0), int(y1 - y0))
        flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
        warped = cv2.warpAffine(face, shifted, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
        alpha = cv2.warpAffine(mask, shifted, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        region = frame[y0:y1, x0:x1].astype(np.float32)
        frame[y0:y1, x0:x1] = (region + alpha[..., None] * (warped - region)).astype(np.uint8)

    def _oval(self, side: int) -> np.ndarray:
        """A feathered oval over the face in the template's layout, 1 inside."""
        if self.mask is None or self.mask.shape[0] != side:
            mask = np.zeros((side, side), np.float32)
            cv2.ellipse(mask, (side // 2, int(side * 0.52)), (int(side * 0.42), int(side * 0.5)), 0, 0, 360, 1.0, -1)
            blur = max(3, side // 8) | 1
            self.mask = cv2.GaussianBlur(mask, (blur, blur), 0)
        return self.mask

    def _fail_closed(self, frame: np.ndarray, live, time_s: float) -> int:
        """Pixelates every box of a face seen within ``hold_s`` seconds and not found in this one; returns how
        many."""
        found = {t.id for t in live if t.detection is not None}
        predicted = {t.id: t.predicted() for t in live if t.detection is None}
        pixelated = 0
        for track_id, (box, seen) in list(self.recent.items()):
            if time_s - seen > self.hold_s + TIME_TOLERANCE_S:
                del self.recent[track_id]
                continue
            if track_id in found:
                continue
            boxes = [box] + ([predicted[track_id]] if track_id in predicted else [])
            pixelate(frame, np.concatenate([np.min(boxes, 0)[:2], np.max(boxes, 0)[2:]]))
            pixelated += 1
        return pixelated


def pixelate(frame: np.ndarray, box: np.ndarray, margin: float = BOX_MARGIN) -> None:
    """Replaces ``box`` (grown by ``margin`` each side) with PIXEL_BLOCKS x PIXEL_BLOCKS flat blocks, in place."""
    x1, y1, x2, y2 = box
    dx, dy = (x2 - x1) * margin, (y2 - y1) * margin
    height, width = frame.shape[:2]
    left, top = int(max(0, x1 - dx)), int(max(0, y1 - dy))
    right, bottom = int(min(width, x2 + dx)), int(min(height, y2 + dy))
    if right - left < 2 or bottom - top < 2:
        return
    region = frame[top:bottom, left:right]
    small = cv2.resize(region, (PIXEL_BLOCKS, PIXEL_BLOCKS), interpolation=cv2.INTER_AREA)
    frame[top:bottom, left:right] = cv2.resize(small, (right - left, bottom - top), interpolation=cv2.INTER_NEAREST)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class AnonymisedStream:
    """The anonymiser over a frame source: each output frame to ``writer`` (when given) and, for a page, kept as
    the latest JPEG; counters and frame times for a summary. ``run()`` works in the foreground (the CLI, where
    Ctrl+C stops it); ``start()`` in a thread (the page), an error then kept for the status, not lost."""

    def __init__(self, anonymiser: Anonymiser, source, writer=None, max_frames: int = 0, keep_jpeg: bool = False):
        self.anonymiser, self.source, self.writer, self.max_frames = anonymiser, source, writer, max_frames
        self.keep_jpeg = keep_jpeg
        self.jpeg: bytes | None = None
        self.frames = self.replaced = self.pixelated = 0
        self.frame_ms: list[float] = []
        self.started = time.perf_counter()
        self.ended = False
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run_in_thread, name="anonymise", daemon=True)

    def run(self) -> None:
        try:
            for frame in self.source:
                if self._stop.is_set():
                    break
                step = self.anonymiser.step(frame.image, frame.index, frame.time_s)
                if self.keep_jpeg:
                    ok, encoded = cv2.imencode(".jpg", step.image, [cv2.IMWRITE_JPEG_QUALITY, 85])
                    if ok:
                        self.jpeg = encoded.tobytes()
                if self.writer is not None:
                    self.writer.write(step.image)
                self.frames += 1
                self.replaced += step.replaced
                self.pixelated += step.pixelated
                self.frame_ms.append(step.timings_ms["total"])
                if self.max_frames and self.frames >= self.max_frames:
                    break
        finally:
            self.ended = True

    def start(self) -> AnonymisedStream:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def status(self) -> dict:
        seconds = time.perf_counter() - self.started
        return {"frames": self.frames, "fps": round(self.frames / seconds, 1) if seconds else 0.0,
                "faces_replaced": self.replaced, "faces_pixelated": self.pixelated,
                "median_frame_ms": round(float(np.median(self.frame_ms)), 2) if self.frame_ms else None,
                "ended": self.ended, "error": self.error}

    def _run_in_thread(self) -> None:
        try:
            self.run()
        except Exception as err:            # shown on the page and in /api/status, not lost in a thread
            self.error = f"{type(err).__name__}: {err}"
