"""The feature network that generated faces are judged with (Frechet distance, face swaps), and the detector's
share of faces found: what the generator evaluation and the GAN and face-swap trainers share."""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.runtime.manifest import InputSpec
from edge.runtime.preprocess import prepare_batch
from trainer.checkpoint import load_checkpoint

INCEPTION_SIDE = 299      # an ONNX feature network with a dynamic input size gets Inception v3's


class OnnxFeatures:
    """Any image network exported to ONNX, e.g. the Inception v3 of FID (its 2048-D pool output) when you have its
    weights: RGB in [-1, 1] (FID's convention), resized to the file's input side; the first output, flattened."""

    def __init__(self, path: Path):
        import onnxruntime

        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as err:            # onnxruntime raises its own error types for a bad file
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise UserError(f"--features {path} is not an ONNX network onnxruntime can load ({first})") from err
        (given,) = self.session.get_inputs()[:1]
        side = given.shape[-1] if isinstance(given.shape[-1], int) else INCEPTION_SIDE
        self.name = given.name
        self.spec = InputSpec(name=given.name, shape=(1, 3, side, side), layout="NCHW", dtype="float32",
                              colour="RGB", mean=(127.5,) * 3, std=(127.5,) * 3)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        output = self.session.run(None, {self.name: batch.numpy()})[0]
        return torch.from_numpy(output.reshape(len(output), -1))


def feature_network(path: Path | None):
    """The network whose embeddings the Frechet distance is computed on, and its name for the reports."""
    if path is not None and path.suffix == ".onnx":
        if not path.is_file():
            raise UserError(f"--features {path} does not exist")
        network = OnnxFeatures(path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        return (network, network.spec), (f"{path.name} (ONNX, sha256 {digest}, {network.spec.size[0]} px RGB in "
                                         "[-1, 1])")
    if path is not None:
        checkpoint = load_checkpoint(path)
        if checkpoint.task != "verify":
            raise UserError(f"--features {path} is a {checkpoint.task} model; give a face verifier checkpoint")
        name = f"{checkpoint.architecture} ({path.name}, sha256 {checkpoint.sha256[:12]})"
        return (checkpoint.build_model(), checkpoint.preprocessing), name
    try:
        from trainer.dlib_import.convert import dlib_input_spec, load_dlib_resnet, packaged_dat_path

        model, info = load_dlib_resnet(packaged_dat_path())
    except UserError as err:
        raise UserError(f"{err}; or give a verifier checkpoint with --features") from err
    return (model.eval(), dlib_input_spec(model, info)), ("dlib's face descriptor "
                                                          "(dlib_face_recognition_resnet_model_v1, 128-D)")


@torch.no_grad()
def embed(extractor, images: list[np.ndarray]) -> np.ndarray:
    model, spec = extractor
    rows = [model(torch.from_numpy(prepare_batch(images[i:i + 32], spec))).numpy()
            for i in progress_bar(range(0, len(images), 32), desc="features", unit="batch")]
    return np.concatenate(rows)


def detected_share(images: list[np.ndarray], detector) -> float:
    """The share of images in which ``detector`` (the packaged short-range BlazeFace) finds a face scoring at
    least 0.5."""
    return float(np.mean([any(d.score >= 0.5 for d in detector.detect(image)) for image in images]))
