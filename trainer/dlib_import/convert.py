"""dlib's face-descriptor ``.dat`` -> ``DlibResNet`` weights -> an ordinary verify checkpoint.

The layer records are checked against the layer sequence the module implements (kinds, conv shapes, strides,
paddings, pooling windows) before any weight is copied, so a different dlib network is refused with the
first layer that differs instead of being loaded into the wrong places.
"""
from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge.base.errors import UserError
from edge.runtime.manifest import InputSpec
from edge.runtime.packaged import installed_package_file
from trainer.checkpoint import save_checkpoint
from trainer.dlib_import.dat_reader import (AddPrev, Affine, AvgPool, Conv, Dense, DlibNet, InputRGB, Layer, MaxPool,
                                            Pool, Relu, TagOrSkip, read_dlib_net)
from trainer.models.dlib_resnet import DlibResNet

PACKAGE = "face_recognition_models"
DISTRIBUTION = "face-recognition-models"
DAT_FILE = "models/dlib_face_recognition_resnet_model_v1.dat"
# Provenance of the files we know, by sha256: a file we do not know gets no licence or accuracy claim.
KNOWN_FILES = {
    "55533b28a95800a551ba546ba62fe69625c7e95a7061c338adffead08719da30": {
        "source_package": f"{DISTRIBUTION} 0.3.0",
        "licence": "CC0-1.0 (face-recognition-models LICENSE; its metadata says MIT)",
        "published_lfw_accuracy": 0.9938,
    },
}
STEM = [InputRGB, Conv, Affine, Relu, MaxPool]
BLOCK_BODY = [TagOrSkip, Conv, Affine, Relu, Conv, Affine]          # tag1, then the two convs
BLOCK_DOWN = [TagOrSkip, TagOrSkip, AvgPool]                         # tag2, skip1 back to tag1, pool it
BLOCK_END = [AddPrev, Relu]
HEAD = [AvgPool, Dense]


def packaged_dat_path() -> Path:
    """The descriptor file installed with face-recognition-models, found without importing the package
    (its ``__init__`` imports pkg_resources, which is not always there)."""
    return installed_package_file(PACKAGE, DAT_FILE, f"pip install {DISTRIBUTION}")


def config_from_layers(layers: list[Layer], source: str) -> dict:
    """DlibResNet's config read off the records, after checking they are the sequence it implements."""
    convs = [layer for layer in layers if isinstance(layer, Conv)]
    if not layers or not isinstance(layers[0], InputRGB) or len(convs) < 1:
        raise UserError(f"{source}: not dlib's face ResNet (no RGB input layer and stem convolution)")
    blocks = [[int(conv.weight.shape[0]), conv.stride[0]] for conv in convs[1::2]]
    expected = list(STEM)
    for _, stride in blocks:
        expected += BLOCK_BODY + (BLOCK_DOWN if stride == 2 else []) + BLOCK_END
    expected += HEAD
    found = [type(layer) for layer in layers]
    for index, (want, got) in enumerate(zip(expected, found)):
        if want is not got:
            raise UserError(f"{source}: not dlib's face ResNet: layer {index} is {got.kind}, expected {want.kind}")
    if len(found) != len(expected):
        raise UserError(f"{source}: not dlib's face ResNet: {len(found)} layers, expected {len(expected)}")
    first = layers[0]
    if first.rows != first.cols:
        raise UserError(f"{source}: input is {first.rows}x{first.cols}; DlibResNet takes square chips")
    return {"input_size": first.rows, "stem": int(convs[0].weight.shape[0]), "blocks": blocks,
            "embedding": int(layers[-1].weight.shape[1])}


def check_pool(layer: Pool, module: nn.Module | None, index: int, source: str) -> None:
    """Each pooling record must have the window the module applies; the last one pools the whole map."""
    if module is None:
        want = ((0, 0), (1, 1), (0, 0))
    else:
        want = tuple((value, value) if isinstance(value, int) else tuple(value)
                     for value in (module.kernel_size, module.stride, module.padding))
    got = (layer.size, layer.stride, layer.padding)
    if got != want:
        raise UserError(f"{source}: layer {index} ({layer.kind}) has window/stride/padding {got}, DlibResNet "
                        f"applies {want}")


