"""A deterministic kiosk-camera video: people walk up one at a time, stay a while, and leave.

Any frame can be rendered on its own (random access, no state between frames), so a test can ask for frame
417 directly and a video source can loop or seek.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synthetic_faces.identity import Identity
from synthetic_faces.render import Nuisance, paint_face, sample_nuisance

_ROOM_STREAM = 0x7E
_VISIT_STREAM = 0x51
_FRAME_STREAM = 0xF4
_CAMERA_BLUR = 0.8          # pixels; applied to the room once and to the person's region per frame
_CAMERA_NOISE = 2.5         # grey levels
_NOISE_MARGIN = 32          # the noise field is this much larger, and each frame reads it at a random offset
_FACE_BOX_SPAN = 1.6        # face box height over the oval's half-height (forehead at v=-0.6 to chin at 1)


@dataclass(frozen=True)
class SceneFrame:
    """One frame and what is in it; ``landmarks`` as ``render_face`` returns them."""

    image: np.ndarray
    identity: Identity | None
    box: np.ndarray | None
    landmarks: np.ndarray | None


@dataclass(frozen=True)
class _Visit:
    """How one person comes, stays and goes: fixed for the whole visit."""

    identity: Identity
    face_height: float      # face box height as a fraction of the frame height
    centre_x: float         # where the face settles, fraction of the frame width
    centre_y: float
    enter_side: int
    look: Nuisance          # light, expression and resting pose for the visit
    phase: float


class SceneScript:
    """``len(people) * (gap_frames + frames_per_person)`` frames: for each person an empty room, then them."""

    def __init__(self, people: list[Identity], frames_per_person: int = 30, gap_frames: int = 5,
                 width: int = 640, height: int = 480, seed: int = 0, face_scale: float = 1.0):
        if not people:
            raise ValueError("a scene needs at least one person")
        if frames_per_person < 1 or gap_frames < 0:
            raise ValueError(f"need frames_per_person >= 1 and gap_frames >= 0, got {frames_per_person}, "
                             f"{gap_frames}")
        if not 0.05 <= face_scale <= 2.0:
            raise ValueError(f"face_scale must be between 0.05 and 2, got {face_scale}")
        if width < 64 or height < 64:
            raise ValueError(f"scene frames must be at least 64x64, got {width}x{height}")
        self.people = list(people)
        self.frames_per_person = frames_per_person
        self.gap_frames = gap_frames
        self.width, self.height, self.seed = width, height, seed
        self.face_scale = face_scale      # faces this many times their kiosk size: 0.1 at 1080p is ~40 px, far away
        self._room = _render_room(np.random.default_rng([_ROOM_STREAM, seed]), width, height)
        self._noise_up, self._noise_down = _noise_field(np.random.default_rng([_ROOM_STREAM, seed, 1]),
                                                        width, height)
        self._visits = [_plan_visit(person, np.random.default_rng([_VISIT_STREAM, seed, i]))
                        for i, person in enumerate(self.people)]

    def __len__(self) -> int:
        return len(self.people) * (self.gap_frames + self.frames_per_person)

    def frame(self, index: int) -> tuple[np.ndarray, Identity | None, np.ndarray | None]:
        """(BGR uint8 frame, who is in it or None in a gap, face box x1, y1, x2, y2 or None)."""
        details = self.frame_details(index)
        return details.image, details.identity, details.box

    def frame_details(self, index: int) -> SceneFrame:
        """The frame with the person's landmarks as well."""
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} is outside the scene's {len(self)} frames")
        slot, offset = divmod(index, self.gap_frames + self.frames_per_person)
        rng = np.random.default_rng([_FRAME_STREAM, self.seed, index])
        image = self._room.copy()
        if offset < self.gap_frames:
            return SceneFrame(self._add_noise(image, rng), None, None, None)
        visit = self._visits[slot]
        centre, face_width, nuisance = self._pose(visit, offset - self.gap_frames)
        landmarks, box = paint_face(image, visit.identity, nuisance, centre, face_width)
        _blur_person(image, centre, face_width, _CAMERA_BLUR)
        return SceneFrame(self._add_noise(image, rng), visit.identity, box, landmarks)

    def _pose(self, visit: _Visit, step: int) -> tuple[tuple[float, float], float, Nuisance]:
        """Where the face is at ``step`` of the visit: approach, small sway while standing, departure."""
        n = self.frames_per_person
        arrive = min(1.0, (step + 1) / max(1.0, 0.25 * n))
        leave = min(1.0, (n - step) / max(1.0, 0.2 * n))
        presence = _ease(min(arrive, leave))
        t = step + visit.phase
        # Walking in, a person is further away (smaller) and off to one side.
        scale = 0.82 + 0.18 * presence
        box_h = visit.face_height * self.height * scale * self.face_scale
        b = box_h / _FACE_BOX_SPAN
        a = b * visit.identity.face_width / visit.identity.face_height
        # In a tall, narrow frame the head must still fit across it: shrink the face rather than crop it.
        fit = min(1.0, (self.width - 4) / (2.7 * a))
        a, b = a * fit, b * fit
        x = (visit.centre_x + visit.enter_side * 0.14 * (1 - presence) + 0.012 * math.sin(t / 2.7)) * self.width
        y = (visit.centre_y + 0.008 * math.sin(t / 1.9)) * self.height
        # Keep the whole head (hair included) inside the frame so every person frame shows a full face.
        x = min(max(x, 1.35 * a + 2), self.width - 1.35 * a - 2)
        y = min(max(y, 1.3 * b + 2), self.height - 1.05 * b - 2)
        look = visit.look
        nuisance = Nuisance(
            yaw=0.6 * look.yaw + 0.1 * math.sin(t / 3.1) + 0.12 * visit.enter_side * (1 - presence),
            pitch=look.pitch + 0.04 * math.sin(t / 4.3),
            roll_deg=look.roll_deg + 3.0 * math.sin(t / 3.7),
            scale=1.0, shift_xy=(0.0, 0.0),
            light_angle=look.light_angle, light_strength=look.light_strength,
            expression=float(np.clip(look.expression + 0.3 * math.sin(t / 5.0), 0.0, 1.0)),
            background_seed=0, blur_sigma=_CAMERA_BLUR, noise_std=_CAMERA_NOISE,
        )
        return (x, y), 2 * a, nuisance

    def _add_noise(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # A window of a fixed noise field at a random offset: as random-looking per frame as fresh noise,
        # at a fraction of the cost of drawing 900k normal samples every frame.
        dx, dy = rng.integers(0, _NOISE_MARGIN, 2)
        window = np.s_[dy:dy + self.height, dx:dx + self.width]
        image = cv2.add(image, self._noise_up[window])
        return cv2.subtract(image, self._noise_down[window])


def _plan_visit(identity: Identity, rng: np.random.Generator) -> _Visit:
    return _Visit(
        identity=identity,
        face_height=float(rng.uniform(0.3, 0.42)),
        centre_x=float(rng.uniform(0.38, 0.62)),
        centre_y=float(rng.uniform(0.38, 0.48)),
        enter_side=int(rng.choice([-1, 1])),
        look=sample_nuisance(rng, 0.6),
        phase=float(rng.uniform(0, 100)),
    )


def _ease(p: float) -> float:
    return p * p * (3 - 2 * p)


def _blur_person(image: np.ndarray, centre: tuple[float, float], face_width: float, sigma: float) -> None:
    """Blurs the region the person was drawn in; the rest of the room was blurred once, when rendered."""
    h, w = image.shape[:2]
    x1, x2 = max(0, int(centre[0] - 3 * face_width)), min(w, int(centre[0] + 3 * face_width) + 1)
    y1 = max(0, int(centre[1] - 1.8 * face_width))
    if x2 > x1 and h > y1:
        image[y1:, x1:x2] = cv2.GaussianBlur(image[y1:, x1:x2], (0, 0), sigma)


def _noise_field(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian noise split into its positive and negative parts, so it applies with two saturating adds."""
    shape = (height + _NOISE_MARGIN, width + _NOISE_MARGIN, 3)
    noise = np.rint(rng.standard_normal(shape, dtype=np.float32) * _CAMERA_NOISE)
    return np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)


def _render_room(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A wall with a door, a window, a picture and a plant, above a floor; camera-blurred."""
    wall = rng.uniform(120, 215) * (1 + rng.uniform(-0.12, 0.12, 3))
    floor_y = int(height * rng.uniform(0.72, 0.82))
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    # Light from the ceiling: the wall darkens downwards, a little more on one side.
    xs = np.linspace(-1, 1, width, dtype=np.float32)[None, :, None]
    shade = 1.05 - 0.25 * ys + rng.uniform(-0.08, 0.08) * xs
    room = np.clip(wall[None, None, :] * shade, 0, 255).astype(np.uint8)
    floor = tuple(int(c) for c in rng.uniform(40, 140) * (1 + rng.uniform(-0.2, 0.2, 3)))
    cv2.rectangle(room, (0, floor_y), (width, height), floor, -1)
    cv2.line(room, (0, floor_y), (width, floor_y), tuple(int(c * 0.6) for c in floor), max(2, height // 80))
    # The door on one side of the window, the picture and the plant on the other, so nothing overlaps.
    door_left = bool(rng.random() < 0.5)
    _door(room, rng, floor_y, door_left)
    _window(room, rng)
    _picture(room, rng, not door_left)
    _plant(room, rng, floor_y, not door_left)
    return cv2.GaussianBlur(room, (0, 0), _CAMERA_BLUR)


def _door(room: np.ndarray, rng: np.random.Generator, floor_y: int, left: bool) -> None:
    h, w = room.shape[:2]
    door_w, door_h = int(w * rng.uniform(0.14, 0.2)), int(floor_y * rng.uniform(0.72, 0.85))
    x = int((rng.uniform(0.02, 0.1) if left else rng.uniform(0.72, 0.8)) * w)
    colour = tuple(int(c) for c in rng.uniform(50, 170) * np.array([0.7, 0.85, 1.0]))
    cv2.rectangle(room, (x, floor_y - door_h), (x + door_w, floor_y), colour, -1)
    cv2.rectangle(room, (x, floor_y - door_h), (x + door_w, floor_y), (235, 235, 235), max(2, w // 120))
    handle = (x + int(door_w * 0.85), floor_y - door_h // 2)
    cv2.circle(room, handle, max(2, w // 160), (60, 160, 190), -1)


def _window(room: np.ndarray, rng: np.random.Generator) -> None:
    h, w = room.shape[:2]
    # Between x = 0.32 and 0.69 of the width: clear of a door on either side.
    x1, y1 = int(w * rng.uniform(0.32, 0.45)), int(h * rng.uniform(0.06, 0.14))
    x2, y2 = x1 + int(w * rng.uniform(0.16, 0.24)), y1 + int(h * rng.uniform(0.22, 0.32))
    sky = np.array([235, 215, 190]) * rng.uniform(0.85, 1.05)
    cv2.rectangle(room, (x1, y1), (x2, y2), tuple(int(c) for c in np.clip(sky, 0, 255)), -1)
    frame = (245, 245, 240)
    thickness = max(2, w // 100)
    cv2.rectangle(room, (x1, y1), (x2, y2), frame, thickness)
    cv2.line(room, ((x1 + x2) // 2, y1), ((x1 + x2) // 2, y2), frame, thickness)
    cv2.line(room, (x1, (y1 + y2) // 2), (x2, (y1 + y2) // 2), frame, thickness)


def _picture(room: np.ndarray, rng: np.random.Generator, left: bool) -> None:
    h, w = room.shape[:2]
    x1, y1 = int(w * (rng.uniform(0.03, 0.14) if left else rng.uniform(0.74, 0.84))), int(h * rng.uniform(0.1, 0.25))
    x2, y2 = x1 + int(w * rng.uniform(0.08, 0.14)), y1 + int(h * rng.uniform(0.1, 0.18))
    cv2.rectangle(room, (x1, y1), (x2, y2), tuple(int(c) for c in rng.uniform(40, 200, 3)), -1)
    for _ in range(3):
        centre = (int(rng.integers(x1, x2)), int(rng.integers(y1, y2)))
        radius = int(rng.integers(3, max(4, (x2 - x1) // 3)))
        cv2.circle(room, centre, radius, tuple(int(c) for c in rng.uniform(40, 220, 3)), -1)
    cv2.rectangle(room, (x1, y1), (x2, y2), (30, 30, 40), max(2, w // 200))


def _plant(room: np.ndarray, rng: np.random.Generator, floor_y: int, left: bool) -> None:
    h, w = room.shape[:2]
    x = int(w * (rng.uniform(0.05, 0.18) if left else rng.uniform(0.82, 0.95)))
    pot_w, pot_h = w // 18, h // 10
    cv2.rectangle(room, (x - pot_w, floor_y - pot_h), (x + pot_w, floor_y + h // 40), (50, 80, 150), -1)
    for _ in range(14):
        angle = rng.uniform(-2.6, -0.5)
        length = rng.uniform(0.08, 0.2) * h
        tip = (int(x + math.cos(angle) * length), int(floor_y - pot_h + math.sin(angle) * length))
        axes = (max(2, int(length / 2)), max(2, int(length / 7)))
        centre = ((x + tip[0]) // 2, (floor_y - pot_h + tip[1]) // 2)
        green = (int(rng.uniform(30, 70)), int(rng.uniform(100, 160)), int(rng.uniform(40, 80)))
        cv2.ellipse(room, centre, axes, math.degrees(angle), 0, 360, green, -1, cv2.LINE_AA)
