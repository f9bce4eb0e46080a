"""How a hand holds a picture up to a camera: a slow sweep of tilt, a drift towards or away, small moves and tremor.

A pose is the held sheet's rotation and the position of its pivot (the face's centre on it) in the camera's frame,
in millimetres. Over a clip the angles follow a few smooth key poses (several to tens of degrees apart), the
distance drifts, and physiological tremor (8-12 Hz, a fraction of a degree and of a millimetre) rides on top.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_TILT = 40.0             # degrees between the sheet's normal and the camera's axis, at most
TREMOR_HZ = (8.0, 12.0)     # physiological hand tremor
SMOOTHING_S = 0.25          # seconds: a hand's sweep has no corners


@dataclass(frozen=True)
class PinholeCamera:
    """A camera with square pixels, its principal point at the frame's centre and ``focal`` in pixels."""

    width: int
    height: int
    focal: float

    @property
    def centre(self) -> np.ndarray:
        return np.array([(self.width - 1) / 2, (self.height - 1) / 2])

    @property
    def matrix(self) -> np.ndarray:
        cx, cy = self.centre
        return np.array([[self.focal, 0, cx], [0, self.focal, cy], [0, 0, 1]])

    def project(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) camera-frame millimetres -> (N, 2) pixels (0 = the first pixel's centre)."""
        return self.focal * points[:, :2] / points[:, 2:3] + self.centre

    def rays(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """(..., 3) directions through pixel centres ``xs``, ``ys``, with z = 1."""
        cx, cy = self.centre
        return np.stack([(xs - cx) / self.focal, (ys - cy) / self.focal, np.ones_like(xs, dtype=np.float64)], -1)


def camera_with_fov(width: int, height: int, horizontal_fov_deg: float) -> PinholeCamera:
    return PinholeCamera(width, height, (width / 2) / math.tan(math.radians(horizontal_fov_deg) / 2))


def rotation(yaw_deg: float, pitch_deg: float, roll_deg: float) -> np.ndarray:
    """Sheet -> camera rotation: roll in the sheet's plane, then pitch (about x), then yaw (about y)."""
    yaw, pitch, roll = np.radians([yaw_deg, pitch_deg, roll_deg])
    turn_y = np.array([[math.cos(yaw), 0, math.sin(yaw)], [0, 1, 0], [-math.sin(yaw), 0, math.cos(yaw)]])
    turn_x = np.array([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]])
    turn_z = np.array([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]])
    return turn_y @ turn_x @ turn_z


@dataclass(frozen=True)
class HandMotion:
    """Per-frame pose of a held sheet: angles in degrees, the pivot's position in camera millimetres."""

    yaw: np.ndarray         # (frames,)
    pitch: np.ndarray       # (frames,)
    roll: np.ndarray        # (frames,)
    pivot: np.ndarray       # (frames, 3)

    def __len__(self) -> int:
        return len(self.yaw)

    def pose(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(rotation 3x3, translation 3) taking sheet millimetres about the pivot into the camera's frame."""
        return rotation(self.yaw[index], self.pitch[index], self.roll[index]), self.pivot[index]

    def tilt(self, index: int) -> float:
        """Degrees between the sheet's normal and the camera's axis."""
        normal = self.pose(index)[0][:, 2]
        return math.degrees(math.acos(min(1.0, abs(normal[2]))))


def sample_hand_motion(rng: np.random.Generator, camera: PinholeCamera, frames: int, fps: float, distance_mm: float,
                       face_px: float) -> HandMotion:
    """A hand's slow sweep with tremor, keeping the face (``face_px`` wide at ``distance_mm``) inside the frame."""
    times = np.arange(frames) / fps
    keys = max(2, math.ceil(times[-1] / 0.8) + 1) if frames > 1 else 2
    key_times = np.linspace(0, times[-1] if frames > 1 else 1.0, keys)
    # a base holding angle, then a sweep of several to tens of degrees in one direction with some wandering
    start = rng.normal(0, 12, 2)
    heading = rng.uniform(0, 2 * math.pi)
    span = rng.uniform(4, 30)
    along = np.linspace(-0.5, 0.5, keys) * span
    yaw_keys = start[0] + along * math.cos(heading) + rng.normal(0, 2.5, keys)
    pitch_keys = start[1] + along * math.sin(heading) + rng.normal(0, 2.5, keys)
    roll_keys = rng.normal(0, 6) + rng.normal(0, 3, keys)
    yaw, pitch, roll = (_smooth(np.interp(times, key_times, k), fps) for k in (yaw_keys, pitch_keys, roll_keys))
    yaw, pitch, roll = yaw + _tremor(rng, times, 0.3), pitch + _tremor(rng, times, 0.3), roll + _tremor(rng, times, 0.2)
    yaw, pitch = _within_tilt(yaw, pitch)
    # distance: a drift of up to a fifth towards or away; position: a slow drift in pixels at the pivot's depth
    distance = distance_mm * (1 + _smooth(np.interp(times, key_times, rng.uniform(-0.1, 0.1, keys)), fps))
    margin = np.array([camera.width, camera.height]) / 2 - 0.75 * face_px
    centre = rng.uniform(-0.5, 0.5, 2) * np.maximum(margin, 0)
    drift = np.stack([np.interp(times, key_times, rng.normal(0, 0.04, keys) * camera.width) for _ in range(2)], -1)
    offset_px = np.clip(centre + np.stack([_smooth(d, fps) for d in drift.T], -1), -np.maximum(margin, 0),
                        np.maximum(margin, 0))
    offset_mm = offset_px * (distance / camera.focal)[:, None]
    offset_mm += np.stack([_tremor(rng, times, 0.6), _tremor(rng, times, 0.6)], -1)
    pivot = np.column_stack([offset_mm, distance])
    return HandMotion(yaw, pitch, roll, pivot)


def _smooth(values: np.ndarray, fps: float) -> np.ndarray:
    """Gaussian smoothing over SMOOTHING_S, edges held."""
    sigma = SMOOTHING_S * fps / 2
    radius = int(3 * sigma)
    if radius < 1 or len(values) < 2:
        return values
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    padded = np.pad(values, radius, mode="edge")
    return np.convolve(padded, kernel / kernel.sum(), mode="valid")


def _tremor(rng: np.random.Generator, times: np.ndarray, amplitude: float) -> np.ndarray:
    """A few sinusoids in the tremor band, random phases, summing to about ``amplitude`` (degrees or mm)."""
    scale = rng.uniform(0.3, 1.0) * amplitude
    waves = [math.sqrt(2 / 3) * np.sin(2 * math.pi * rng.uniform(*TREMOR_HZ) * times + rng.uniform(0, 2 * math.pi))
             for _ in range(3)]
    return scale * np.sum(waves, axis=0) / math.sqrt(3)


def _within_tilt(yaw: np.ndarray, pitch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Yaw and pitch shrunk together where their combined tilt would pass MAX_TILT."""
    combined = np.degrees(np.arccos(np.cos(np.radians(yaw)) * np.cos(np.radians(pitch))))
    factor = np.minimum(1.0, MAX_TILT / np.maximum(combined, 1e-9))
    return yaw * factor, pitch * factor
