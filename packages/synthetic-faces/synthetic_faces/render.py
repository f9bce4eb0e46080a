"""Draws a synthetic face with OpenCV primitives, posed, lit and degraded like a loosely cropped photo.

Every shape is a polygon in face coordinates (u across, v down, both 1.0 at the oval's edge) mapped to
pixels by ``_Head``: features on the face surface turn with yaw and pitch (``surface``), while the head's
outline, neck and shoulders do not (``outline``), which is what makes a turned face look turned. Roll, scale
and position are applied in that same mapping, so shapes are drawn once, sharp and sub-pixel, instead of
being drawn upright and resampled with warpAffine; the landmarks go through the identical mapping.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.backdrop import degrade, render_background
from synthetic_faces.draw import (bounds, disc, ellipse, fill, fill_both, fill_clipped, polyline, ramp, scaled,
                                   superellipse)
from synthetic_faces.identity import HAIR_BALD, HAIR_CURLY, HAIR_FRINGE, HAIR_LONG, HAIR_SHORT, Identity

# Random streams derived from a background seed; distinct so the noise does not mirror the background.
_STRANDS_STREAM = 0x5A        # per identity: the same person has the same strands in every image

_LIGHT_ELEVATION = 0.85       # radians between the light and the camera axis
_PUPIL_BGR = (18, 16, 16)
_SCLERA_BGR = (222, 226, 230)
_FRAME_BGR = (38, 36, 34)


@dataclass(frozen=True)
class Nuisance:
    """Per-image variation that does not change who the person is. Angles in radians unless named _deg."""

    yaw: float                    # positive turns the face towards the image's right
    pitch: float                  # positive tips the face down
    roll_deg: float
    scale: float                  # multiplies the identity's face size
    shift_xy: tuple[float, float]  # face centre offset, fraction of the image size
    light_angle: float            # direction the light comes from, in the image plane
    light_strength: float         # 0 = flat light, about 0.6 = strong side light
    expression: float             # 0 = neutral, 1 = broad open smile
    background_seed: int
    blur_sigma: float             # pixels, at the rendered size
    noise_std: float              # grey levels


def sample_nuisance(rng: np.random.Generator, strength: float = 1.0) -> Nuisance:
    """A random moderate nuisance; ``strength`` 0 gives a frontal, centred, sharp face."""
    if strength < 0:
        raise ValueError(f"nuisance strength must be >= 0, got {strength}")
    s = strength
    return Nuisance(
        yaw=float(rng.uniform(-0.35, 0.35) * s),
        pitch=float(rng.uniform(-0.15, 0.15) * s),
        roll_deg=float(rng.uniform(-12.0, 12.0) * s),
        scale=float(1.0 + rng.uniform(-0.08, 0.08) * s),
        shift_xy=(float(rng.uniform(-0.05, 0.05) * s), float(rng.uniform(-0.04, 0.04) * s)),
        light_angle=float(rng.uniform(0.0, 2.0 * math.pi)),
        light_strength=float(rng.uniform(0.15, 0.3 + 0.3 * min(s, 1.0))),
        expression=float(rng.uniform(0.0, 1.0) ** 2 * min(s, 1.0)),
        background_seed=int(rng.integers(0, 2**31 - 1)),
        blur_sigma=float(rng.uniform(0.3, 0.5 + 0.6 * s)),
        noise_std=float(rng.uniform(1.0, 2.0 + 3.0 * s)),
    )


def render_face(identity: Identity, nuisance: Nuisance, size: int = 160) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` x ``size`` BGR uint8 face photo and its 5 landmarks (float32, image pixels).

    Landmarks are in image order: [eye on the image's left, eye on the image's right, nose tip,
    mouth corner on the image's left, mouth corner on the image's right].
    """
    if size < 32:
        raise ValueError(f"face image size must be >= 32 pixels, got {size}")
    image = render_background(nuisance.background_seed, size, size)
    centre = (size * (0.5 + nuisance.shift_xy[0]), size * (0.48 + nuisance.shift_xy[1]))
    landmarks, _ = paint_face(image, identity, nuisance, centre, identity.face_width * size * nuisance.scale)
    return degrade(image, nuisance.blur_sigma, nuisance.noise_std, nuisance.background_seed), landmarks


