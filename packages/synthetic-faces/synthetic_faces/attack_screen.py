"""A photo or video shown on a phone or tablet: the panel's look, its glass, and its pixels beating with the camera's.

The device is a rigid slab: a bezel (shaded like any surface) around a screen that emits light. The screen changes
the picture (its gamma, saturation, white point, a backlit panel's raised black and uneven backlight), dims and
loses contrast when seen at an angle, mirrors the room and the lamp in its glass, and may show rolling bands where
its refresh or dimming beats with the camera's rolling shutter. Its pixel grid (red, green and blue stripes with
dark gaps) is drawn analytically: each harmonic of the grid, at the frequency the homography gives it in each
camera pixel, is attenuated by the camera's pixel aperture and lens and sampled at the pixel's centre, so the
moire is the aliasing a real sensor produces, strong where a screen pixel spans about a camera pixel and faint
where many fall in one.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.attack_camera import CameraPipeline
from synthetic_faces.attack_light import Light, shading
from synthetic_faces.attack_surface import Sheet, SurfaceHit, framed_texture, sample_texture
from synthetic_faces.backdrop import render_background

# (screen short side mm, long/short, pixels per inch, bezel mm): ranges per device kind
DEVICES = {"phone": ((62, 76), (1.9, 2.2), (300, 460), (1.5, 5)),
           "tablet": ((135, 200), (1.33, 1.6), (130, 265), (6, 20))}
GRID_HARMONICS = 3
UI_BACKGROUNDS = {"black": (0.0, 0.0, 0.0), "white": (0.96, 0.96, 0.96), "grey": (0.13, 0.13, 0.14)}
ENVIRONMENT_SIZE = (192, 144)


@dataclass
class ScreenMedium:
    """One device and how it shows the content; ``prepare`` lays the content out, ``shade`` lights one frame."""

    sheet: Sheet                        # the whole device, bezel included
    screen_mm: tuple[float, float, float, float]   # the active area: x1, y1, x2, y2 on the device
    content_origin_mm: tuple[float, float]
    mm_per_pixel: float                 # the content's pixels on the screen
    device: str
    panel: str                          # lcd or oled
    pitch_mm: float                     # one screen pixel
    stripes_along_x: bool               # the subpixel stripes' order runs along the device's x (portrait) or y
    gamma: float                        # the panel's gamma over the 2.2 the content was made for
    saturation: float
    white_bgr: np.ndarray
    black_level: float
    brightness: float
    ui: str
    backlight: float                    # unevenness of an LCD's backlight
    off_axis: float                     # exponent of the cosine the brightness falls with
    glass: float                        # reflectance of the glass
    bezel_bgr: np.ndarray
    banding: tuple[float, float, float, float]   # amplitude, period (rows), phase, phase step per frame
    subpixel_duty: float
    row_duty: float
    environment: np.ndarray | None = None
    mm_per_texel: float = 0.0
    _backlight_map: np.ndarray | None = None
    _device_mask: np.ndarray | None = None
    _screen_mask: np.ndarray | None = None

    @classmethod
    def sample(cls, rng: np.random.Generator, content_size: tuple[int, int], face_box: np.ndarray) -> "ScreenMedium":
        device = str(rng.choice(list(DEVICES), p=[0.6, 0.4]))
        short, ratio, ppi, bezel = (rng.uniform(*span) for span in DEVICES[device])
        portrait = (content_size[1] >= content_size[0]) == (rng.random() < 0.8)
        screen_w, screen_h = (short, short * ratio) if portrait else (short * ratio, short)
        # the face shown at 45-90 % of the screen's short side, somewhat off its centre (zoomed by the attacker)
        face_w = max(1.0, float(face_box[2] - face_box[0]))
        mm_per_pixel = rng.uniform(0.45, 0.9) * short / face_w
        face_centre = (np.asarray(face_box[:2]) + np.asarray(face_box[2:]) + 1) / 2
        face_on_screen = np.array([screen_w, screen_h]) * (0.5 + rng.uniform(-0.12, 0.12, 2))
        origin = np.array([bezel, bezel]) + face_on_screen - face_centre * mm_per_pixel
        sheet = Sheet(screen_w + 2 * bezel, screen_h + 2 * bezel,
                      (float(bezel + face_on_screen[0]), float(bezel + face_on_screen[1])))
        panel = "oled" if device == "phone" and rng.random() < 0.6 else "lcd"
        warmth = rng.uniform(-0.08, 0.06)
        bands = (float(rng.uniform(0.03, 0.15)), float(rng.uniform(20, 160)), float(rng.uniform(0, 2 * math.pi)),
                 float(rng.uniform(-1.2, 1.2))) if rng.random() < 0.6 else (0.0, 1.0, 0.0, 0.0)
        bezel_shade = float(rng.choice([0.03, 0.05, 0.75, 0.55], p=[0.5, 0.2, 0.15, 0.15]))
        return cls(sheet, (bezel, bezel, bezel + screen_w, bezel + screen_h), (float(origin[0]), float(origin[1])),
                   float(mm_per_pixel), device, panel, 25.4 / ppi, portrait, float(rng.uniform(0.85, 1.15)),
                   float(rng.uniform(1.0, 1.3) if panel == "oled" else rng.uniform(0.9, 1.1)),
                   np.array([1 - warmth, 1.0, 1 + warmth], np.float32),
                   0.0 if panel == "oled" else float(rng.uniform(0.02, 0.07)), float(rng.uniform(0.8, 1.5)),
                   str(rng.choice(list(UI_BACKGROUNDS), p=[0.6, 0.2, 0.2])),
                   0.0 if panel == "oled" else float(rng.uniform(0.02, 0.1)),
                   float(rng.uniform(0.2, 0.5) if panel == "oled" else rng.uniform(0.6, 1.6)),
                   float(rng.uniform(0.015, 0.06)), np.full(3, bezel_shade, np.float32) * rng.uniform(0.9, 1.1, 3),
                   bands, float(rng.uniform(0.18, 0.3)), float(rng.uniform(0.7, 0.9)))

    def prepare(self, mm_per_texel: float, rng: np.random.Generator) -> None:
        """What stays while the content changes, at ``mm_per_texel``: the room the glass mirrors, the backlight's
        unevenness, the device's and the screen's outlines."""
        self.mm_per_texel = mm_per_texel
        room = render_background(int(rng.integers(2 ** 31)), *ENVIRONMENT_SIZE).astype(np.float32) / 255
        self.environment = cv2.GaussianBlur(room, (0, 0), 6) * np.float32(rng.uniform(0.5, 1.2))
        width, height = self._texture_size()
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        to_edge = np.minimum(np.minimum(xs, width - 1 - xs), np.minimum(ys, height - 1 - ys)) * mm_per_texel
        glow = np.exp(-to_edge / rng.uniform(4, 15))                   # edge-lit: brighter along the sides
        self._backlight_map = (1 + self.backlight * (glow - glow.mean())).astype(np.float32)[..., None]
        corner = self._corner_mm()
        self._device_mask = _rounded_rect((width, height), (0, 0, self.sheet.width, self.sheet.height), corner,
                                          mm_per_texel)[..., None]
        self._screen_mask = _rounded_rect((width, height), self.screen_mm, max(0.0, corner - self.screen_mm[0]),
                                          mm_per_texel)[..., None]

    def _texture_size(self) -> tuple[int, int]:
        return max(1, round(self.sheet.width / self.mm_per_texel)), max(1, round(self.sheet.height / self.mm_per_texel))

    def texture(self, content: np.ndarray) -> list[np.ndarray]:
        """The device's face for one content frame (``framed_texture``'s parts): emitted BGR on the screen (bezel
        albedo around it), the device's coverage and the screen's."""
        size = self._texture_size()
        fine = self.mm_per_texel
        scale = self.mm_per_pixel / fine
        ox, oy = (np.asarray(self.content_origin_mm) + 0.5 * self.mm_per_pixel) / fine - 0.5
        shown = self._displayed(content.astype(np.float32) / 255)
        ui = tuple(float(v) for v in UI_BACKGROUNDS[self.ui])
        picture = cv2.warpAffine(shown, np.float32([[scale, 0, ox], [0, scale, oy]]), size, flags=cv2.INTER_LINEAR,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=ui)
        picture = (picture + self.black_level * (1 - picture)) * self._backlight_map
        colour = self._screen_mask * picture + (1 - self._screen_mask) * self.bezel_bgr
        return framed_texture(np.concatenate([colour, self._device_mask, self._screen_mask], axis=-1))

    def _corner_mm(self) -> float:
        return min(self.sheet.width, self.sheet.height) * (0.1 if self.device == "phone" else 0.06)

    def _displayed(self, bgr: np.ndarray) -> np.ndarray:
        """The content as the panel shows it: gamma, saturation and white point (BGR 0-1)."""
        bgr = np.power(np.clip(bgr, 0, 1), self.gamma)
        grey = bgr.mean(axis=-1, keepdims=True)
        return np.clip((grey + self.saturation * (bgr - grey)) * self.white_bgr, 0, 1)

    def shade(self, hit: SurfaceHit, light: Light, camera: CameraPipeline, texture: list[np.ndarray],
              frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """(BGR 0-255 float, coverage) per pixel of the hit's region for one frame, the device's face ``texture``
        (``texture(content)``) on it."""
        seen = sample_texture(texture, self.mm_per_texel, hit)
        colour, device, screen = seen[..., :3], seen[..., 3], seen[..., 4]
        to_eye = -hit.points / np.linalg.norm(hit.points, axis=-1, keepdims=True)
        facing = np.clip(np.einsum("...c,...c->...", hit.normals, to_eye), 0.05, 1).astype(np.float32)
        emitted = colour * (self.brightness * facing ** self.off_axis)[..., None] * self._grid(hit, camera)
        emitted = emitted * self._bands(hit.region, frame_index)[:, None, None]
        diffuse, specular = shading(hit, light, 800.0)
        bezel = colour * (light.ambient + (1 - light.ambient) * diffuse)[..., None]
        mirrored = self.glass * self._reflection(hit, to_eye) + 0.8 * specular[..., None]
        lit = screen[..., None] * emitted + (1 - screen[..., None]) * bezel + mirrored * light.colour
        return 255 * lit, device

    def _grid(self, hit: SurfaceHit, camera: CameraPipeline) -> np.ndarray | float:
        """(h, w, 3) the pixel grid's brightness around 1 per channel as the camera samples it (the moire); 1 where
        the camera resolves none of it."""
        x = (hit.sheet_mm[..., 0] - self.screen_mm[0]) / self.pitch_mm
        y = (hit.sheet_mm[..., 1] - self.screen_mm[1]) / self.pitch_mm
        across, down = (x, y) if self.stripes_along_x else (y, x)
        across, down = np.nan_to_num(across).astype(np.float32), np.nan_to_num(down).astype(np.float32)
        across_kept, down_kept = _kept_contrast(across, camera), _kept_contrast(down, camera)
        if max(float(across_kept.max()), float(down_kept.max())) < 1e-3:
            return 1.0
        rows = _pulse_train(down, down_kept, self.row_duty, 0.0)
        # subpixel order red, green, blue along ``across``: BGR channel 0 (blue) sits two thirds along
        stripes = [_pulse_train(across, across_kept, self.subpixel_duty, offset) for offset in (2 / 3, 1 / 3, 0.0)]
        return np.stack(stripes, axis=-1) * rows[..., None]

    def _bands(self, region: tuple[int, int, int, int], frame_index: int) -> np.ndarray:
        """Per frame row: the rolling bands of a refresh or dimming that beats with the rolling shutter."""
        amplitude, period, phase, step = self.banding
        rows = np.arange(region[1], region[3], dtype=np.float32)
        return 1 - amplitude * (0.5 + 0.5 * np.cos(2 * math.pi * rows / period + phase + step * frame_index))

    def _reflection(self, hit: SurfaceHit, to_eye: np.ndarray) -> np.ndarray:
        """The room behind the camera, mirrored by the glass: looked up by the reflected ray's direction."""
        cosine = np.einsum("...c,...c->...", hit.normals, to_eye)[..., None]
        mirrored = 2 * cosine * hit.normals - to_eye
        height, width = self.environment.shape[:2]
        map_x = ((0.5 + 0.6 * mirrored[..., 0]) * width).astype(np.float32)
        map_y = ((0.5 + 0.6 * mirrored[..., 1]) * height).astype(np.float32)
        return cv2.remap(self.environment, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)

    def meta(self) -> dict:
        amplitude, period, _, step = self.banding
        return {"device": self.device, "panel": self.panel, "ppi": round(25.4 / self.pitch_mm, 1),
                "device_mm": [round(self.sheet.width, 1), round(self.sheet.height, 1)],
                "screen_mm": [round(v, 1) for v in self.screen_mm], "portrait": self.stripes_along_x,
                "mm_per_content_pixel": round(self.mm_per_pixel, 4), "gamma_ratio": round(self.gamma, 3),
                "saturation": round(self.saturation, 3), "white_bgr": [round(float(v), 3) for v in self.white_bgr],
                "black_level": round(self.black_level, 3), "brightness": round(self.brightness, 3), "ui": self.ui,
                "backlight_unevenness": round(self.backlight, 3), "off_axis_exponent": round(self.off_axis, 3),
                "glass_reflectance": round(self.glass, 3), "bezel_bgr": [round(float(v), 3) for v in self.bezel_bgr],
                "banding": {"amplitude": round(amplitude, 3), "period_rows": round(period, 1),
                            "phase_step_per_frame": round(step, 3)},
                "subpixel_duty": round(self.subpixel_duty, 3), "row_duty": round(self.row_duty, 3)}


