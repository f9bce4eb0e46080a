"""A photo printed on paper: the print's look, then the room's light on it.

The photo is separated into cyan, magenta, yellow and black inks, screened (a laser printer's or press's rotated
halftone dots, an inkjet's scattered droplets, or a photo print's continuous tone) and laid on paper that is not
white and has fibres; the inks absorb light as inks do, so the gamut shrinks and the blacks are grey by
construction. Under a lamp, paper shows its shading and a broad sheen (glossy photo paper a sharper glare).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.attack_light import Light, shading
from synthetic_faces.attack_surface import Sheet, SurfaceHit, framed_texture, sample_texture

PROCESSES = ("laser", "inkjet", "photo")
SCREEN_ANGLES = (15.0, 75.0, 0.0, 45.0)        # degrees of the cyan, magenta, yellow and black screens
# BGR share of light each ink absorbs at full coverage: cyan takes red, magenta green, yellow blue
ABSORPTION = np.array([[0.05, 0.30, 0.88], [0.25, 0.88, 0.08], [0.88, 0.08, 0.02], [0.90, 0.90, 0.88]], np.float32)
MIN_CELL = 4.0            # texels a halftone cell needs to be drawn as dots at all
MAX_SUPERSAMPLE = 3       # the print is drawn this much finer than its texture at most, then averaged down


@dataclass
class PrintMedium:
    """One print's parameters; ``prepare`` draws its texture at the clip's texel size."""

    sheet: Sheet
    content_origin_mm: tuple[float, float]    # where the photo's top-left corner lies on the paper
    mm_per_pixel: float                       # the photo's pixels on paper
    process: str
    lpi: float                                # halftone lines per inch (laser, inkjet grain size)
    saturation: float
    black_replacement: float                  # share of the common grey printed with black ink
    paper_bgr: np.ndarray
    fibre: float
    gloss: float
    shininess: float
    brightness: float
    texture: list[np.ndarray] | None = None
    mm_per_texel: float = 0.0

    @classmethod
    def sample(cls, rng: np.random.Generator, content_size: tuple[int, int], face_box: np.ndarray) -> "PrintMedium":
        """A print of a ``content_size`` (w, h) photo whose face (``face_box``, photo pixels) is 35-110 mm wide."""
        face_mm = rng.uniform(35, 110)
        mm_per_pixel = face_mm / max(1.0, float(face_box[2] - face_box[0]))
        margin = rng.uniform(3, 25) if rng.random() < 0.5 else 0.0       # cut to the photo's edge, or a border
        width, height = (content_size[0] * mm_per_pixel + 2 * margin, content_size[1] * mm_per_pixel + 2 * margin)
        face_centre = margin + mm_per_pixel * (np.asarray(face_box[:2]) + np.asarray(face_box[2:]) + 1) / 2
        bend_axis = rng.choice([0.0, 90.0]) + rng.normal(0, 8)
        sheet = Sheet(width, height, (float(face_centre[0]), float(face_centre[1])), float(bend_axis),
                      int(rng.choice([1, -1])))
        process = str(rng.choice(PROCESSES, p=[0.45, 0.35, 0.2]))
        glossy = process == "photo" or rng.random() < 0.2
        paper = np.array([rng.uniform(0.86, 0.95), rng.uniform(0.9, 0.97), rng.uniform(0.92, 0.98)], np.float32)
        return cls(sheet, (margin, margin), mm_per_pixel, process, float(rng.uniform(60, 175)),
                   float(rng.uniform(0.7, 0.95)), float(rng.uniform(0.4, 0.9)), paper, float(rng.uniform(0.01, 0.05)),
                   float(rng.uniform(0.25, 0.9) if glossy else rng.uniform(0.03, 0.15)),
                   float(rng.uniform(40, 250) if glossy else rng.uniform(4, 15)), float(rng.uniform(0.8, 1.1)))

    def prepare(self, content: np.ndarray, mm_per_texel: float, rng: np.random.Generator) -> None:
        """Draws the print of ``content`` (BGR uint8) at ``mm_per_texel``."""
        cell = 25.4 / self.lpi / mm_per_texel          # texels per halftone cell
        factor = int(min(MAX_SUPERSAMPLE, max(1, math.ceil(MIN_CELL / cell))))
        fine = mm_per_texel / factor
        if self.process != "photo" and cell * factor < MIN_CELL:
            self.lpi = 25.4 / (MIN_CELL * fine)        # too fine to draw here: coarser dots, recorded in the meta
        size = (max(1, round(self.sheet.width / fine)), max(1, round(self.sheet.height / fine)))
        ink = self._inks(self._laid_out(content, fine, size))
        if self.process == "laser":
            ink = _halftone(ink, 25.4 / self.lpi / fine)
        elif self.process == "inkjet":
            ink = _droplets(ink, rng)
        reflectance = self.paper_bgr * _paper_fibres(size, fine, self.fibre, rng)[..., None]
        for channel in range(4):
            reflectance = reflectance * (1 - ink[..., channel:channel + 1] * ABSORPTION[channel])
        small = (max(1, round(self.sheet.width / mm_per_texel)), max(1, round(self.sheet.height / mm_per_texel)))
        reflectance = cv2.resize(reflectance, small, interpolation=cv2.INTER_AREA)
        coverage = np.ones(reflectance.shape[:2] + (1,), np.float32)
        self.texture = framed_texture(np.concatenate([reflectance, coverage], axis=-1))
        self.mm_per_texel = mm_per_texel

    def _laid_out(self, content: np.ndarray, fine: float, size: tuple[int, int]) -> np.ndarray:
        """The photo on the sheet's grid (BGR 0-1), paper white where it does not reach."""
        scale = self.mm_per_pixel / fine
        ox, oy = (np.asarray(self.content_origin_mm) + 0.5 * self.mm_per_pixel) / fine - 0.5
        placed = cv2.warpAffine(content.astype(np.float32) / 255, np.float32([[scale, 0, ox], [0, scale, oy]]), size,
                                flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=(1, 1, 1))
        return np.clip(placed, 0, 1)

    def _inks(self, bgr: np.ndarray) -> np.ndarray:
        """(h, w, 4) coverage of cyan, magenta, yellow and black, after the printer's saturation loss."""
        grey = bgr.mean(axis=-1, keepdims=True)
        bgr = grey + self.saturation * (bgr - grey)
        cmy = 1 - bgr[..., ::-1]                       # cyan from red, magenta from green, yellow from blue
        black = self.black_replacement * cmy.min(axis=-1, keepdims=True)
        cmy = (cmy - black) / np.maximum(1 - black, 1e-3)
        return np.clip(np.concatenate([cmy, black], axis=-1), 0, 1).astype(np.float32)

    def shade(self, hit: SurfaceHit, light: Light) -> tuple[np.ndarray, np.ndarray]:
        """(BGR 0-255 float, coverage) per pixel of the hit's region: the print under the room's light."""
        seen = sample_texture(self.texture, self.mm_per_texel, hit)
        diffuse, specular = shading(hit, light, self.shininess)
        lit = light.ambient + (1 - light.ambient) * 1.3 * diffuse
        colour = seen[..., :3] * lit[..., None] + self.gloss * specular[..., None]
        return 255 * self.brightness * colour * light.colour, seen[..., 3]

    def meta(self) -> dict:
        return {"process": self.process, "lpi": round(self.lpi, 1), "saturation": round(self.saturation, 3),
                "paper_bgr": [round(float(v), 3) for v in self.paper_bgr], "fibre": round(self.fibre, 3),
                "gloss": round(self.gloss, 3), "shininess": round(self.shininess, 1),
                "sheet_mm": [round(self.sheet.width, 1), round(self.sheet.height, 1)],
                "margin_mm": round(self.content_origin_mm[0], 1), "mm_per_photo_pixel": round(self.mm_per_pixel, 4),
                "brightness": round(self.brightness, 3)}


