"""What is around and over a rendered face: a seeded backdrop, and the camera's softness and noise."""
from __future__ import annotations

import math

import cv2
import numpy as np

_BACKGROUND_STREAM = 0xB6
_NOISE_STREAM = 0x2A
_WALL_STREAM = 0x3C


def render_background(seed: int, width: int, height: int) -> np.ndarray:
    """A seeded indoor-ish backdrop: a colour gradient with soft blobs and a few sharp edges."""
    rng = np.random.default_rng([_BACKGROUND_STREAM, seed])
    # Drawn at quarter size and enlarged, so blobs come out soft-edged like out-of-focus objects.
    small_w, small_h = max(4, width // 4), max(4, height // 4)
    colours = _muted(rng, 2)
    angle = rng.uniform(0, 2 * math.pi)
    ys, xs = np.mgrid[0:small_h, 0:small_w].astype(np.float32)
    ramp = (xs / small_w - 0.5) * math.cos(angle) + (ys / small_h - 0.5) * math.sin(angle) + 0.5
    ramp = np.clip(ramp, 0, 1)[..., None]
    small = (colours[0] * (1 - ramp) + colours[1] * ramp).astype(np.uint8)
    for colour in _muted(rng, int(rng.integers(3, 8))):
        _background_blob(small, rng, tuple(int(c) for c in colour))
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    for colour in _muted(rng, int(rng.integers(1, 4))):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = int(rng.integers(width // 8, width // 2)), int(rng.integers(height // 8, height // 2))
        cv2.rectangle(image, (x, y), (x + w, y + h), tuple(int(c) for c in colour), max(1, width // 100))
    return image


def render_textured_wall(seed: int, width: int, height: int) -> np.ndarray:
    """A seeded wall: a muted colour lit unevenly, with plaster- or fabric-like texture at several scales and
    a few straight edges (a door frame, a shelf)."""
    rng = np.random.default_rng([_WALL_STREAM, seed])
    colour = _muted(rng, 1)[0]
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    light = 1 - rng.uniform(0.1, 0.4) * (((xs - rng.uniform(0, width)) / width) ** 2
                                         + ((ys - rng.uniform(0, height)) / height) ** 2)
    texture = np.zeros((height, width), np.float32)
    for scale in (1, 4, 16):
        noise = rng.normal(0, 1, (max(2, height // scale), max(2, width // scale))).astype(np.float32)
        texture += rng.uniform(0.01, 0.05) * cv2.resize(noise, (width, height), interpolation=cv2.INTER_CUBIC)
    image = np.clip(colour * (light * (1 + texture))[..., None], 0, 255).astype(np.uint8)
    for edge in _muted(rng, int(rng.integers(1, 4))):
        if rng.random() < 0.5:
            x = int(rng.integers(0, width))
            cv2.line(image, (x, 0), (x, height), tuple(int(c) for c in edge), int(rng.integers(2, 12)))
        else:
            y = int(rng.integers(0, height))
            cv2.line(image, (0, y), (width, y), tuple(int(c) for c in edge), int(rng.integers(2, 12)))
    return image


def degrade(image: np.ndarray, blur_sigma: float, noise_std: float, seed: int) -> np.ndarray:
    """Camera softness and sensor noise; the noise is seeded so a render is reproducible."""
    if blur_sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), blur_sigma)
    if noise_std <= 0:
        return image
    rng = np.random.default_rng([_NOISE_STREAM, seed])
    # The difference of two uniform bytes: zero-mean, standard deviation 104.5, and several times cheaper to
    # draw than Gaussian samples; sensor noise this weak is not told apart by its distribution.
    first = rng.integers(0, 256, image.shape, dtype=np.uint8)
    second = rng.integers(0, 256, image.shape, dtype=np.uint8)
    noise = cv2.subtract(first, second, dtype=cv2.CV_32F) * np.float32(noise_std / 104.5)
    return cv2.add(image, noise, dtype=cv2.CV_8U)


def _muted(rng: np.random.Generator, n: int) -> np.ndarray:
    # Pull random colours towards grey: rooms are mostly desaturated, which keeps the face the salient object.
    colours = rng.uniform(20, 235, (n, 3))
    grey = colours.mean(axis=1, keepdims=True)
    return grey + rng.uniform(0.2, 0.7, (n, 1)) * (colours - grey)


def _background_blob(image: np.ndarray, rng: np.random.Generator, colour: tuple[int, ...]) -> None:
    h, w = image.shape[:2]
    centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
    if rng.random() < 0.5:
        axes = (int(rng.integers(1, max(2, w // 3))), int(rng.integers(1, max(2, h // 3))))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, colour, -1, cv2.LINE_AA)
    else:
        corner = (centre[0] + int(rng.integers(1, max(2, w // 2))), centre[1] + int(rng.integers(1, max(2, h // 2))))
        cv2.rectangle(image, centre, corner, colour, -1)
