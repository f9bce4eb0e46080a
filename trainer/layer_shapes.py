"""A structurally pruned model's layer widths, recorded so that its checkpoint rebuilds without the pruner.

Pruning removes channels, so a pruned network no longer matches the widths its architecture's config would
build. The checkpoint keeps each convolution's, normalisation's and dense layer's shape; rebuilding makes the
architecture as configured and swaps in layers of the recorded shapes before the weights are loaded.
"""
from __future__ import annotations

from torch import nn


def layer_shapes(model: nn.Module) -> dict[str, list[int]]:
    """name -> [in, out, groups] for convolutions, [features] for batch norms, [in, out] for dense layers."""
    shapes = {}
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            shapes[name] = [module.in_channels, module.out_channels, module.groups]
        elif isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
            shapes[name] = [module.num_features]
        elif isinstance(module, nn.Linear):
            shapes[name] = [module.in_features, module.out_features]
    return shapes


def apply_layer_shapes(model: nn.Module, shapes: dict[str, list[int]]) -> nn.Module:
    """Replaces each named layer whose shape differs by a fresh one of the recorded shape (same kernel, stride,
    padding and bias); the weights are loaded afterwards."""
    for name, shape in shapes.items():
        module = model.get_submodule(name)
        if layer_shapes(module).get("", None) == shape:
            continue
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, _resized(module, shape))
    return model


def _resized(module: nn.Module, shape: list[int]) -> nn.Module:
    if isinstance(module, nn.Conv2d):
        cin, cout, groups = shape
        return nn.Conv2d(cin, cout, module.kernel_size, module.stride, module.padding, module.dilation, groups,
                         bias=module.bias is not None, padding_mode=module.padding_mode)
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        return type(module)(shape[0], module.eps, module.momentum, module.affine, module.track_running_stats)
    if isinstance(module, nn.Linear):
        return nn.Linear(shape[0], shape[1], bias=module.bias is not None)
    raise ValueError(f"cannot resize a {type(module).__name__}")
