"""The kiosk camera that films the attack: shutter, lens, sensor, scaler, colour filter mosaic, noise and JPEG.

A moving sheet smears over the exposure (the still background does not); the lens softens; each sensor pixel sees
one colour of a Bayer mosaic, which the camera interpolates back (false colour on fine patterns, as real cameras
give); the sensor adds noise; frames are JPEG-compressed before they are stored. Many cameras read a sensor of
more pixels than they deliver and scale down in their image processor, often by skipping pixels rather than
averaging them: fine patterns then alias much more than the delivered size alone would let them (the moire of a
filmed screen comes mostly from there).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.backdrop import degrade


@dataclass(frozen=True)
class CameraPipeline:
    shutter: float          # share of the frame time the shutter is open
    lens_sigma: float       # px: the lens's softness over the whole frame
    aperture: float         # width of a sensor pixel's light-gathering area, in sensor pixels
    cutoff: float           # cycles per sensor pixel above which the lens passes nothing (its diffraction limit)
    sensor_scale: int       # sensor pixels per delivered pixel, along each side
    skipping: bool          # the scaler keeps one sensor pixel of each block instead of averaging the block
    noise_std: float        # grey levels
    jpeg_quality: int

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "CameraPipeline":
        return cls(float(rng.uniform(0.2, 0.9)), float(rng.uniform(0.3, 0.8)), float(rng.uniform(0.6, 1.0)),
                   float(rng.uniform(1.2, 2.5)), int(rng.choice([1, 2, 3], p=[0.4, 0.35, 0.25])),
                   bool(rng.random() < 0.6), float(rng.uniform(1.0, 6.0)), int(rng.integers(45, 96)))

    def grid_mtf(self, fx: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Contrast the camera keeps of a pattern with frequency (fx, fy) cycles per delivered pixel: the light-
        gathering area (one sensor pixel's when the scaler skips, the whole block's when it averages, a box) times
        a diffraction-limited lens's MTF."""
        ratio = np.clip(np.hypot(fx, fy) / (self.cutoff * self.sensor_scale), 0, 1)
        lens = (2 / math.pi) * (np.arccos(ratio) - ratio * np.sqrt(1 - ratio ** 2))
        box = self.aperture / self.sensor_scale if self.skipping else 1.0
        return np.sinc(box * fx) * np.sinc(box * fy) * lens

    def smear(self, layer: np.ndarray, motion_px: np.ndarray) -> np.ndarray:
        """``layer`` (premultiplied colour and coverage) blurred along ``motion_px``, the sheet's displacement over
        one frame time, for the share of it the shutter is open."""
        streak = np.asarray(motion_px, np.float64) * self.shutter
        length = float(np.hypot(*streak))
        if length < 0.75:
            return layer
        size = int(math.ceil(length)) | 1
        kernel = np.zeros((size, size), np.float32)
        half = (size - 1) / 2
        direction = streak / length
        start = (half - direction * length / 2).round().astype(int)
        end = (half + direction * length / 2).round().astype(int)
        cv2.line(kernel, tuple(int(v) for v in start), tuple(int(v) for v in end), 1.0, 1, cv2.LINE_AA)
        return cv2.filter2D(layer, -1, kernel / kernel.sum()).reshape(layer.shape)

    def develop(self, scene: np.ndarray, seed: int) -> np.ndarray:
        """BGR float 0-255 as the sensor sees it -> the stored BGR uint8 frame."""
        soft = cv2.GaussianBlur(scene, (0, 0), self.lens_sigma)
        mosaic = _bayer_mosaic(np.clip(soft, 0, 255).astype(np.uint8))
        mosaic = degrade(mosaic, 0.0, self.noise_std, seed)
        colour = cv2.cvtColor(mosaic, cv2.COLOR_BayerBG2BGR)
        _, jpeg = cv2.imencode(".jpg", colour, [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality])
        return cv2.imdecode(jpeg, cv2.IMREAD_COLOR)

    def meta(self) -> dict:
        return {"shutter_share": round(self.shutter, 3), "lens_blur_sigma_px": round(self.lens_sigma, 3),
                "pixel_aperture": round(self.aperture, 3), "lens_cutoff_cycles_per_sensor_px": round(self.cutoff, 3),
                "sensor_pixels_per_pixel": self.sensor_scale, "scaler": "skips" if self.skipping else "averages",
                "noise_std": round(self.noise_std, 2), "jpeg_quality": self.jpeg_quality, "colour_filter": "bayer"}


def _bayer_mosaic(bgr: np.ndarray) -> np.ndarray:
    """One colour per pixel, laid out as OpenCV's COLOR_BayerBG2BGR reads it back."""
    mosaic = np.empty(bgr.shape[:2], np.uint8)
    mosaic[0::2, 0::2] = bgr[0::2, 0::2, 2]
    mosaic[0::2, 1::2] = bgr[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = bgr[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = bgr[1::2, 1::2, 0]
    return mosaic
