"""Where to look for faces in each frame of a stream: the detection strategies a board config chooses from.

A strategy gets a frame, its number and the boxes of the faces already tracked, and returns the faces it
found, in frame pixels. ``whole_frame`` runs one detector over every whole frame. ``tiled`` spreads a scan of
the whole frame and of overlapping tiles over ``scan_period`` frames, and every frame looks again in a region
around each known face, so that faces far from the camera are found without paying for every tile every frame.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import numpy as np

from edge.faces.detect import Detection, box_iou, build_detector
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import STRATEGIES, BoardConfig, DetectionConfig
from edge.runtime.manifest import Manifest
from edge.runtime.models import choose_model, load_model

REGION_AREA_BELOW = 0.5  # crops are shrunk bilinearly down to half size: a tracked face is looked at every frame
DUPLICATE_IOU = 0.4      # two detections overlapping this much (tile overlaps, a region and a tile) are one face
MIN_REGION = 48          # pixels: the smallest region searched around a known face


@dataclass(frozen=True)
class Region:
    x1: int
    y1: int
    x2: int
    y2: int

    def crop(self, image: np.ndarray) -> np.ndarray:
        return image[self.y1:self.y2, self.x1:self.x2]


class DetectionStrategy(abc.ABC):
    def __init__(self, detectors: dict, config: DetectionConfig):
        """``detectors``: loaded detectors by packaged name; the strategy uses those its config names."""
        self.config = config
        self.detector = detectors[config.detector]

    @staticmethod
    def needs(config: DetectionConfig) -> list[str]:
        """The packaged detectors this strategy runs with ``config``, so compile can put them in the bundle."""
        return [config.detector]

    @abc.abstractmethod
    def detect(self, image: np.ndarray, frame_index: int, known_boxes: list[np.ndarray]) -> list[Detection]:
        """Faces in this frame of a stream, given the boxes where tracked faces are expected."""

    @abc.abstractmethod
    def detect_all(self, image: np.ndarray) -> list[Detection]:
        """Faces in a still photo: every region the strategy would scan, now."""

    @abc.abstractmethod
    def detect_arrivals_now(self, image: np.ndarray, frame_index: int,
                            known_boxes: list[np.ndarray]) -> list[Detection]:
        """``detect``, and a face that arrived in this frame found in this frame wherever it is near enough for
        the frame's cheapest whole look."""


class WholeFrame(DetectionStrategy):
    """One detector over every whole frame (a kiosk camera whose visitors stand within arm's length)."""

    def detect(self, image: np.ndarray, frame_index: int, known_boxes: list[np.ndarray]) -> list[Detection]:
        return self.detector.detect(image)

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        return self.detector.detect(image)

    def detect_arrivals_now(self, image: np.ndarray, frame_index: int,
                            known_boxes: list[np.ndarray]) -> list[Detection]:
        return self.detector.detect(image)              # every frame is looked at whole already


