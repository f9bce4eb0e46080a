"""Presentation attacks on a face camera, rendered from photos of real people: a photo printed on paper (``print``),
a photo on a phone or tablet (``replay``), or a video on one (``video_replay``), held up to a kiosk camera by a hand.

``AttackClip(kind, content_size, face, seed)`` draws every parameter of one clip from its seed (the medium, the
hand's motion, the lamp, the camera, the background); ``render(content_at, face_at)`` yields its frames, each with
the ground truth of that frame (pose, where the face's corners and key points land, the homography from the content
to the frame while the sheet is flat); ``meta()`` holds the rest. Nothing here knows how an attack is detected.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from synthetic_faces.attack_camera import CameraPipeline
from synthetic_faces.attack_light import sample_light
from synthetic_faces.attack_motion import camera_with_fov, sample_hand_motion
from synthetic_faces.attack_print import PrintMedium
from synthetic_faces.attack_screen import ScreenMedium
from synthetic_faces.attack_surface import FLAT, flat_homography, hit_sheet
from synthetic_faces.backdrop import render_background, render_textured_wall

ATTACK_KINDS = {"print": PrintMedium, "replay": ScreenMedium, "video_replay": ScreenMedium}
FACE_PX = (60.0, 250.0)           # the face's width in the frame, at the clip's start
TEXELS_PER_PIXEL = 1.6            # a sheet's texture is drawn this much finer than the nearest frame shows it
_CLIP_STREAM = 0xA77AC


@dataclass(frozen=True)
class Face:
    """A face in the content: its box (x1, y1, x2, y2) and key points (K, 2), content pixels."""

    box: np.ndarray
    points: np.ndarray


@dataclass(frozen=True)
class ClipShape:
    width: int = 640
    height: int = 480
    fps: float = 15.0
    frames: int = 30


class AttackClip:
    """One attack clip's parameters, all drawn from ``seed``; the content is given when rendering."""

    def __init__(self, kind: str, content_size: tuple[int, int], face: Face, seed: int,
                 shape: ClipShape = ClipShape(), bend: bool | None = None):
        """``face``: the face the clip is framed on (for a video, typical of it); ``bend``: force a print flat
        (False) or bent (True) instead of drawing it (half of prints are bent)."""
        if kind not in ATTACK_KINDS:
            raise ValueError(f"unknown attack kind {kind!r}; choose from {', '.join(ATTACK_KINDS)}")
        rng = np.random.default_rng([_CLIP_STREAM, seed])
        self.kind, self.seed, self.shape, self.face = kind, seed, shape, face
        self.fov = float(rng.uniform(55, 78))
        self.camera = camera_with_fov(shape.width, shape.height, self.fov)
        top = min(FACE_PX[1], 0.5 * shape.height)
        self.face_px = float(math.exp(rng.uniform(math.log(min(FACE_PX[0], top)), math.log(top))))
        self.medium = ATTACK_KINDS[kind].sample(rng, content_size, face.box)
        face_mm = float(face.box[2] - face.box[0]) * self.medium.mm_per_pixel
        self.motion = sample_hand_motion(rng, self.camera, shape.frames, shape.fps,
                                         self.camera.focal * face_mm / self.face_px, self.face_px)
        self.curvature = self._bend(rng, bend)
        middle = len(self.motion) // 2
        pose = self.motion.pose(middle)
        spot = np.array([rng.uniform(0, self.medium.sheet.width), rng.uniform(0, self.medium.sheet.height)])
        point = self.medium.sheet.points(spot[None], self.curvature[middle])[0] @ pose[0].T + pose[1]
        self.light = sample_light(rng, point, pose[0] @ np.array([0.0, 0.0, -1.0]))
        self.pipeline = CameraPipeline.sample(rng)
        self.background_kind = str(rng.choice(["room", "wall"]))
        draw = render_background if self.background_kind == "room" else render_textured_wall
        self.background = draw(int(rng.integers(2 ** 31)), shape.width, shape.height).astype(np.float32)
        self.background *= np.float32(rng.uniform(0.6, 1.1))
        nearest = float(self.motion.pivot[:, 2].min())
        mm_per_texel = nearest / self.camera.focal / TEXELS_PER_PIXEL
        self._rng = rng
        self._mm_per_texel = mm_per_texel
        if isinstance(self.medium, ScreenMedium):
            self.medium.prepare(mm_per_texel, rng)

    def _bend(self, rng: np.random.Generator, bend: bool | None) -> np.ndarray:
        """Per-frame curvature (1/mm): a bent print bows by 25-100 degrees end to end and flexes in the hand."""
        frames = len(self.motion)
        bent = isinstance(self.medium, PrintMedium) and (rng.random() < 0.5 if bend is None else bend)
        if not bent:
            return np.zeros(frames)
        sheet = self.medium.sheet
        axis = math.radians(sheet.bend_axis_deg)
        extent = abs(sheet.width * math.cos(axis)) + abs(sheet.height * math.sin(axis))
        base = math.radians(rng.uniform(25, 100)) / extent
        times = np.arange(frames) / self.shape.fps
        flex = 0.25 * rng.uniform(0.3, 1.0) * np.sin(2 * math.pi * times / rng.uniform(1.0, 3.0) + rng.uniform(0, 6.3))
        return base * (1 + flex)

    def render(self, content_at: Callable[[int], np.ndarray],
               face_at: Callable[[int], Face | None]) -> Iterator[tuple[np.ndarray, dict]]:
        """(frame BGR uint8, that frame's truth) for each frame; ``content_at(i)``: what the sheet shows in frame i
        (the same array every frame for a photo), ``face_at(i)``: the face in it, or None."""
        sheet = self.medium.sheet
        shown, texture = None, None
        for index in range(len(self.motion)):
            content = content_at(index)
            if isinstance(self.medium, PrintMedium):
                if self.medium.texture is None:
                    self.medium.prepare(content, self._mm_per_texel, self._rng)
            elif content is not shown:
                shown, texture = content, self.medium.texture(content)
            pose, curvature = self.motion.pose(index), float(self.curvature[index])
            scene = self.background.copy()
            hit = hit_sheet(sheet, self.camera, pose, curvature, slack_mm=3 * self._mm_per_texel)
            motion_px = self._motion_px(index)
            if hit is not None:
                if isinstance(self.medium, PrintMedium):
                    colour, coverage = self.medium.shade(hit, self.light)
                else:
                    colour, coverage = self.medium.shade(hit, self.light, self.pipeline, texture, index)
                self._composite(scene, hit.region, colour, coverage, motion_px)
            frame = self.pipeline.develop(scene, seed=self.seed * 100_003 + index)
            yield frame, self._truth(index, face_at(index), motion_px)

    def _composite(self, scene: np.ndarray, region, colour: np.ndarray, coverage: np.ndarray,
                   motion_px: np.ndarray) -> None:
        """The sheet over the background, smeared by its motion (the background stays sharp)."""
        x1, y1, x2, y2 = region
        pad = int(math.ceil(np.hypot(*motion_px) * self.pipeline.shutter)) + 1
        px1, py1 = max(0, x1 - pad), max(0, y1 - pad)
        px2, py2 = min(scene.shape[1], x2 + pad), min(scene.shape[0], y2 + pad)
        layer = np.zeros((py2 - py1, px2 - px1, 4), np.float32)
        coverage = np.nan_to_num(coverage)[..., None]
        layer[y1 - py1:y2 - py1, x1 - px1:x2 - px1] = np.concatenate([np.nan_to_num(colour) * coverage, coverage], -1)
        layer = self.pipeline.smear(layer, motion_px)
        under = scene[py1:py2, px1:px2]
        scene[py1:py2, px1:px2] = layer[..., :3] + under * (1 - np.clip(layer[..., 3:], 0, 1))

    def _motion_px(self, index: int) -> np.ndarray:
        """How far the face's centre moves over one frame time around frame ``index`` (pixels)."""
        before, after = max(0, index - 1), min(len(self.motion) - 1, index + 1)
        if before == after:
            return np.zeros(2)
        ends = [self._project(i, np.asarray(self.medium.sheet.pivot)[None])[0] for i in (before, after)]
        return (ends[1] - ends[0]) / (after - before)

    def _project(self, index: int, sheet_mm: np.ndarray) -> np.ndarray:
        return self.medium.sheet.to_frame(self.camera, self.motion.pose(index), sheet_mm, float(self.curvature[index]))

    def project_content(self, index: int, points: np.ndarray) -> np.ndarray:
        """(N, 2) content pixels -> where frame ``index`` shows them (pixels), bent or flat."""
        medium = self.medium
        sheet_mm = np.asarray(medium.content_origin_mm) + (np.asarray(points, float) + 0.5) * medium.mm_per_pixel
        return self._project(index, sheet_mm)

    def content_to_frame(self, index: int) -> np.ndarray | None:
        """The 3x3 homography from content pixels to frame pixels in frame ``index``; None while the sheet is bent."""
        if self.curvature[index] >= FLAT:
            return None
        m = self.medium.mm_per_pixel
        ox, oy = np.asarray(self.medium.content_origin_mm) + 0.5 * m
        to_sheet = np.array([[m, 0, ox], [0, m, oy], [0, 0, 1]])
        homography = flat_homography(self.medium.sheet, self.camera, self.motion.pose(index)) @ to_sheet
        return homography / homography[2, 2]

    def _truth(self, index: int, face: Face | None, motion_px: np.ndarray) -> dict:
        motion = self.motion
        truth = {"frame": index, "yaw_deg": round(float(motion.yaw[index]), 3),
                 "pitch_deg": round(float(motion.pitch[index]), 3), "roll_deg": round(float(motion.roll[index]), 3),
                 "tilt_deg": round(motion.tilt(index), 3), "distance_mm": round(float(motion.pivot[index, 2]), 2),
                 "offset_mm": [round(float(v), 2) for v in motion.pivot[index, :2]],
                 "curvature_per_mm": round(float(self.curvature[index]), 6),
                 "motion_blur_px": round(float(np.hypot(*motion_px)) * self.pipeline.shutter, 3)}
        homography = self.content_to_frame(index)
        truth["content_to_frame"] = None if homography is None else homography.tolist()
        if face is not None:
            x1, y1, x2, y2 = (float(v) for v in face.box)
            corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]])
            truth["face_corners"] = _rounded(self.project_content(index, corners))
            truth["face_points"] = _rounded(self.project_content(index, face.points))
        else:
            truth["face_corners"] = truth["face_points"] = None
        return truth

    def meta(self) -> dict:
        """The clip's parameters (everything but the per-frame truth)."""
        return {"kind": self.kind, "seed": self.seed, "frames": self.shape.frames, "fps": self.shape.fps,
                "size": [self.shape.width, self.shape.height], "horizontal_fov_deg": round(self.fov, 2),
                "focal_px": round(self.camera.focal, 2), "face_px_at_start": round(self.face_px, 1),
                "face_box_content": [round(float(v), 2) for v in self.face.box],
                "tilt_deg_range": [round(min(self.motion.tilt(i) for i in range(len(self.motion))), 2),
                                   round(max(self.motion.tilt(i) for i in range(len(self.motion))), 2)],
                "distance_mm_range": [round(float(self.motion.pivot[:, 2].min()), 1),
                                      round(float(self.motion.pivot[:, 2].max()), 1)],
                "bent": bool(self.curvature.max() >= FLAT),
                "bend": ({"axis_deg": round(self.medium.sheet.bend_axis_deg, 2), "bulge": self.medium.sheet.bulge,
                          "curvature_per_mm_range": [round(float(self.curvature.min()), 6),
                                                     round(float(self.curvature.max()), 6)]}
                         if self.curvature.max() >= FLAT else None),
                "medium": self.medium.meta(), "light": self.light.meta(), "camera": self.pipeline.meta(),
                "background": self.background_kind}


def _rounded(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]
