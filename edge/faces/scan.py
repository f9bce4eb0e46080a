"""Where to look for faces in each frame of a stream: the detection strategies a board config chooses from.

A strategy gets a frame, its number and the boxes of the faces already tracked, and returns the faces it
found, in frame pixels. ``whole_frame`` runs one detector over every whole frame. ``tiled`` spreads a scan of
the whole frame over ``scan_period`` frames and one of overlapping tiles over ``tile_period`` frames, and every
frame looks again in a region around each known face, so that faces far from the camera are found without paying
for every tile every frame.

Every look is cut from the frame's pyramid (``FramePyramid``): the frame halved by area averaging, level by level,
as far as the region keeps at least the detector's input size, then resized bilinearly by less than two. On a
1080p frame that is 0.8 ms for the first halving against 2.4 ms for one area resize of the whole frame to a
detector's input (and 18 ms for the short-range model's whole-frame look with its close-up retry, done now on
the small level).
"""
from __future__ import annotations

import abc
from dataclasses import dataclass

import cv2
import numpy as np

from edge.faces.detect import Detection, box_iou, build_detector
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import STRATEGIES, BoardConfig, DetectionConfig
from edge.runtime.manifest import Manifest
from edge.runtime.models import choose_model, load_model

LEVEL_AREA_BELOW = 0.5   # a pyramid level is resized bilinearly (it is never shrunk by two or more)
CHANGE_LEVEL = 12        # grey levels by which a pixel of a tile's thumbnail (about an eighth of it) must move
CHANGE_SHARE = 0.002     # share of a tile's thumbnail pixels that must have moved since its last scan to scan it
THUMBNAIL_SIDE = 64      # a tile's thumbnail is cut from the coarsest pyramid level keeping this many pixels
DUPLICATE_IOU = 0.4      # two detections overlapping this much (tile overlaps, a region and a tile) are one face
MIN_REGION = 48          # pixels: the smallest region searched around a known face


@dataclass(frozen=True)
class Region:
    x1: int
    y1: int
    x2: int
    y2: int


