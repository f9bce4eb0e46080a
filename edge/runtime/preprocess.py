"""The one definition of how a face image becomes a model input, shared by training and inference.

Training (trainer/) and deployment (edge/) both call ``prepare_batch`` with the InputSpec recorded in the
checkpoint and then in the bundle manifest, so colour order, normalisation and crop size cannot drift apart.
"""
from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from edge.runtime.crops import crop_template
from edge.runtime.manifest import InputSpec

VERIFY_SIZE = crop_template("arcface112").size   # the trained verifier sees the whole aligned crop
GENERATE_SIZE = 64           # the generators see the aligned crop resized to 64x64


def verifier_input_spec(size: int = VERIFY_SIZE) -> InputSpec:
    """RGB, NCHW, pixels mapped to [-1, 1]: the usual ArcFace-family convention."""
    return InputSpec(name="input", shape=(1, 3, size, size), layout="NCHW", dtype="float32", colour="RGB",
                     mean=(127.5, 127.5, 127.5), std=(127.5, 127.5, 127.5), crop="arcface112")


def generator_input_spec(size: int = GENERATE_SIZE, colour: str = "RGB") -> InputSpec:
    """RGB (or GREY: one channel), NCHW, pixels mapped to [0, 1], matching a sigmoid output so input and output
    are comparable."""
    channels = 1 if colour == "GREY" else 3
    return InputSpec(name="input", shape=(1, channels, size, size), layout="NCHW", dtype="float32", colour=colour,
                     mean=(0.0, 0.0, 0.0), std=(255.0, 255.0, 255.0), crop="arcface112")


def prepare_batch(images_bgr: Sequence[np.ndarray] | np.ndarray, spec: InputSpec) -> np.ndarray:
    """BGR uint8 images (already cropped as ``spec.crop`` says) -> the model's input batch."""
    height, width = spec.size
    resized = [img if img.shape[:2] == (height, width) else
               cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA) for img in images_bgr]
    if spec.colour == "GREY":                                             # one channel: N,H,W,1
        batch = np.stack([cv2.cvtColor(img, cv2.COLOR_BGR2GRAY) if img.ndim == 3 else img
                          for img in resized]).astype(np.float32)[..., None]
        batch = (batch - spec.mean[0]) / spec.std[0]
        return to_input_dtype(batch.transpose(0, 3, 1, 2) if spec.layout == "NCHW" else batch, spec)
    if spec.dtype == "float32" and len(set(spec.std)) == 1:
        # OpenCV does the colour swap, mean, scale and NCHW layout in one pass: 0.18 ms instead of 0.8 ms for two
        # 150x150 faces, the same numbers. It subtracts the mean after the swap, so the mean is in model order. For
        # NHWC the blob is laid back: 0.09 ms instead of 0.26 ms for a detector's 128x128 input.
        blob = cv2.dnn.blobFromImages(resized, 1.0 / spec.std[0], None, tuple(spec.mean), swapRB=spec.colour == "RGB",
                                      crop=False)
        return blob if spec.layout == "NCHW" else np.ascontiguousarray(blob.transpose(0, 2, 3, 1))
    if spec.colour == "RGB":
        # cvtColor and in-place arithmetic: a tenth of numpy's time on a detector's 128x128 input (0.02 ms).
        resized = [cv2.cvtColor(img, cv2.COLOR_BGR2RGB) for img in resized]
    batch = np.stack(resized).astype(np.float32)                          # N,H,W,3
    batch -= np.asarray(spec.mean, np.float32)
    batch /= np.asarray(spec.std, np.float32)
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 3, 1, 2)                               # N,3,H,W
    return to_input_dtype(batch, spec)


def to_input_dtype(batch: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A float batch as the model takes it: quantized with the input's scale and zero point when it is integer."""
    if spec.dtype in ("int8", "uint8"):
        info = np.iinfo(spec.dtype)
        batch = np.clip(np.round(batch / spec.scale) + spec.zero_point, info.min, info.max)
    return np.ascontiguousarray(batch, dtype=spec.dtype)


def output_to_images(batch: np.ndarray, spec: InputSpec) -> list[np.ndarray]:
    """A generator's output, laid out and normalised like its input, back to BGR uint8 images (a one-channel output
    as grey in all three)."""
    if spec.layout == "NCHW":
        batch = batch.transpose(0, 2, 3, 1)                               # N,H,W,C
    channels = batch.shape[-1]
    pixels = batch * np.asarray(spec.std[:channels], np.float32) + np.asarray(spec.mean[:channels], np.float32)
    if channels == 1:
        pixels = np.repeat(pixels, 3, axis=-1)
    elif spec.colour == "RGB":
        pixels = pixels[..., ::-1]
    return [np.ascontiguousarray(img) for img in np.clip(pixels + 0.5, 0, 255).astype(np.uint8)]
