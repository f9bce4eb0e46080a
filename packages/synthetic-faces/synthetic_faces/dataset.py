"""Writes synthetic people as identity folders, the layout real face datasets use (``root/<identity>/<image>``)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synthetic_faces.identity import identities, identity_name
from synthetic_faces.render import render_face, sample_nuisance

# Separates the per-image nuisance stream from the identity stream that starts from the same seed.
_NUISANCE_STREAM = 0x4E
LANDMARKS_FILE = "landmarks.txt"


@dataclass
class DatasetStats:
    identities: int
    images: int
    root: str


def write_identity_folders(root, n_identities: int, images_per_identity: int, seed: int = 0,
                           size: int = 160, progress=None) -> DatasetStats:
    """Renders identities ``seed`` .. ``seed + n_identities - 1`` into ``root/id<seed>/<n>.png``.

    Also writes ``root/landmarks.txt``, one line per image: ``relpath x1 .. x5 y1 .. y5`` in image pixels, the
    layout of ``faces80/landmarks.txt``. The same arguments give byte-identical files. ``progress``, when
    given, wraps the list of images to render (a progress bar).
    """
    if n_identities < 1 or images_per_identity < 1:
        raise ValueError(f"need at least one identity and one image each, got {n_identities} x {images_per_identity}")
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    people = identities(n_identities, seed)
    for person in people:
        (root / identity_name(person)).mkdir(exist_ok=True)
    jobs = [(person, n) for person in people for n in range(images_per_identity)]
    lines = []
    for person, n in (progress(jobs) if progress else jobs):
        # Each image's nuisance depends only on the person and the image number, so a person's images
        # do not change when the dataset grows or starts at another seed.
        nuisance = sample_nuisance(np.random.default_rng([_NUISANCE_STREAM, person.seed, n]))
        image, landmarks = render_face(person, nuisance, size)
        relpath = f"{identity_name(person)}/{n:04d}.png"
        if not cv2.imwrite(str(root / relpath), image):
            raise OSError(f"could not write {root / relpath}")
        coords = np.concatenate([landmarks[:, 0], landmarks[:, 1]])
        lines.append(relpath + " " + " ".join(f"{c:.2f}" for c in coords))
    (root / LANDMARKS_FILE).write_text("\n".join(lines) + "\n")
    return DatasetStats(identities=len(people), images=len(lines), root=str(root))