def _halftone(ink: np.ndarray, cell: float) -> np.ndarray:
    """Each ink as round dots on its own rotated grid of ``cell`` (sub)texels, edges anti-aliased."""
    height, width = ink.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    dots = np.empty_like(ink)
    softness = 1.0 / cell                               # one texel of ramp at the dot's edge
    for channel, angle in enumerate(SCREEN_ANGLES):
        turn = math.radians(angle)
        u = (xs * math.cos(turn) + ys * math.sin(turn)) * (2 * math.pi / cell)
        v = (-xs * math.sin(turn) + ys * math.cos(turn)) * (2 * math.pi / cell)
        threshold = 0.5 - 0.25 * (np.cos(u) + np.cos(v))           # low in the cell's middle: dots grow from there
        dots[..., channel] = np.clip((ink[..., channel] - threshold) / (2 * softness) + 0.5, 0, 1)
    return dots


def _droplets(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each ink as scattered droplets: coverage against a random threshold, droplets slightly spread."""
    dither = rng.random(ink.shape, dtype=np.float32)
    return cv2.GaussianBlur((ink > dither).astype(np.float32), (0, 0), 0.6).reshape(ink.shape)


def _paper_fibres(size: tuple[int, int], mm_per_texel: float, strength: float,
                  rng: np.random.Generator) -> np.ndarray:
    """(h, w) brightness of the bare paper around 1: millimetre-sized cloudiness and fine grain."""
    width, height = size
    cloud = cv2.resize(rng.normal(0, 1, (max(2, height // 24), max(2, width // 24))).astype(np.float32),
                       (width, height), interpolation=cv2.INTER_CUBIC)
    cloud = cv2.GaussianBlur(cloud, (0, 0), max(0.5, 1.5 / mm_per_texel))
    cloud /= max(float(cloud.std()), 1e-6)
    grain = rng.normal(0, 1, (height, width)).astype(np.float32)
    return 1 + strength * (0.6 * cloud + 0.4 * grain)