def copy_conv(conv: nn.Conv2d, norm: nn.BatchNorm2d, layer: Conv, after: Affine, index: int, source: str) -> None:
    if tuple(layer.weight.shape) != tuple(conv.weight.shape) or layer.stride != conv.stride \
            or layer.padding != conv.padding or tuple(after.gamma.shape) != tuple(norm.weight.shape):
        raise UserError(f"{source}: layer {index} is a {tuple(layer.weight.shape)} conv, stride {layer.stride}, "
                        f"padding {layer.padding}; DlibResNet has {tuple(conv.weight.shape)}, stride "
                        f"{conv.stride}, padding {conv.padding} there")
    conv.weight.copy_(torch.from_numpy(layer.weight))
    conv.bias.copy_(torch.from_numpy(layer.bias))
    norm.weight.copy_(torch.from_numpy(after.gamma))
    norm.bias.copy_(torch.from_numpy(after.beta))


def model_from_net(net: DlibNet, config: dict, source: str) -> DlibResNet:
    model = DlibResNet(**config).eval()
    pairs = iter(model.conv_affine_pairs())
    pools = iter([model.stem[3], *[block.skip for block in model.blocks if isinstance(block.skip, nn.AvgPool2d)],
                  None])
    with torch.no_grad():
        for index, layer in enumerate(net.layers):
            if isinstance(layer, Conv):
                conv, norm = next(pairs)
                copy_conv(conv, norm, layer, net.layers[index + 1], index, source)
            elif isinstance(layer, Pool):
                check_pool(layer, next(pools), index, source)
            elif isinstance(layer, Dense):
                if layer.bias is not None:
                    raise UserError(f"{source}: layer {index} (fc) has a bias; DlibResNet's projection has none")
                model.project.weight.copy_(torch.from_numpy(np.ascontiguousarray(layer.weight.T)))  # y = x @ W
    return model


def load_dlib_resnet(dat_path: str | Path) -> tuple[DlibResNet, dict]:
    """The module with dlib's weights (eval mode) and what the import found, for the checkpoint's metrics."""
    path = Path(dat_path)
    net = read_dlib_net(path)
    config = config_from_layers(net.layers, str(path))
    model = model_from_net(net, config, str(path))
    info = {
        "config": config,
        "source_file": path.name,
        "source_sha256": net.sha256,
        "source_bytes": net.size,
        "layers": dict(collections.Counter(layer.kind for layer in net.layers)),
        "convs": sum(isinstance(layer, Conv) for layer in net.layers),
        "parameters": sum(p.numel() for p in model.parameters()),
        "mean": tuple(round(value, 4) for value in net.layers[0].mean),
        "dlib_distance_threshold": round(net.loss.distance_threshold, 6),
    }
    return model, info


def dlib_input_spec(model: DlibResNet, info: dict) -> InputSpec:
    """dlib's preprocessing: its 150 px chip, RGB, its own channel means, a scale of 1/256."""
    size = model.input_size
    return InputSpec(name="input", shape=(1, 3, size, size), layout="NCHW", dtype="float32", colour="RGB",
                     mean=info["mean"], std=(256.0, 256.0, 256.0), crop="dlib150")


def import_dlib_resnet(out_path: str | Path, dat_path: str | Path | None = None) -> str:
    """Writes dlib's face descriptor as a ``dlib_resnet`` verify checkpoint; returns the checkpoint's sha256."""
    path = Path(dat_path) if dat_path is not None else packaged_dat_path()
    model, info = load_dlib_resnet(path)
    spec = dlib_input_spec(model, info)
    metrics = {
        **{key: info[key] for key in ("source_file", "source_sha256", "parameters", "convs",
                                      "dlib_distance_threshold")},
        **KNOWN_FILES.get(info["source_sha256"], {"licence": "unknown (not a file this importer knows)"}),
        "embedding": "raw, not L2-normalised; dlib: same person when the Euclidean distance is below "
                     f"{info['dlib_distance_threshold']}",
    }
    return save_checkpoint(out_path, architecture="dlib_resnet", config=info["config"], task="verify",
                           model=model, preprocessing=spec, metrics=metrics, threshold=None)