class TiledScan(DetectionStrategy):
    """The whole frame (``detector`` and ``tile_detector``) and overlapping tiles (``tile_detector``), each
    scanned once per ``scan_period`` frames and spread evenly over them; every frame, the region around each
    known face, or the whole frame with ``detector`` while no face is known."""

    def __init__(self, detectors: dict, config: DetectionConfig):
        super().__init__(detectors, config)
        self.tile_detector = detectors[config.tile_detector]
        self._schedule: tuple[tuple[int, int], list[tuple[Region, object]]] | None = None

    @staticmethod
    def needs(config: DetectionConfig) -> list[str]:
        return list(dict.fromkeys([config.detector, config.tile_detector]))

    def regions(self, width: int, height: int) -> list[tuple[Region, object]]:
        """(region, detector) pairs that cover a frame of this size: the whole frame with each detector (short
        range finds faces close by, full range those further away), then the tiles with full range."""
        if self._schedule is None or self._schedule[0] != (width, height):
            frame = Region(0, 0, width, height)
            whole = [(frame, self.detector)] + ([(frame, self.tile_detector)]
                                                if self.tile_detector is not self.detector else [])
            tiles = tile_regions(width, height, self.config.tile_size, self.config.tile_overlap)
            self._schedule = ((width, height), whole + [(tile, self.tile_detector) for tile in tiles])
        return self._schedule[1]

    def detect(self, image: np.ndarray, frame_index: int, known_boxes: list[np.ndarray]) -> list[Detection]:
        height, width = image.shape[:2]
        regions = self.regions(width, height)
        period = self.config.scan_period
        due = [pair for i, pair in enumerate(regions) if i * period // len(regions) == frame_index % period]
        if not known_boxes and regions[0] not in due:
            due.insert(0, regions[0])     # nobody in view: the cheap whole-frame look every frame finds arrivals now
        found = [d for region, detector in due for d in _detect_in(detector, image, region)]
        for box in known_boxes:
            if any(box_iou(box, d.box[None])[0] > DUPLICATE_IOU for d in found):
                continue                    # this frame's scan already saw it
            region = region_around(box, self.config.roi_scale, width, height)
            found.extend(_detect_in(self.detector, image, region))
        return deduplicate(found)

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        return deduplicate([d for region, detector in self.regions(width, height)
                            for d in _detect_in(detector, image, region)])

    def detect_arrivals_now(self, image: np.ndarray, frame_index: int,
                            known_boxes: list[np.ndarray]) -> list[Detection]:
        """``detect`` with the cheap whole-frame look in every frame, known faces or not: a face that walks in
        while others are tracked is found in its first frame, not at the whole frame's turn in the scan (what
        anonymisation needs: no face shown while it waits)."""
        height, width = image.shape[:2]
        found = self.detect(image, frame_index, known_boxes)
        whole = self.regions(width, height)[0]
        return deduplicate(found + _detect_in(whole[1], image, whole[0]))


def _detect_in(detector, image: np.ndarray, region: Region) -> list[Detection]:
    """The detector over one region; the whole frame gets the detector's close-up retries, a crop does not."""
    height, width = image.shape[:2]
    if (region.x1, region.y1, region.x2, region.y2) == (0, 0, width, height):
        return detector.detect(image)
    found = detector.detect_once(region.crop(image), area_below=REGION_AREA_BELOW)
    return [d.shifted(region.x1, region.y1) for d in found]


def tile_regions(width: int, height: int, tile_size: int, overlap: float) -> list[Region]:
    """Tiles of about ``tile_size`` covering the frame, each ``overlap`` wider and taller than its cell so that a
    face cut by one tile's edge lies whole in its neighbour; none when the frame is a single tile."""
    cols, rows = max(1, round(width / tile_size)), max(1, round(height / tile_size))
    if cols == rows == 1:
        return []
    tile_w, tile_h = min(width, round(width / cols * (1 + overlap))), min(height, round(height / rows * (1 + overlap)))
    tiles = []
    for row in range(rows):
        for col in range(cols):
            x1 = _clamp(round((col + 0.5) * width / cols - tile_w / 2), 0, width - tile_w)
            y1 = _clamp(round((row + 0.5) * height / rows - tile_h / 2), 0, height - tile_h)
            tiles.append(Region(x1, y1, x1 + tile_w, y1 + tile_h))
    return tiles


def region_around(box: np.ndarray, scale: float, width: int, height: int) -> Region:
    """A square ``scale`` times the box's height around its centre, moved (not cut) to lie inside the frame."""
    side = int(min(max(MIN_REGION, scale * float(box[3] - box[1])), width, height))
    x1 = _clamp(round((box[0] + box[2]) / 2 - side / 2), 0, width - side)
    y1 = _clamp(round((box[1] + box[3]) / 2 - side / 2), 0, height - side)
    return Region(x1, y1, x1 + side, y1 + side)


def deduplicate(detections: list[Detection]) -> list[Detection]:
    """One detection per face: the highest-scoring of any that overlap more than DUPLICATE_IOU."""
    kept: list[Detection] = []
    for det in sorted(detections, key=lambda d: -d.score):
        if not kept or box_iou(det.box, np.stack([k.box for k in kept])).max() <= DUPLICATE_IOU:
            kept.append(det)
    return kept


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


# Detection strategies by the board config's ``detection.strategy``.

def build_strategy(config: DetectionConfig, detectors: dict) -> DetectionStrategy:
    return STRATEGIES.get(config.strategy)(detectors, config)


def strategy_detectors(config: DetectionConfig) -> list[str]:
    """The packaged detectors the configured strategy runs."""
    return STRATEGIES.get(config.strategy).needs(config)


def load_detectors(bundle_dir, manifest: Manifest, board: BoardConfig, options: BackendOptions,
                   backend: str | None = None, precision: str | None = None,
                   profile: BoardProfile | None = None) -> dict:
    """The bundle's detectors that the board's strategy runs, loaded on the backends the board chooses (or at the
    backend and precision asked for, to measure them)."""
    loaded = {}
    for name in strategy_detectors(board.detection):
        choice = choose_model(manifest, board, "detect", backend=backend, precision=precision, architecture=name,
                              profile=profile)
        loaded[name] = build_detector(load_model(bundle_dir, choice.entry, choice.backend, options))
    return loaded