class FramePyramid:
    """One frame and its halvings, each made when first asked for (INTER_AREA by exactly two: an odd last row or
    column is left out)."""

    def __init__(self, image: np.ndarray):
        self.levels = [image]

    def region(self, region: Region, side: int) -> tuple[np.ndarray, int, int, int]:
        """(the region's pixels at the coarsest level where its longer side keeps at least ``side`` pixels, that
        level's factor, and the frame position of the crop's first pixel's top-left corner, x and y)."""
        sides = sorted((region.x2 - region.x1, region.y2 - region.y1))
        factor = 1
        while sides[1] // (factor * 2) >= side and sides[0] // (factor * 2) >= 1:
            factor *= 2
        image = self._level(factor)
        x1, y1 = region.x1 // factor, region.y1 // factor
        crop = image[y1:-(-region.y2 // factor), x1:-(-region.x2 // factor)]
        return crop, factor, x1 * factor, y1 * factor

    def _level(self, factor: int) -> np.ndarray:
        level = factor.bit_length() - 1
        while len(self.levels) <= level:
            last = self.levels[-1]
            height, width = last.shape[0] // 2, last.shape[1] // 2
            self.levels.append(cv2.resize(last[:height * 2, :width * 2], (width, height), interpolation=cv2.INTER_AREA))
        return self.levels[level]


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
        return self.detect_all(image)

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        return _detect_in(self.detector, FramePyramid(image), Region(0, 0, width, height))

    def detect_arrivals_now(self, image: np.ndarray, frame_index: int,
                            known_boxes: list[np.ndarray]) -> list[Detection]:
        return self.detect_all(image)              # every frame is looked at whole already


@dataclass(frozen=True)
class ScanSchedule:
    """What TiledScan scans in a frame of one size."""

    size: tuple[int, int]                       # the frame's (width, height)
    regions: list[tuple[Region, object]]        # (region, detector): the whole-frame looks first, then the tiles
    whole: int                                  # how many whole-frame looks head ``regions``
    turns: list[tuple[int, int]]                # each region's (period, frame of the period): scan_turns


class TiledScan(DetectionStrategy):
    """The whole frame (``detector`` and ``tile_detector``), scanned once per ``scan_period`` frames, and
    overlapping tiles (``tile_detector``), scanned once per ``tile_period`` frames, each spread evenly over its
    period, the tiles in the frames without a whole-frame look where there are enough; every frame, the region
    around each known face, or the whole frame with ``detector`` while no face is known.

    The whole frame finds a face that walks up to the camera; the tiles find faces far from it, that need longer
    to come near (on the 1080p 2x2 mosaic of the stage clip, one core: the tiles every 6 frames cost 5.2 ms a
    frame, every 12 frames 2.6).

    In a kiosk's stream (``detect``) a tile whose pixels have not moved since its last scan skips its turn, as
    motion-gated detectors (Frigate's) do: a face that arrives moves, and moves its tile. Still, every tile is
    scanned at least once in ``tile_rescan`` turns, so a face the detector missed while it moved gets more
    chances. The whole-frame looks never skip, and anonymisation (``detect_arrivals_now``) scans every turn."""

    def __init__(self, detectors: dict, config: DetectionConfig):
        super().__init__(detectors, config)
        self.tile_detector = detectors[config.tile_detector]
        self._schedule: ScanSchedule | None = None
        self._scanned: dict[int, tuple[np.ndarray, int]] = {}   # tile's index -> (its thumbnail then, turns skipped)
        self.skipped = 0                                         # tile turns skipped since the stream began

    @staticmethod
    def needs(config: DetectionConfig) -> list[str]:
        return list(dict.fromkeys([config.detector, config.tile_detector]))

    def regions(self, width: int, height: int) -> list[tuple[Region, object]]:
        """(region, detector) pairs that cover a frame of this size: the whole frame with each detector (short
        range finds faces close by, full range those further away), then the tiles with full range."""
        return self._schedule_for(width, height).regions

    def _schedule_for(self, width: int, height: int) -> ScanSchedule:
        """The schedule for a frame of this size, made when the size is new (its tiles' memory starts afresh)."""
        if self._schedule is None or self._schedule.size != (width, height):
            frame = Region(0, 0, width, height)
            whole = [(frame, self.detector)] + ([(frame, self.tile_detector)]
                                                if self.tile_detector is not self.detector else [])
            tiles = tile_regions(width, height, self.config.tile_size, self.config.tile_overlap)
            turns = scan_turns(len(whole), len(tiles), self.config.scan_period, self.config.tile_period)
            self._schedule = ScanSchedule((width, height), whole + [(tile, self.tile_detector) for tile in tiles],
                                          len(whole), turns)
            self._scanned = {}
        return self._schedule

    def detect(self, image: np.ndarray, frame_index: int, known_boxes: list[np.ndarray]) -> list[Detection]:
        return self._detect(FramePyramid(image), frame_index, known_boxes, gated=True)

    def _detect(self, pyramid: FramePyramid, frame_index: int, known_boxes: list[np.ndarray],
                gated: bool = False) -> list[Detection]:
        height, width = pyramid.levels[0].shape[:2]
        schedule = self._schedule_for(width, height)
        regions = schedule.regions
        due = [pair for i, (pair, (period, turn)) in enumerate(zip(regions, schedule.turns))
               if frame_index % period == turn
               and not (gated and i >= schedule.whole and self._unchanged(pyramid, i, pair[0]))]
        if not known_boxes and regions[0] not in due:
            due.insert(0, regions[0])     # nobody in view: the cheap whole-frame look every frame finds arrivals now
        found = [d for region, detector in due for d in _detect_in(detector, pyramid, region)]
        for box in known_boxes:
            if found and box_iou(box, np.stack([d.box for d in found])).max() > DUPLICATE_IOU:
                continue                    # this frame's scan, or the look around another face, already saw it
            region = region_around(box, self.config.roi_scale, width, height)
            found.extend(_detect_in(self.detector, pyramid, region))
        return deduplicate(found)

    def _unchanged(self, pyramid: FramePyramid, index: int, tile: Region) -> bool:
        """Whether the tile, at its turn, may skip its scan: too few of its thumbnail's pixels moved since its last
        scan, and it skipped fewer than ``tile_rescan`` - 1 turns in a row. Its thumbnail is kept when it is scanned."""
        crop = pyramid.region(tile, THUMBNAIL_SIDE)[0]
        thumbnail = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY) if crop.ndim == 3 else crop
        last = self._scanned.get(index)
        if (last is not None and last[0].shape == thumbnail.shape and last[1] + 1 < self.config.tile_rescan
                and np.count_nonzero(cv2.absdiff(last[0], thumbnail) > CHANGE_LEVEL) < CHANGE_SHARE * thumbnail.size):
            self._scanned[index] = (last[0], last[1] + 1)
            self.skipped += 1
            return True
        self._scanned[index] = (thumbnail, 0)
        return False

    def detect_all(self, image: np.ndarray) -> list[Detection]:
        height, width = image.shape[:2]
        pyramid = FramePyramid(image)
        return deduplicate([d for region, detector in self.regions(width, height)
                            for d in _detect_in(detector, pyramid, region)])

    def detect_arrivals_now(self, image: np.ndarray, frame_index: int,
                            known_boxes: list[np.ndarray]) -> list[Detection]:
        """``detect`` with the cheap whole-frame look in every frame, known faces or not: a face that walks in
        while others are tracked is found in its first frame, not at the whole frame's turn in the scan (what
        anonymisation needs: no face shown while it waits)."""
        height, width = image.shape[:2]
        pyramid = FramePyramid(image)
        found = self._detect(pyramid, frame_index, known_boxes)
        whole = self.regions(width, height)[0]
        return deduplicate(found + _detect_in(whole[1], pyramid, whole[0]))


def _detect_in(detector, pyramid: FramePyramid, region: Region) -> list[Detection]:
    """The detector over one region, cut from the frame's pyramid at the level that keeps the detector's input
    size (so resized bilinearly, by less than two); the whole frame gets the detector's close-up retries, a crop
    does not."""
    height, width = pyramid.levels[0].shape[:2]
    crop, factor, x, y = pyramid.region(region, detector.size)
    if (region.x1, region.y1, region.x2, region.y2) == (0, 0, width, height):
        found = detector.detect(crop, area_below=LEVEL_AREA_BELOW)
    else:
        found = detector.detect_once(crop, area_below=LEVEL_AREA_BELOW)
    return [d.from_level(factor, x, y) for d in found]


def scan_turns(whole: int, tiles: int, scan_period: int, tile_period: int) -> list[tuple[int, int]]:
    """(period, the frame of the period it is scanned in) for ``whole`` whole-frame looks and then ``tiles`` tiles:
    each kind spread evenly over its own period, the tiles over the frames that have no whole-frame look when
    there are as many such frames as tiles (so no frame pays for two of the full-range model's looks)."""
    turns = [(scan_period, index * scan_period // whole) for index in range(whole)]
    busy = {turn for _, turn in turns}
    free = [frame for frame in range(tile_period) if frame % scan_period not in busy]
    slots = free if len(free) >= tiles else list(range(tile_period))
    return turns + [(tile_period, slots[(2 * index + 1) * len(slots) // (2 * tiles)]) for index in range(tiles)]


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
    if len(detections) < 2:
        return list(detections)
    ordered = sorted(detections, key=lambda d: -d.score)
    boxes = np.stack([d.box for d in ordered])
    kept: list[int] = []
    for index, box in enumerate(boxes):
        if not kept or box_iou(box, boxes[kept]).max() <= DUPLICATE_IOU:
            kept.append(index)
    return [ordered[index] for index in kept]


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