def _kept_contrast(position: np.ndarray, camera: CameraPipeline, step: int = 8) -> np.ndarray:
    """(harmonics, h, w): the contrast the camera keeps of each harmonic of a grid with unit period along
    ``position`` (grid units at each pixel), at the frequency each pixel sees it. The frequency follows the
    homography's smooth Jacobian, so it is worked out every ``step`` pixels and interpolated."""
    fy, fx = np.gradient(position)              # grid units per frame pixel
    height, width = position.shape
    small = (max(1, width // step), max(1, height // step))
    fx, fy = (cv2.resize(f, small, interpolation=cv2.INTER_AREA) for f in (fx, fy))
    kept = [cv2.resize(camera.grid_mtf(k * fx, k * fy).astype(np.float32), (width, height),
                       interpolation=cv2.INTER_LINEAR).reshape(height, width) for k in range(1, GRID_HARMONICS + 1)]
    return np.stack(kept)


def _pulse_train(position: np.ndarray, kept: np.ndarray, duty: float, offset: float) -> np.ndarray:
    """A train of pulses of width ``duty`` per unit of ``position`` (mean 1), each harmonic with the contrast the
    camera keeps of it (``kept``), sampled at the pixel centres."""
    value = np.ones_like(position)
    for k in range(1, GRID_HARMONICS + 1):
        wave = np.cos(np.float32(2 * math.pi * k) * (position - offset))
        value += np.float32(2 * np.sinc(k * duty)) * kept[k - 1] * wave
    return value


def _rounded_rect(size: tuple[int, int], box_mm, radius_mm: float, mm_per_texel: float) -> np.ndarray:
    """(h, w) coverage of a rounded rectangle, edges anti-aliased."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    xs, ys = (xs + 0.5) * mm_per_texel, (ys + 0.5) * mm_per_texel
    x1, y1, x2, y2 = box_mm
    inner_x = np.clip(xs, x1 + radius_mm, x2 - radius_mm)
    inner_y = np.clip(ys, y1 + radius_mm, y2 - radius_mm)
    outside = np.hypot(xs - inner_x, ys - inner_y) - radius_mm       # signed distance beyond the rounded edge, mm
    return np.clip(0.5 - outside / mm_per_texel, 0, 1).astype(np.float32)
