"""Synthetic people: one seeded parameter vector per identity.

Ranges are wide on purpose: the parameters are what a verifier must learn to tell apart, while the
per-image nuisance (``render.Nuisance``) stays moderate. Lengths are fractions of the face's half-width
(horizontal) or half-height (vertical) unless a comment says otherwise, so an identity renders the same
person at any image size.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Separates the identity random stream from the nuisance streams that also start from an identity's seed.
_IDENTITY_STREAM = 0x1D

HAIR_STYLES = ("short", "long", "bald", "fringe", "curly")
HAIR_SHORT, HAIR_LONG, HAIR_BALD, HAIR_FRINGE, HAIR_CURLY = range(len(HAIR_STYLES))

# Skin tones from light to dark (BGR); a tone is interpolated between neighbours so every shade can occur.
_SKIN_TONES = np.array([
    [178, 204, 242], [150, 182, 228], [118, 154, 206], [92, 126, 176], [66, 96, 140], [52, 72, 108],
], np.float64)
# Black, dark brown, brown, auburn, blond, grey, light brown, with how common each is.
_HAIR_COLOURS = np.array([
    [22, 22, 26], [28, 42, 62], [40, 66, 104], [34, 62, 142], [92, 160, 206], [150, 150, 156], [70, 100, 130],
], np.float64)
_HAIR_WEIGHTS = np.array([0.28, 0.2, 0.15, 0.07, 0.12, 0.1, 0.08])
_IRIS_COLOURS = np.array([
    [30, 62, 104], [20, 36, 58], [168, 122, 72], [84, 132, 92], [128, 130, 122], [52, 102, 124],
], np.float64)
_IRIS_WEIGHTS = np.full(len(_IRIS_COLOURS), 1.0 / len(_IRIS_COLOURS))


@dataclass(frozen=True)
class Identity:
    """One synthetic person. Colours are BGR; see the module docstring for the length units."""

    seed: int
    face_width: float       # face oval width as a fraction of the image width (before nuisance scale)
    face_height: float      # face oval height, same unit as face_width (oval from skull top to chin)
    jaw: float              # 0 = narrow pointed chin, 1 = broad square jaw
    skin_bgr: tuple[int, int, int]
    eye_spacing: float      # eye centre distance from the face's midline
    eye_size: float         # half-width of one eye
    iris_bgr: tuple[int, int, int]
    brow_thickness: float
    brow_height: float      # gap between eye line and brow line
    brow_angle: float       # degrees; positive raises the outer ends
    nose_length: float      # eye line to nose tip
    nose_width: float       # half-width of the nostril wings
    mouth_width: float      # half-width, corner to corner / 2
    lip_thickness: float
    lip_bgr: tuple[int, int, int]
    hair_style: int         # index into HAIR_STYLES
    hair_bgr: tuple[int, int, int]
    eye_height: float       # eye line position, 0 = the oval's centre, negative = higher
    eye_openness: float     # upper-lid height over eye half-width
    philtrum: float         # nose tip to mouth line
    ear_size: float
    beard: float            # 0 = clean shaven, up to 1 = full dark beard
    glasses: int            # 0 = none, 1 = thin frames
    mole_uv: tuple[float, float]
    mole_size: float        # 0 = no mole
    shirt_bgr: tuple[int, int, int]


def identity_from_seed(seed: int) -> Identity:
    """The person for ``seed``; the same seed always gives the same person."""
    if seed < 0:
        raise ValueError(f"identity seed must be >= 0, got {seed}")
    rng = np.random.default_rng([_IDENTITY_STREAM, seed])
    face_width = rng.uniform(0.50, 0.60)
    skin = _skin_colour(rng)
    eye_size = rng.uniform(0.15, 0.21)
    return Identity(
        seed=seed,
        face_width=float(face_width),
        face_height=float(face_width * rng.uniform(1.20, 1.38)),
        jaw=float(rng.uniform(0.0, 1.0)),
        skin_bgr=skin,
        eye_spacing=float(eye_size + rng.uniform(0.20, 0.29)),
        eye_size=float(eye_size),
        iris_bgr=_palette_colour(rng, _IRIS_COLOURS, _IRIS_WEIGHTS),
        brow_thickness=float(rng.uniform(0.028, 0.07)),
        brow_height=float(rng.uniform(0.13, 0.24)),
        brow_angle=float(rng.uniform(-12.0, 14.0)),
        nose_length=float(rng.uniform(0.30, 0.44)),
        nose_width=float(rng.uniform(0.13, 0.22)),
        mouth_width=float(rng.uniform(0.26, 0.40)),
        lip_thickness=float(rng.uniform(0.035, 0.075)),
        lip_bgr=_lip_colour(rng, skin),
        hair_style=int(rng.integers(len(HAIR_STYLES))),
        hair_bgr=_palette_colour(rng, _HAIR_COLOURS, _HAIR_WEIGHTS),
        eye_height=float(rng.uniform(-0.10, 0.03)),
        eye_openness=float(rng.uniform(0.42, 0.66)),
        philtrum=float(rng.uniform(0.14, 0.22)),
        ear_size=float(rng.uniform(0.8, 1.2)),
        beard=float(rng.uniform(0.35, 1.0) if rng.random() < 0.2 else 0.0),
        glasses=int(rng.random() < 0.15),
        mole_uv=(float(rng.uniform(-0.6, 0.6)), float(rng.uniform(0.05, 0.6))),
        mole_size=float(rng.uniform(0.025, 0.045) if rng.random() < 0.3 else 0.0),
        shirt_bgr=tuple(int(c) for c in rng.integers(30, 220, 3)),
    )


def identity_name(identity: Identity) -> str:
    """The person's folder name in a synthetic dataset and their label in scene ground truth: ``id0042``."""
    return f"id{identity.seed:04d}"


def identities(n: int, first_seed: int = 0) -> list[Identity]:
    """``n`` people with consecutive seeds starting at ``first_seed``."""
    if n < 0:
        raise ValueError(f"number of identities must be >= 0, got {n}")
    return [identity_from_seed(first_seed + i) for i in range(n)]


def _skin_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    position = rng.uniform(0, len(_SKIN_TONES) - 1)
    low = int(position)
    high = min(low + 1, len(_SKIN_TONES) - 1)
    tone = _SKIN_TONES[low] + (position - low) * (_SKIN_TONES[high] - _SKIN_TONES[low])
    # A shared brightness jitter plus a small warmth shift: real skin varies along these, not in hue.
    tone = tone * rng.uniform(0.94, 1.06) + np.array([-1.0, 0.0, 1.0]) * rng.uniform(-8, 8)
    return _bgr(tone)


def _lip_colour(rng: np.random.Generator, skin: tuple[int, int, int]) -> tuple[int, int, int]:
    # Lips are skin shifted towards red and darker, so they contrast on every skin tone.
    base = np.array(skin, np.float64) * np.array([0.66, 0.62, 0.86])
    return _bgr(base + np.array([0.0, 0.0, 18.0]) + rng.normal(0, 6, 3))


def _palette_colour(rng: np.random.Generator, palette: np.ndarray, weights: np.ndarray) -> tuple[int, int, int]:
    # Mostly a brightness change: independent per-channel jitter would tint grey hair green or purple.
    colour = palette[rng.choice(len(palette), p=weights)]
    return _bgr(colour * rng.uniform(0.85, 1.15) + rng.normal(0, 4, 3))


def _bgr(values: np.ndarray) -> tuple[int, int, int]:
    b, g, r = (int(round(v)) for v in np.clip(values, 0, 255))
    return b, g, r
