"""Aligned face crops in memory, identity and image splits, augmentation and batching.

The sets this trainer sees are small (hundreds to a few thousand 112x112 crops), so every image is decoded
once into one uint8 array; batches are cut from it and turned into model inputs by edge.runtime.preprocess, the same
code the runtime uses, so training and deployment cannot disagree about colour order or normalisation.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image, scan_identity_folders
from edge.runtime.crops import crop_template
from edge.runtime.manifest import InputSpec
from edge.runtime.preprocess import prepare_batch

ALIGNED_SIZE = crop_template("arcface112").size   # what our trainers train on
ALIGN_HINT = "make aligned crops with python -m edge align (--crop names the template)"


@dataclass
class FaceSet:
    """Aligned crops and the identity of each one."""

    images: np.ndarray        # N,112,112,3 uint8 BGR
    labels: np.ndarray        # N int64, index into ``names``
    names: list[str]
    skipped: int              # files that could not be decoded
    root: Path
    paths: tuple[str, ...] = ()   # each image's path relative to ``root``

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, index: np.ndarray) -> FaceSet:
        paths = tuple(self.paths[i] for i in index) if self.paths else ()
        return FaceSet(self.images[index], self.labels[index], self.names, self.skipped, self.root, paths)


def load_faces(root: str | Path, side: int = ALIGNED_SIZE, one_person: bool = False) -> FaceSet:
    """Decodes ``root/<identity>/<image>`` (crops of ``side`` pixels), or with ``one_person`` every image under
    ``root`` as one identity (or every face of ``root`` a video, aligned with the runtime's detector as
    ``edge align`` does); unreadable files are skipped and counted, wrong sizes refused."""
    if one_person and Path(root).is_file():
        return faces_from_video(Path(root), side)
    if one_person:
        names, found = [Path(root).name], {Path(root).name: list_images(root)}
    else:
        folders = scan_identity_folders(root)
        names, found = folders.names, folders.images
    images, labels, paths, skipped = [], [], [], 0
    for label, name in enumerate(names):
        for path in found[name]:
            image = read_crop(path, side)
            if image is None:
                skipped += 1
                continue
            images.append(image)
            labels.append(label)
            paths.append(str(Path(path).relative_to(root)))
    if not images:
        raise UserError(f"{root} holds no readable images ({skipped} files could not be decoded)")
    return FaceSet(np.stack(images), np.asarray(labels, np.int64), names, skipped, Path(root), tuple(paths))


def faces_from_video(video: Path, side: int) -> FaceSet:
    """One person's faces from a video: each frame's largest face aligned (in a scratch folder), then decoded."""
    import tempfile

    from edge.faces.dataprep import align_folder
    from edge.faces.packaged_detector import load_packaged_detector

    with tempfile.TemporaryDirectory(prefix="video-faces-") as scratch:
        stats = align_folder(video, scratch, load_packaged_detector())
        if not stats.aligned:
            raise UserError(f"{video}: {stats.summary()}; a face swap needs the person's face in the frames")
        faces = load_faces(Path(scratch) / video.stem, side, one_person=True)
    return dataclasses.replace(faces, root=video, skipped=faces.skipped + stats.unreadable)


def read_crop(path: Path, side: int) -> np.ndarray | None:
    """An aligned crop of ``side`` pixels, None when the file cannot be decoded; another size is refused: a crop
    of another size was not made by our aligner, so its face sits elsewhere in the frame, and resizing it would
    train on a layout the runtime never produces."""
    image = read_image(path)
    if image is not None and image.shape[:2] != (side, side):
        raise UserError(f"{path} is {image.shape[1]}x{image.shape[0]}, expected an aligned {side}x{side} crop; "
                        f"{ALIGN_HINT}")
    return image


def split_images(count: int, holdout: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(train, held-out) image indices; at least one image on each side."""
    if count < 2:
        raise UserError(f"need at least 2 images to hold one out, found {count}")
    n_held = min(max(1, int(round(count * holdout))), count - 1)
    order = rng.permutation(count)
    return np.sort(order[n_held:]), np.sort(order[:n_held])


def split_identities(faces: FaceSet, holdout: float, rng: np.random.Generator,
                     min_holdout: int = 2, min_train: int = 2) -> tuple[FaceSet, FaceSet]:
    """(train, held-out) by identity, so evaluation measures people the model never saw.

    Only identities with two or more images can be held out, since a genuine pair needs two images.
    """
    counts = np.bincount(faces.labels, minlength=len(faces.names))
    present = np.nonzero(counts)[0]
    pairable = present[counts[present] >= 2]
    n_held = max(min_holdout, int(round(len(present) * holdout)))
    if len(pairable) < n_held or len(present) - n_held < min_train:
        raise UserError(f"{faces.root}: {len(present)} identities ({len(pairable)} with 2+ images) are too few to "
                        f"hold out {n_held} and train on {min_train}; add identities or lower --holdout_identities")
    held = rng.choice(pairable, size=n_held, replace=False)
    is_held = np.isin(faces.labels, held)
    return faces.subset(np.nonzero(~is_held)[0]), faces.subset(np.nonzero(is_held)[0])


def augment(images: np.ndarray, rng: np.random.Generator, brightness: float = 20.0,
            contrast: float = 0.15) -> np.ndarray:
    """Random horizontal flip and brightness/contrast jitter on uint8 BGR images (N,H,W,3), before preprocessing.

    Aligned faces are near-symmetric, so a flip is a new plausible view; the jitter stands in for the
    exposure changes of a real camera. Geometry is otherwise left alone: the aligner fixes it at run time.
    """
    flip = rng.random(len(images)) < 0.5
    out = np.where(flip[:, None, None, None], images[:, :, ::-1], images).astype(np.float32)
    gain = rng.uniform(1 - contrast, 1 + contrast, (len(images), 1, 1, 1)).astype(np.float32)
    shift = rng.uniform(-brightness, brightness, (len(images), 1, 1, 1)).astype(np.float32)
    mean = out.mean(axis=(1, 2, 3), keepdims=True)
    return np.clip((out - mean) * gain + mean + shift, 0, 255).astype(np.uint8)


def to_tensor(images: np.ndarray, spec: InputSpec, channels_last: bool = False,
              device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 BGR images -> the model input tensor on ``device``, through the shared preprocessing."""
    batch = torch.from_numpy(prepare_batch(images, spec)).to(device)
    return batch.contiguous(memory_format=torch.channels_last) if channels_last else batch


def batches(count: int, batch_size: int, rng: np.random.Generator | None = None,
            drop_last: bool = False) -> Iterator[np.ndarray]:
    """Index batches; shuffled when given a generator. ``drop_last`` avoids a size-1 batch breaking BatchNorm."""
    order = rng.permutation(count) if rng is not None else np.arange(count)
    stop = count - count % batch_size if drop_last and count >= batch_size else count
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]
