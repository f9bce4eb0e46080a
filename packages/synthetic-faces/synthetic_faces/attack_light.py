"""The room's light on a held sheet: one lamp (a point), an ambient share, and the highlight it makes.

Paper is mostly matte with a broad, weak sheen (glossy photo paper a sharper one); a screen's glass is a mirror
with a small, bright highlight. The highlight is computed per pixel from the surface's normal, so it slides over
the sheet as the hand tilts it, and spreads along a bent sheet. Half the time the lamp is placed where the sheet
mirrors it into the camera in the middle of the clip, as glare on a held photo is common.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthetic_faces.attack_surface import SurfaceHit


@dataclass(frozen=True)
class Light:
    position: np.ndarray      # camera-frame mm
    colour: np.ndarray        # BGR gains of the lamp (its colour temperature)
    ambient: float            # share of the light that comes from everywhere
    aimed: bool               # placed for glare in the middle of the clip

    def meta(self) -> dict:
        return {"position_mm": [round(float(v), 1) for v in self.position],
                "colour_bgr": [round(float(v), 3) for v in self.colour], "ambient": round(self.ambient, 3),
                "aimed_for_glare": self.aimed}


def sample_light(rng: np.random.Generator, point: np.ndarray, normal: np.ndarray) -> Light:
    """A lamp 1-2.5 m away; with glare, near the mirror direction of the camera's ray at ``point`` (the sheet at
    mid-clip, camera frame, with its ``normal``), else overhead somewhere."""
    warmth = rng.uniform(-0.12, 0.12)
    colour = np.array([1 - warmth, 1.0, 1 + warmth])
    aimed = bool(rng.random() < 0.5)
    reach = rng.uniform(1000, 2500)
    if aimed:
        view = point / np.linalg.norm(point)
        mirrored = view - 2 * (view @ normal) * normal
        direction = mirrored + rng.normal(0, 0.08, 3)
    else:
        direction = np.array([rng.uniform(-1, 1), rng.uniform(-1.5, -0.4), rng.uniform(-0.8, 0.6)])
    position = point + reach * direction / np.linalg.norm(direction)
    return Light(position, colour, float(rng.uniform(0.3, 0.6)), aimed)


def shading(hit: SurfaceHit, light: Light, shininess: float) -> tuple[np.ndarray, np.ndarray]:
    """(diffuse, specular) per pixel of the hit: Lambert's cosine, and a Blinn-Phong lobe normalised so that its
    peak is 1 whatever its sharpness."""
    to_light = light.position - hit.points
    to_light /= np.linalg.norm(to_light, axis=-1, keepdims=True)
    to_eye = -hit.points / np.linalg.norm(hit.points, axis=-1, keepdims=True)
    halfway = to_light + to_eye
    halfway /= np.linalg.norm(halfway, axis=-1, keepdims=True)
    diffuse = np.clip(np.einsum("...c,...c->...", hit.normals, to_light), 0, None)
    specular = np.clip(np.einsum("...c,...c->...", hit.normals, halfway), 0, None) ** shininess
    return diffuse.astype(np.float32), specular.astype(np.float32)
