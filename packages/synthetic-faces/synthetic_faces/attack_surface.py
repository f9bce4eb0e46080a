"""Where a held sheet (paper or a device) lands in the camera's frame: flat, or bent into a cylinder.

The sheet lives in its own millimetres, (0, 0) its top-left corner, and carries a texture of ``mm_per_texel``.
A flat sheet maps onto the frame by a homography; a bent one (paper held at two edges bows) is a section of a
cylinder, rolled without stretching, whose curvature may change from frame to frame. Every frame pixel's ray is
intersected with the surface exactly, so the same code draws both, and what it hands back (where on the sheet each
pixel looks, the 3-D point and the surface's normal there) is what the media shade.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.attack_motion import PinholeCamera

FLAT = 1e-7      # 1/mm: a curvature below this is a flat sheet (a radius of 10 km)


@dataclass(frozen=True)
class Sheet:
    """A rectangle ``width`` x ``height`` mm turned about ``pivot`` (mm on it); bent with ``curvature`` (1/mm) about
    an axis at ``bend_axis_deg`` in its plane (0: the axis runs along the sheet's height, so its sides curl)
    through its centre, its middle towards the camera when ``bulge`` is +1 and away when -1."""

    width: float
    height: float
    pivot: tuple[float, float]
    bend_axis_deg: float = 0.0
    bulge: int = 1

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.width / 2, self.height / 2])

    def bend_axes(self) -> tuple[np.ndarray, np.ndarray]:
        """(across the bend, along the cylinder's axis), unit vectors in the sheet's plane."""
        angle = math.radians(self.bend_axis_deg)
        return np.array([math.cos(angle), math.sin(angle)]), np.array([-math.sin(angle), math.cos(angle)])

    def points(self, sheet_mm: np.ndarray, curvature: float) -> np.ndarray:
        """(N, 2) sheet mm -> (N, 3) points about the pivot in the sheet's own frame (z away from the camera)."""
        across, along = self.bend_axes()
        rel = sheet_mm - self.centre
        s, t = rel @ across, rel @ along
        if curvature < FLAT:
            a, z = s, np.zeros_like(s)
        else:
            a, z = np.sin(curvature * s) / curvature, self.bulge * (1 - np.cos(curvature * s)) / curvature
        flat = self.centre - np.asarray(self.pivot) + a[:, None] * across + t[:, None] * along
        return np.column_stack([flat, z])

    def to_frame(self, camera: PinholeCamera, pose: tuple[np.ndarray, np.ndarray], sheet_mm: np.ndarray,
                 curvature: float) -> np.ndarray:
        """(N, 2) sheet mm -> (N, 2) frame pixels."""
        turn, shift = pose
        return camera.project(self.points(sheet_mm, curvature) @ turn.T + shift)

    def outline(self, per_side: int = 16) -> np.ndarray:
        """Points along the sheet's edge, in sheet mm."""
        ramp = np.linspace(0, 1, per_side, endpoint=False)
        w, h = self.width, self.height
        sides = [(ramp * w, 0 * ramp), (w + 0 * ramp, ramp * h), (w - ramp * w, h + 0 * ramp), (0 * ramp, h - ramp * h)]
        return np.concatenate([np.column_stack(side) for side in sides])


def flat_homography(sheet: Sheet, camera: PinholeCamera, pose: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """The 3x3 homography taking sheet mm to frame pixels when the sheet is flat."""
    turn, shift = pose
    about_pivot = np.array([[1, 0, -sheet.pivot[0]], [0, 1, -sheet.pivot[1]], [0, 0, 1]])
    return camera.matrix @ np.column_stack([turn[:, 0], turn[:, 1], shift]) @ about_pivot


@dataclass
class SurfaceHit:
    """What each pixel of a frame region sees of the sheet: ``region`` (x1, y1, x2, y2), and per pixel of it the
    sheet mm looked at (NaN off the sheet), the 3-D point and the unit normal facing the camera (camera frame)."""

    region: tuple[int, int, int, int]
    sheet_mm: np.ndarray     # (h, w, 2)
    points: np.ndarray       # (h, w, 3)
    normals: np.ndarray      # (h, w, 3)

    @property
    def on_sheet(self) -> np.ndarray:
        return ~np.isnan(self.sheet_mm[..., 0])


def hit_sheet(sheet: Sheet, camera: PinholeCamera, pose: tuple[np.ndarray, np.ndarray], curvature: float,
              slack_mm: float = 0.0) -> SurfaceHit | None:
    """Intersects every pixel's ray in the sheet's bounding box with the sheet (grown by ``slack_mm``, so that a
    texture's transparent border can soften its edge); None when it is out of view."""
    corners = sheet.to_frame(camera, pose, sheet.outline(), curvature)
    x1, y1 = np.floor(corners.min(axis=0)).astype(int) - 2
    x2, y2 = np.ceil(corners.max(axis=0)).astype(int) + 3
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, camera.width), min(y2, camera.height)
    if x2 <= x1 or y2 <= y1:
        return None
    ys, xs = np.mgrid[y1:y2, x1:x2].astype(np.float64)
    turn, shift = pose
    rays = camera.rays(xs, ys)
    origin = -turn.T @ shift              # the camera's centre in the sheet's frame
    direction = rays @ turn               # each ray turned into the sheet's frame
    across, along = sheet.bend_axes()
    offset = sheet.centre - np.asarray(sheet.pivot)
    o_a, d_a = (origin[:2] - offset) @ across, direction[..., :2] @ across
    o_t, d_t = (origin[:2] - offset) @ along, direction[..., :2] @ along
    o_z, d_z = origin[2], direction[..., 2]
    if curvature < FLAT:
        distance = -o_z / d_z
        s, t = o_a + distance * d_a, o_t + distance * d_t
        inside = _inside(sheet, s, t, across, along, slack_mm) & (distance > 0)
        normal_local = np.broadcast_to([0.0, 0.0, -1.0], s.shape + (3,))
    else:
        distance, s, t, normal_local, inside = _hit_cylinder(sheet, curvature, (o_a, o_t, o_z), (d_a, d_t, d_z),
                                                             across, along, slack_mm)
    sheet_mm = sheet.centre + s[..., None] * across + t[..., None] * along
    sheet_mm[~inside] = np.nan
    points = rays * distance[..., None]
    normals = normal_local @ turn.T
    return SurfaceHit((x1, y1, x2, y2), sheet_mm, points, normals)


def _hit_cylinder(sheet: Sheet, curvature: float, origin, direction, across, along, slack_mm: float):
    """Ray against a cylinder of radius 1/curvature touching the sheet's plane along its centre line: the nearest
    hit on the near half of the cylinder that lies on the sheet (a strongly bent sheet can hide part of itself)."""
    o_a, o_t, o_z = origin
    d_a, d_t, d_z = direction
    radius, bulge = 1 / curvature, sheet.bulge
    # |(a, z) - (0, bulge * radius)|^2 = radius^2, expanded so that a nearly flat sheet loses no precision
    qa = d_a ** 2 + d_z ** 2
    qb = 2 * (o_a * d_a + o_z * d_z - bulge * radius * d_z)
    qc = o_a ** 2 + o_z ** 2 - 2 * bulge * radius * o_z
    disc = qb ** 2 - 4 * qa * qc
    real = disc >= 0
    root = np.sqrt(np.where(real, disc, 0))
    q = -0.5 * (qb + np.copysign(root, qb))
    q = np.where(q == 0, 1e-12, q)
    first, second = np.minimum(q / qa, qc / q), np.maximum(q / qa, qc / q)
    found = np.zeros(qa.shape, bool)
    best = np.full(qa.shape, np.nan)
    arc, axial = np.zeros(qa.shape), np.zeros(qa.shape)
    for distance in (first, second):
        a, z = o_a + distance * d_a, o_z + distance * d_z
        cosine = 1 - bulge * z * curvature
        s = np.arctan2(a * curvature, cosine) / curvature
        t = o_t + distance * d_t
        good = real & ~found & (distance > 0) & (cosine > 0) & _inside(sheet, s, t, across, along, slack_mm)
        best, arc, axial = np.where(good, distance, best), np.where(good, s, arc), np.where(good, t, axial)
        found |= good
    angle = curvature * arc
    across3, normal_z = np.append(across, 0.0), -np.cos(angle)
    normal = bulge * np.sin(angle)[..., None] * across3 + normal_z[..., None] * np.array([0.0, 0.0, 1.0])
    return np.where(found, best, 1.0), arc, axial, normal, found


def _inside(sheet: Sheet, s: np.ndarray, t: np.ndarray, across: np.ndarray, along: np.ndarray,
            slack_mm: float) -> np.ndarray:
    flat = sheet.centre + s[..., None] * across + t[..., None] * along
    return ((flat[..., 0] >= -slack_mm) & (flat[..., 0] <= sheet.width + slack_mm) & (flat[..., 1] >= -slack_mm)
            & (flat[..., 1] <= sheet.height + slack_mm))


TEXTURE_BORDER = 2      # transparent texels around a sheet's texture: its edge comes out anti-aliased


def sample_texture(texture: list[np.ndarray], mm_per_texel: float, hit: SurfaceHit) -> np.ndarray:
    """The texture (``framed_texture``'s parts) as seen by each pixel of ``hit``'s region, bilinear: (h, w, channels),
    zero off the sheet."""
    where = hit.sheet_mm / mm_per_texel - 0.5 + TEXTURE_BORDER
    where = np.where(np.isnan(where), -10.0, where).astype(np.float32)
    seen = [cv2.remap(part, where[..., 0], where[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                      borderValue=0).reshape(where.shape[:2] + (-1,)) for part in texture]
    return np.concatenate(seen, axis=-1)


def framed_texture(sheet_image: np.ndarray) -> list[np.ndarray]:
    """A sheet's texture (h, w, channels), its last channel the sheet's coverage, inside TEXTURE_BORDER of zeros;
    in parts of at most four channels, as OpenCV remaps at most four at once."""
    border = TEXTURE_BORDER
    return [cv2.copyMakeBorder(np.ascontiguousarray(sheet_image[..., c:c + 4]), border, border, border, border,
                               cv2.BORDER_CONSTANT, value=0) for c in range(0, sheet_image.shape[2], 4)]
