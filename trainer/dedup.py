"""Near-duplicate faces found by a perceptual hash, so that a copied photo does not count twice in training.

The difference hash: the face in grey, shrunk to 9x8, one bit per pair of horizontal neighbours (is the left
one brighter). Copies, re-encodings and slight rescalings of one photo land within a few bits of each other;
two photos of one person taken apart usually do not, so the default distance is kept small.
"""
from __future__ import annotations

import cv2
import numpy as np

HASH_SIDE = 8          # 64-bit hash


def difference_hash(image: np.ndarray) -> np.ndarray:
    """64 bits (uint8 array of 8 bytes) for a BGR image."""
    grey = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if image.ndim == 3 else image
    small = cv2.resize(grey, (HASH_SIDE + 1, HASH_SIDE), interpolation=cv2.INTER_AREA).astype(np.int16)
    return np.packbits(small[:, 1:] < small[:, :-1])                              # 8 bytes


def near_duplicates(images: np.ndarray, max_distance: int) -> list[tuple[int, int, int]]:
    """(kept, dropped, distance) for every image within ``max_distance`` bits of an earlier kept one."""
    hashes = np.stack([difference_hash(image) for image in images])              # N,8
    kept: list[int] = []
    found = []
    for index, code in enumerate(hashes):
        if kept:
            distances = np.unpackbits(hashes[kept] ^ code, axis=1).sum(axis=1)
            nearest = int(np.argmin(distances))
            if distances[nearest] <= max_distance:
                found.append((kept[nearest], index, int(distances[nearest])))
                continue
        kept.append(index)
    return found