def paint_face(canvas: np.ndarray, identity: Identity, nuisance: Nuisance, centre_xy: tuple[float, float],
               face_width_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Draws the person into ``canvas`` (in place), with shoulders reaching the canvas bottom.

    Uses the pose, light and expression of ``nuisance`` (its scale, shift, background, blur and noise are
    the caller's business). Returns the 5 landmarks (as ``render_face``) and the face box x1, y1, x2, y2
    (forehead to chin, cheek to cheek), both float32 in canvas pixels.
    """
    a = face_width_px / 2.0
    head = _Head(centre_xy, a, a * identity.face_height / identity.face_width, nuisance)
    mask = np.zeros(canvas.shape[:2], np.uint8)
    layout = _Layout(identity, nuisance.expression)
    _paint_body(canvas, mask, head, identity, layout)
    _paint_face_details(canvas, head, identity, layout)
    _paint_hair(canvas, mask, head, identity, layout)
    if identity.glasses:
        _paint_glasses(canvas, head, identity, layout)
    _shade(canvas, mask, head, nuisance)
    return _landmarks(head, identity, layout), _face_box(head, identity)


class _Head:
    """Maps face coordinates to canvas pixels for one posed head."""

    def __init__(self, centre_xy: tuple[float, float], a: float, b: float, nuisance: Nuisance):
        self.cx, self.cy = centre_xy
        self.a, self.b = a, b
        self.yaw = nuisance.yaw
        self.sin_yaw, self.cos_yaw = math.sin(nuisance.yaw), math.cos(nuisance.yaw)
        self.sin_pitch, self.cos_pitch = math.sin(nuisance.pitch), math.cos(nuisance.pitch)
        roll = math.radians(nuisance.roll_deg)
        self.roll = roll
        self.cos_r, self.sin_r = math.cos(roll), math.sin(roll)

    def outline(self, u, v) -> np.ndarray:
        """Points of the head's silhouette and body: they do not turn; the jaw, neck and body lean with yaw."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        lower = np.minimum(np.maximum(v, 0.0), 1.0)
        return self._to_image(u + 0.25 * self.sin_yaw * lower * lower, v)

    def surface(self, u, v, depth=0.0) -> np.ndarray:
        """Points on the face, turned with the head; ``depth`` lifts a point off the surface (nose tip)."""
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        # An ellipsoid flattened at the front: features near the midline move most when the head turns.
        z = np.sqrt(np.maximum(1.0 - 0.8 * u * u - 0.3 * v * v, 0.05)) + depth
        x = u * self.cos_yaw + z * self.sin_yaw
        z_turned = z * self.cos_yaw - u * self.sin_yaw
        # Pitch about the ellipsoid's centre, less the shift of a frontal point so the face does not slide.
        y = v * self.cos_pitch + (z_turned - 0.8) * self.sin_pitch
        return self._to_image(x, y)

    def _to_image(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        px, py = x * self.a, y * self.b
        points = np.empty(np.broadcast_shapes(np.shape(px), np.shape(py)) + (2,))
        points[..., 0] = self.cx + self.cos_r * px - self.sin_r * py
        points[..., 1] = self.cy + self.sin_r * px + self.cos_r * py
        return points

    def local(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Canvas pixels back to un-rolled face units (the inverse of ``_to_image``)."""
        dx, dy = xs - self.cx, ys - self.cy
        return (self.cos_r * dx + self.sin_r * dy) / self.a, (-self.sin_r * dx + self.cos_r * dy) / self.b


class _Layout:
    """Where the features sit, in face units, for one identity and expression."""

    def __init__(self, identity: Identity, expression: float):
        self.eye_v = identity.eye_height
        self.brow_v = self.eye_v - identity.brow_height
        self.nose_v = self.eye_v + identity.nose_length
        self.mouth_v = self.nose_v + identity.philtrum
        self.hairline_v = max(-0.62, self.brow_v - 0.32)
        # The mouth opens only in the upper half of the expression range: a mild smile keeps the lips closed.
        self.mouth_open = float(np.clip((expression - 0.45) / 0.55, 0.0, 1.0)) * 0.11
        self.mouth_half = identity.mouth_width * (1.0 + 0.15 * expression)
        self.corner_v = self.mouth_v - 0.055 * expression


def _paint_body(canvas, mask, head: _Head, identity: Identity, layout: _Layout) -> None:
    skin = identity.skin_bgr
    bottom = _bottom_v(head, canvas.shape[0])
    torso_u = np.array([0.5, 1.3, 2.0, 2.4, 2.6, 2.6])
    torso_v = np.array([1.2, 1.4, 1.7, 2.2, 2.8, bottom])
    torso = head.outline(np.r_[torso_u, -torso_u[::-1]], np.r_[torso_v, torso_v[::-1]])
    # The torso stays out of the lighting mask: it reaches beyond the shaded region around the head.
    fill(canvas, torso, identity.shirt_bgr)
    if identity.hair_style == HAIR_LONG:
        fill_both(canvas, mask, _long_hair_back(head), identity.hair_bgr)
    neck = head.outline([-0.46, 0.46, 0.52, 0.0, -0.52], [0.5, 0.5, 1.3, 1.65, 1.3])
    fill_both(canvas, mask, neck, scaled(skin, 0.8))
    near_side = -1 if head.yaw > 0.12 else (1 if head.yaw < -0.12 else 0)
    if identity.hair_style != HAIR_LONG:
        for side in (-1, 1):
            if side != near_side:
                _paint_ear(canvas, mask, head, identity, layout, side)
    fill_both(canvas, mask, head.outline(*_face_outline(identity.jaw)), skin)
    if identity.hair_style != HAIR_LONG and near_side:
        _paint_ear(canvas, mask, head, identity, layout, near_side)


def _bottom_v(head: _Head, canvas_height: int) -> float:
    """The face-units v that reaches below the canvas bottom whatever the roll, so the torso fills it."""
    return (canvas_height - head.cy) / head.b + 2.0 * head.a / head.b + 3.0


def _face_outline(jaw: float, points: int = 72) -> tuple[np.ndarray, np.ndarray]:
    t = ramp(0, 2 * math.pi, points, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    # Lower half is a superellipse: exponent 2 is a round chin, larger exponents square the jaw.
    power = np.where(s > 0, 2.0 / (2.0 + 1.8 * jaw), 1.0)
    u = np.sign(c) * np.abs(c) ** power
    v = np.sign(s) * np.abs(s) ** power
    u = u * (1.0 - (0.05 + 0.22 * (1.0 - jaw)) * np.clip(v, 0, 1) ** 2)
    return u, v


def _paint_ear(canvas, mask, head: _Head, identity: Identity, layout: _Layout, side: int) -> None:
    w, h = 0.14 * identity.ear_size, 0.2 * identity.ear_size
    # Ears sit a little behind the head's widest line, so turning moves both towards the back of the head.
    centre_u = side * (0.98 + 0.6 * w) * math.cos(head.yaw) - 0.12 * math.sin(head.yaw)
    centre_v = layout.eye_v + 0.14
    ear = head.outline(*ellipse(centre_u, centre_v, w, h))
    fill_both(canvas, mask, ear, scaled(identity.skin_bgr, 0.92))
    start = -0.45 * math.pi if side > 0 else 0.55 * math.pi      # the helix, on the ear's outer side
    inner = head.outline(*ellipse(centre_u, centre_v, w * 0.6, h * 0.7, start, start + 0.9 * math.pi))
    polyline(canvas, inner, scaled(identity.skin_bgr, 0.65), _px(head, 0.025))


def _paint_face_details(canvas, head: _Head, identity: Identity, layout: _Layout) -> None:
    skin = identity.skin_bgr
    if identity.beard > 0:
        _paint_beard(canvas, head, identity, layout)
    if identity.mole_size > 0:
        mole_u, mole_v = identity.mole_uv
        fill(canvas, head.surface(*ellipse(mole_u, mole_v, identity.mole_size, identity.mole_size * 0.8)),
              scaled(skin, 0.45))
    for side in (-1, 1):
        _paint_eye(canvas, head, identity, layout, side)
        _paint_brow(canvas, head, identity, layout, side)
    _paint_nose(canvas, head, identity, layout)
    _paint_mouth(canvas, head, identity, layout)


def _paint_eye(canvas, head: _Head, identity: Identity, layout: _Layout, side: int) -> None:
    skin = identity.skin_bgr
    eu, ev, w = side * identity.eye_spacing, layout.eye_v, identity.eye_size
    up = w * identity.eye_openness * head.a / head.b
    socket = head.surface(*ellipse(eu, ev - 0.2 * up, w * 1.35, up * 2.3))
    fill(canvas, socket, scaled(skin, 0.9))
    x = ramp(-1.0, 1.0, 15)
    # The inner corner (towards the nose) sits a little lower, as in real eyes.
    tilt = 0.12 * up * x * side
    upper = head.surface(eu + x * w, ev - up * (1 - x * x) ** 0.8 - tilt, -0.02)
    lower = head.surface(eu + x[::-1] * w, ev + 0.55 * up * (1 - x[::-1] ** 2) ** 0.9 - tilt[::-1], -0.02)
    opening = np.concatenate([upper, lower])
    iris_centre = head.surface(eu, ev, 0.0)[None]
    iris_r = 0.44 * w * head.a
    fill_clipped(canvas, opening, lambda roi, offset: _draw_iris(roi, iris_centre - offset, iris_r, identity))
    crease = head.surface(eu + x * w * 0.9, ev - up * (1.55 * (1 - x * x) ** 0.7) - tilt, -0.02)
    polyline(canvas, crease, scaled(skin, 0.72), _px(head, 0.02))
    polyline(canvas, lower, scaled(skin, 0.75), _px(head, 0.015))
    polyline(canvas, upper, scaled(identity.hair_bgr, 0.3), _px(head, 0.04))


def _draw_iris(roi: np.ndarray, centre: np.ndarray, radius: float, identity: Identity) -> None:
    roi[:] = _SCLERA_BGR
    disc(roi, centre[0], radius, identity.iris_bgr)
    disc(roi, centre[0], radius * 0.45, _PUPIL_BGR)
    disc(roi, centre[0] + np.array([-0.3, -0.35]) * radius, radius * 0.2, (245, 245, 245))


def _paint_brow(canvas, head: _Head, identity: Identity, layout: _Layout, side: int) -> None:
    inner = identity.eye_spacing - identity.eye_size * 0.95
    outer = identity.eye_spacing + identity.eye_size * 1.25
    x = ramp(0.0, 1.0, 9)
    u = side * (inner + x * (outer - inner))
    rise = math.tan(math.radians(identity.brow_angle)) * (outer - inner) * head.a / head.b
    centre_v = layout.brow_v - 0.035 * np.sin(math.pi * x) - rise * x
    half = identity.brow_thickness * (1.1 - 0.6 * x) / 2
    brow = head.surface(np.r_[u, u[::-1]], np.r_[centre_v - half, (centre_v + half)[::-1]], 0.02)
    colour = 0.6 * np.array(identity.hair_bgr) + 0.4 * 0.45 * np.array(identity.skin_bgr)
    fill(canvas, brow, tuple(int(c) for c in colour))


def _paint_nose(canvas, head: _Head, identity: Identity, layout: _Layout) -> None:
    skin, nv, nw = identity.skin_bgr, layout.nose_v, identity.nose_width
    # Two soft lines along the bridge: after the blur they read as the nose's side shading.
    v = ramp(layout.eye_v + 0.06, nv - 0.07, 6)
    for side in (-1, 1):
        bridge = head.surface(side * ramp(0.09, 0.11, 6), v, 0.06 + 0.18 * (v - v[0]) / (v[-1] - v[0]))
        polyline(canvas, bridge, scaled(skin, 0.88), _px(head, 0.04))
    fill(canvas, head.surface(*ellipse(0.0, nv + 0.06, nw * 0.95, 0.045), 0.1), scaled(skin, 0.78))
    for side in (-1, 1):
        wing = head.surface(*ellipse(side * nw * 0.72, nv - 0.005, nw * 0.4, 0.055), 0.12)
        fill(canvas, wing, scaled(skin, 0.9))
        start = -0.6 * math.pi if side > 0 else 0.4 * math.pi      # the wing's outer rim
        rim = ellipse(side * nw * 0.72, nv - 0.005, nw * 0.42, 0.06, start, start + 1.2 * math.pi)
        polyline(canvas, head.surface(*rim, 0.12), scaled(skin, 0.68), _px(head, 0.02))
        nostril = head.surface(*ellipse(side * nw * 0.42, nv + 0.04, nw * 0.28, 0.022), 0.15)
        fill(canvas, nostril, scaled(skin, 0.4))
    fill(canvas, head.surface(*ellipse(0.0, nv - 0.02, nw * 0.45, 0.05), 0.28), scaled(skin, 1.05))


def _paint_mouth(canvas, head: _Head, identity: Identity, layout: _Layout) -> None:
    half, thick = layout.mouth_half, identity.lip_thickness
    x = ramp(-1.0, 1.0, 17)
    line_v = layout.mouth_v - (layout.mouth_v - layout.corner_v) * x * x
    gap = layout.mouth_open / 2 * (1 - x * x)
    bow = 1.0 - 0.25 * np.exp(-(x / 0.18) ** 2)          # the dip of the cupid's bow
    upper_top = line_v - gap - thick * 0.85 * np.sqrt(1 - x * x) * bow
    lower_bottom = line_v + gap + thick * 1.1 * np.sqrt(1 - x * x)
    u = x * half
    lips = identity.lip_bgr
    if layout.mouth_open > 0:
        inside = head.surface(np.r_[u, u[::-1]], np.r_[line_v - gap, (line_v + gap)[::-1]])
        fill(canvas, inside, (40, 32, 70))
        teeth_bottom = line_v - gap + 0.45 * 2 * gap
        teeth = head.surface(np.r_[u * 0.8, u[::-1] * 0.8], np.r_[line_v - gap, teeth_bottom[::-1]])
        fill(canvas, teeth, (200, 208, 214))
    fill(canvas, head.surface(np.r_[u, u[::-1]], np.r_[upper_top, (line_v - gap)[::-1]]), scaled(lips, 0.88))
    fill(canvas, head.surface(np.r_[u, u[::-1]], np.r_[line_v + gap, lower_bottom[::-1]]), lips)
    polyline(canvas, head.surface(u, line_v - gap), scaled(lips, 0.5), _px(head, 0.02))


def _paint_beard(canvas, head: _Head, identity: Identity, layout: _Layout) -> None:
    # A sparse beard is mostly skin showing through; a dense one is nearly the hair colour.
    cover = 0.35 + 0.55 * identity.beard
    colour = (1 - cover) * np.array(identity.skin_bgr) + cover * 0.9 * np.array(identity.hair_bgr)
    top_v = layout.eye_v + 0.12
    cheek = head.surface([-0.95, -0.55, -identity.nose_width, 0.0, identity.nose_width, 0.55, 0.95],
                         [top_v, layout.nose_v, layout.nose_v + 0.08, layout.nose_v + 0.07,
                          layout.nose_v + 0.08, layout.nose_v, top_v])
    u, v = _face_outline(identity.jaw)
    keep = v > top_v
    order = np.argsort(np.arctan2(v[keep], u[keep]))       # right cheek, chin, left cheek
    jaw = head.outline(u[keep][order] * 1.01, v[keep][order] * 1.01)
    fill(canvas, np.concatenate([cheek, jaw]), tuple(int(c) for c in colour))


def _paint_hair(canvas, mask, head: _Head, identity: Identity, layout: _Layout) -> None:
    style, colour = identity.hair_style, identity.hair_bgr
    if style == HAIR_BALD:
        # A crescent of hair above each ear, following the skull.
        t = ramp(math.asin(layout.eye_v - 0.42), math.asin(layout.eye_v + 0.08), 9)
        inner = 1.03 - 0.11 * np.sin(ramp(0.0, math.pi, 9))[::-1]   # thickest halfway, tapering to points
        for side in (-1, 1):
            u = side * np.r_[1.03 * np.cos(t), inner * np.cos(t[::-1])]
            v = np.r_[1.03 * np.sin(t), inner * np.sin(t[::-1])]
            fill_both(canvas, mask, head.outline(u, v), colour)
        return
    volume = {HAIR_SHORT: 1.06, HAIR_LONG: 1.1, HAIR_FRINGE: 1.09, HAIR_CURLY: 1.2}[style]
    bumps = 0.06 if style == HAIR_CURLY else 0.0
    fill_both(canvas, mask, _hair_cap(head, layout, volume, bumps), colour)
    if style == HAIR_FRINGE:
        fill(canvas, _fringe(head, layout), colour)
    if style == HAIR_LONG:
        for side in (-1, 1):
            lock = head.outline(side * np.array([0.82, 0.9, 1.05, 1.25, 1.2, 1.05]),
                                np.array([layout.eye_v - 0.3, layout.eye_v + 0.2, 0.8, 1.0, 0.1, -0.5]))
            fill_both(canvas, mask, lock, colour)
    _hair_strands(canvas, head, identity, volume)


def _hair_cap(head: _Head, layout: _Layout, volume: float, bumps: float) -> np.ndarray:
    side_v = layout.eye_v - 0.08
    start = math.pi + math.asin(min(0.9, max(-0.9, -side_v / volume)))
    t = ramp(start, 3 * math.pi - start, 40)
    radius = volume + bumps * np.abs(np.sin(7 * t))
    outer = head.outline(radius * np.cos(t), (radius + 0.04) * np.sin(t))
    x = ramp(1.0, -1.0, 21)
    # Hairline: high at the middle of the forehead, coming down to the temples.
    hairline = head.surface(0.95 * x, layout.hairline_v + (side_v - layout.hairline_v) * x ** 4, 0.02)
    return np.concatenate([outer, hairline])


def _fringe(head: _Head, layout: _Layout) -> np.ndarray:
    x = ramp(-0.88, 0.88, 19)
    teeth = np.where(np.arange(19) % 2 == 0, 0.0, 0.05)
    bottom_v = layout.brow_v - 0.06 - teeth - 0.12 * x ** 4
    top = head.surface(x[::-1], np.full(19, layout.hairline_v - 0.1), 0.03)
    return np.concatenate([head.surface(x, bottom_v, 0.03), top])


def _long_hair_back(head: _Head) -> np.ndarray:
    t = ramp(math.pi, 2 * math.pi, 20)
    top = np.stack([1.12 * np.cos(t), 1.16 * np.sin(t)])
    right = np.array([[1.2, 1.28, 1.2, 0.8], [0.4, 1.2, 1.65, 1.6]])
    left = np.array([[-0.8, -1.2, -1.28, -1.2], [1.6, 1.65, 1.2, 0.4]])
    u, v = np.concatenate([top, right, left], axis=1)
    return head.outline(u, v)


def _hair_strands(canvas, head: _Head, identity: Identity, volume: float) -> None:
    # A few lighter and darker strokes per person: texture that also helps tell similar hair colours apart.
    rng = np.random.default_rng([_STRANDS_STREAM, identity.seed])
    for _ in range(7):
        t0 = rng.uniform(math.pi * 1.15, math.pi * 1.85)
        t = ramp(t0, t0 + rng.uniform(-0.5, 0.5), 6)
        r = ramp(volume * 0.97, (volume + 1.0) / 2 * 0.9, 6)
        strand = head.outline(r * np.cos(t), r * np.sin(t) - 0.02)
        shade = 1.3 if rng.random() < 0.5 else 0.7
        polyline(canvas, strand, scaled(identity.hair_bgr, shade, lift=10), _px(head, 0.02))


def _paint_glasses(canvas, head: _Head, identity: Identity, layout: _Layout) -> None:
    w = identity.eye_size * 1.5
    h = identity.eye_size * 1.1 * head.a / head.b
    thickness = _px(head, 0.03)
    for side in (-1, 1):
        eu = side * identity.eye_spacing
        rim = head.surface(*superellipse(eu, layout.eye_v, w, h), 0.12)
        polyline(canvas, rim, _FRAME_BGR, thickness, closed=True)
        temple = head.surface([eu + side * w, side * 1.0], [layout.eye_v - 0.3 * h, layout.eye_v - 0.3 * h], 0.1)
        polyline(canvas, temple, _FRAME_BGR, thickness)
    inner = identity.eye_spacing - w
    bridge = head.surface(ramp(-inner, inner, 5), layout.eye_v - 0.4 * h - 0.03 * np.cos(
        ramp(-1.5, 1.5, 5)), 0.16)
    polyline(canvas, bridge, _FRAME_BGR, thickness)


def _shade(canvas: np.ndarray, mask: np.ndarray, head: _Head, nuisance: Nuisance) -> None:
    """Lights the head as an ellipsoid: a side light plus darkening towards the silhouette's edge."""
    x1, y1, x2, y2 = bounds(head.outline(*ellipse(0.0, 0.15, 1.55, 1.55)), canvas.shape)
    if x2 <= x1 or y2 <= y1:
        return
    qx, qy = head.local(np.arange(x1, x2, dtype=np.float32)[None, :], np.arange(y1, y2, dtype=np.float32)[:, None])
    r2 = qx * qx + qy * qy
    nz = np.sqrt(np.maximum(1.0 - r2, 0.0))
    inv = 1.0 / np.sqrt(np.maximum(r2, 1.0))
    # The light direction is given in the image; the normals are in the head's rolled frame.
    angle = nuisance.light_angle - head.roll
    lx = math.cos(angle) * math.sin(_LIGHT_ELEVATION)
    ly = math.sin(angle) * math.sin(_LIGHT_ELEVATION)
    lz = math.cos(_LIGHT_ELEVATION)
    lambert = qx * inv * lx + qy * inv * ly + nz * lz
    shade = (1.0 + nuisance.light_strength * (lambert - lz)) * (0.82 + 0.18 * nz)
    weight = mask[y1:y2, x1:x2].astype(np.float32) * (1.0 / 255.0)
    factor = (1.0 + weight * (shade - 1.0)).astype(np.float32)
    roi = canvas[y1:y2, x1:x2]
    roi[:] = cv2.multiply(roi, cv2.merge([factor] * 3), dtype=cv2.CV_8U)


def _landmarks(head: _Head, identity: Identity, layout: _Layout) -> np.ndarray:
    eyes = head.surface([-identity.eye_spacing, identity.eye_spacing], [layout.eye_v] * 2, 0.0)
    nose = head.surface(0.0, layout.nose_v - 0.02, 0.28)[None]
    corners = head.surface([-layout.mouth_half, layout.mouth_half], [layout.corner_v] * 2)
    return np.concatenate([eyes, nose, corners]).astype(np.float32)


def _face_box(head: _Head, identity: Identity) -> np.ndarray:
    u, v = _face_outline(identity.jaw)
    keep = v > -0.6            # from the forehead down: the skull top under the hair is not "face"
    points = head.outline(u[keep], v[keep])
    return np.array([*points.min(axis=0), *points.max(axis=0)], np.float32)


def _px(head: _Head, fraction: float) -> int:
    """A line thickness of ``fraction`` of the face half-width, at least one pixel."""
    return max(1, int(round(fraction * head.a)))


