"""Drawing primitives for the renderer: filled and stroked shapes at sub-pixel precision, and shape outlines."""
from __future__ import annotations

import math

import cv2
import numpy as np

SHIFT = 4                    # sub-pixel bits for cv2 drawing: coordinates are multiplied by 16


def ramp(start: float, stop: float, n: int, endpoint: bool = True) -> np.ndarray:
    """np.linspace without its overhead, which is most of the cost for the few points a shape needs."""
    return start + (stop - start) / (n - 1 if endpoint else n) * np.arange(n)


def ellipse(cu: float, cv: float, ru: float, rv: float, start: float = 0.0, stop: float = 2 * math.pi,
             points: int = 24) -> tuple[np.ndarray, np.ndarray]:
    t = ramp(start, stop, points, endpoint=stop - start < 2 * math.pi)
    return cu + ru * np.cos(t), cv + rv * np.sin(t)


def superellipse(cu: float, cv: float, ru: float, rv: float, points: int = 32) -> tuple[np.ndarray, np.ndarray]:
    t = ramp(0, 2 * math.pi, points, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return cu + ru * np.sign(c) * np.abs(c) ** 0.6, cv + rv * np.sign(s) * np.abs(s) ** 0.6


def fill_clipped(canvas: np.ndarray, polygon: np.ndarray, draw) -> None:
    """Runs ``draw(roi, offset)`` on a copy of the polygon's box and keeps it only inside the polygon."""
    x1, y1, x2, y2 = bounds(polygon, canvas.shape, margin=1)
    if x2 <= x1 or y2 <= y1:
        return
    offset = np.array([x1, y1], np.float64)
    roi = canvas[y1:y2, x1:x2]
    inside = np.zeros(roi.shape[:2], np.uint8)
    fill(inside, polygon - offset, 255)
    drawn = roi.copy()
    draw(drawn, offset)
    alpha = inside.astype(np.float32)[..., None] * (1.0 / 255.0)
    roi[:] = (roi + alpha * (drawn.astype(np.float32) - roi)).astype(np.uint8)


def bounds(points: np.ndarray, shape: tuple[int, ...], margin: int = 0) -> tuple[int, int, int, int]:
    h, w = shape[:2]
    x1, y1 = np.floor(points.min(axis=0)).astype(int) - margin
    x2, y2 = np.ceil(points.max(axis=0)).astype(int) + margin + 1
    return max(0, x1), max(0, y1), min(w, x2), min(h, y2)


def fixed(points: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(points) * (1 << SHIFT)).astype(np.int32).reshape(-1, 1, 2)


def fill(image: np.ndarray, points: np.ndarray, colour) -> None:
    cv2.fillPoly(image, [fixed(points)], colour, cv2.LINE_AA, SHIFT)


def fill_both(canvas: np.ndarray, mask: np.ndarray, points: np.ndarray, colour) -> None:
    """Fills a part of the person's silhouette: drawn, and marked in the mask that lighting uses."""
    fill(canvas, points, colour)
    fill(mask, points, 255)


def polyline(image: np.ndarray, points: np.ndarray, colour, thickness: int, closed: bool = False) -> None:
    cv2.polylines(image, [fixed(points)], closed, colour, thickness, cv2.LINE_AA, SHIFT)


def disc(image: np.ndarray, centre: np.ndarray, radius: float, colour) -> None:
    scale = 1 << SHIFT
    cv2.circle(image, (int(round(centre[0] * scale)), int(round(centre[1] * scale))),
               max(1, int(round(radius * scale))), colour, -1, cv2.LINE_AA, SHIFT)


def scaled(colour: tuple[int, ...], factor: float, lift: float = 0.0) -> tuple[int, ...]:
    return tuple(int(min(255, max(0, c * factor + lift))) for c in colour)
