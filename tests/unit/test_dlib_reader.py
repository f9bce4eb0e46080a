"""dlib's serialization read in pure Python, on byte strings this test writes itself, and DlibResNet's export."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.base.errors import UserError
from trainer.dlib_import.convert import load_dlib_resnet
from trainer.dlib_import.dat_reader import AvgPool, Conv, Dense, InputRGB, Relu, Stream, TagOrSkip, parse_dlib_net
from trainer.models.dlib_resnet import DlibResNet

pytestmark = pytest.mark.unit


# --- a minimal dlib encoder, written from the format description (the reader's mirror image) ---

def enc_int(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def enc_float(value: float) -> bytes:
    fraction, exponent = math.frexp(value)                  # value = fraction * 2**exponent, |fraction| < 1
    return enc_int(int(fraction * 2 ** 53)) + enc_int(exponent - 53)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_dims(version: int, shape: tuple[int, ...]) -> bytes:
    shape = tuple(shape) + (1,) * (4 - len(shape))
    return enc_int(version) + b"".join(enc_int(d) for d in shape)


def enc_tensor(values: np.ndarray) -> bytes:
    flat = np.asarray(values, np.float32).reshape(-1)
    return enc_dims(2, (flat.size,)) + flat.astype("<f4").tobytes()


TRAINING_STATE = b"110" + enc_tensor(np.zeros(0)) * 3       # flags, x_grad, cached output, params_grad
MULTIPLIERS = enc_float(1.0) * 3 + enc_float(0.0)


def enc_conv(weight: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> bytes:
    out, cin, rows, cols = weight.shape
    return (enc_str("con_4") + enc_tensor(np.concatenate([weight.reshape(-1), bias]))
            + b"".join(enc_int(v) for v in (out, rows, cols, stride, stride, padding, padding))
            + enc_dims(1, weight.shape) + enc_dims(1, (1, out)) + MULTIPLIERS)


def enc_affine(gamma: np.ndarray, beta: np.ndarray) -> bytes:
    return (enc_str("affine_") + enc_tensor(np.concatenate([gamma, beta])) + enc_dims(1, (1, gamma.size)) * 2
            + enc_int(0))


def enc_pool(name: str, size: int, stride: int) -> bytes:
    return enc_str(name) + b"".join(enc_int(v) for v in (size, size, stride, stride, 0, 0))


def enc_fc(weight: np.ndarray) -> bytes:
    inputs, outputs = weight.shape
    return (enc_str("fc_2") + enc_int(outputs) + enc_int(inputs) + enc_tensor(weight) + enc_dims(1, weight.shape)
            + enc_dims(1, (1, outputs)) + enc_int(1) + MULTIPLIERS)


def enc_net(layers: list[bytes | None], size: int = 8) -> bytes:
    """Layer details input to output (None: a tag or skip layer), wrapped the way dlib writes a network."""
    data = enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6)
    data += b"".join(enc_int(1 if layer is None else 2) for layer in reversed(layers[1:]))
    data += enc_int(3) + enc_str("input_rgb_image_sized") + enc_float(122.782) + enc_float(117.001)
    data += enc_float(104.298) + enc_int(size) + enc_int(size)
    data += layers[0] + TRAINING_STATE + enc_int(1)
    return data + b"".join(layer + TRAINING_STATE for layer in layers[1:] if layer is not None)


def enc_dlib_resnet(model: DlibResNet) -> bytes:
    """A DlibResNet's weights in dlib's layer sequence: tag1, body, [tag2, skip1, avg_pool], add_prev, relu."""
    def conv_affine(conv, norm) -> list[bytes]:
        return [enc_conv(conv.weight.detach().numpy(), conv.bias.detach().numpy(), conv.stride[0], conv.padding[0]),
                enc_affine(norm.weight.detach().numpy(), norm.bias.detach().numpy())]

    relu = enc_str("relu_")
    layers = conv_affine(model.stem[0], model.stem[1]) + [relu, enc_pool("max_pool_2", 3, 2)]
    for block in model.blocks:
        layers += [None, *conv_affine(block.body[0], block.body[1]), relu, *conv_affine(block.body[3], block.body[4])]
        if block.body[0].stride[0] == 2:
            layers += [None, None, enc_pool("avg_pool_2", 2, 2)]
        layers += [enc_str("add_prev_"), relu]
    layers += [enc_pool("avg_pool_2", 0, 1), enc_fc(model.project.weight.detach().numpy().T)]
    return enc_net(layers, model.input_size)


def tiny_net() -> bytes:
    rng = np.random.default_rng(0)
    weight, bias = rng.normal(size=(2, 3, 3, 3)).astype(np.float32), np.array([0.5, -0.5], np.float32)
    return enc_net([enc_conv(weight, bias, 1, 1), enc_str("relu_"), None, enc_pool("avg_pool_2", 0, 1),
                    enc_fc(np.arange(6, dtype=np.float32).reshape(2, 3))])


# --- primitives ---

@pytest.mark.parametrize("value", [0, 1, 127, 255, 256, -5, 2 ** 40, -(2 ** 62)])
def test_integers(value):
    assert Stream(enc_int(value), "x").integer("an int") == value


@pytest.mark.parametrize("value", [0.0, 0.6, -1.5, 1e-30, 122.782, 2.0 ** 70])
def test_floats(value):
    assert Stream(enc_float(value), "x").floating("a float") == value


def test_special_floats_strings_bools_and_tensors():
    assert Stream(enc_int(0) + enc_int(32000), "x").floating("inf") == math.inf
    assert math.isnan(Stream(enc_int(0) + enc_int(32002), "x").floating("nan"))
    stream = Stream(enc_str("con_4") + b"10", "x")
    assert stream.string("a name") == "con_4" and stream.boolean("a flag") and not stream.boolean("a flag")
    values = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
    tensor = Stream(enc_dims(2, values.shape) + values.astype("<f4").tobytes(), "x").tensor("a tensor")
    assert tensor.shape == (2, 3, 2, 2) and np.array_equal(tensor, values) and tensor.flags.writeable


# --- whole networks ---

def test_tiny_network_reads_in_input_to_output_order():
    data = tiny_net()
    net = parse_dlib_net(data)
    assert [type(layer) for layer in net.layers] == [InputRGB, Conv, Relu, TagOrSkip, AvgPool, Dense]
    assert net.size == len(data) and net.loss.distance_threshold == 0.6
    assert net.layers[0].mean == (122.782, 117.001, 104.298) and net.layers[0].rows == 8
    conv = net.layers[1]
    assert conv.weight.shape == (2, 3, 3, 3) and conv.bias.tolist() == [0.5, -0.5] and conv.padding == (1, 1)
    assert net.layers[4].size == (0, 0)
    assert net.layers[5].bias is None and net.layers[5].weight.tolist() == [[0, 1, 2], [3, 4, 5]]


@pytest.mark.parametrize("cut", [35, 60, 200, -20, -1])
def test_truncated_file_says_where(cut):
    data = tiny_net()
    with pytest.raises(UserError, match=rf"truncated at byte {len(data[:cut])} while reading"):
        parse_dlib_net(data[:cut])


@pytest.mark.parametrize("data", [b"", b"PK\x03\x04 a zip file", enc_int(1) + enc_str("not a loss"),
                                  enc_int(7) + enc_str("loss_metric_2")])
def test_not_a_dlib_network(data):
    with pytest.raises(UserError, match="not a dlib network file"):
        parse_dlib_net(data)


def test_unknown_layer_version_is_named_with_the_known_ones():
    data = tiny_net().replace(b"con_4", b"con_9")
    with pytest.raises(UserError, match=r"unknown dlib layer 'con_9'.*knows: add_prev_, affine_, avg_pool_2, con_4"):
        parse_dlib_net(data)


def test_trailing_bytes():
    with pytest.raises(UserError, match="3 bytes left over"):
        parse_dlib_net(tiny_net() + b"\x01\x02\x03")


# --- DlibResNet and the converter ---

def small_resnet() -> DlibResNet:
    """Stem 40 -> 17 -> 8, a plain block, then a stride-2 block whose conv path (3x3) and channels (4 of 8)
    are zero-filled to the pooled skip's 4x4: both traps of dlib's add_prev at a tiny size."""
    torch.manual_seed(0)
    model = DlibResNet(input_size=40, stem=4, blocks=[[4, 1], [8, 2]], embedding=6).eval()
    with torch.no_grad():
        for _, norm in model.conv_affine_pairs():        # non-trivial affines, so a swapped gamma/beta shows
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    return model


def test_converter_rebuilds_an_encoded_network(tmp_path: Path):
    model = small_resnet()
    assert model.blocks[1].body_pad == (0, 1, 0, 1, 0, 0) and model.blocks[1].skip_pad == (0, 0, 0, 0, 0, 4)
    path = tmp_path / "small.dat"
    path.write_bytes(enc_dlib_resnet(model))
    loaded, info = load_dlib_resnet(path)
    assert info["config"] == {"input_size": 40, "stem": 4, "blocks": [[4, 1], [8, 2]], "embedding": 6}
    assert info["convs"] == 5 and info["source_bytes"] == path.stat().st_size
    x = torch.randn(2, 3, 40, 40)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)


def test_converter_refuses_a_padded_stride_2_conv(tmp_path: Path):
    model = small_resnet()
    model.blocks[1].body[0].padding = (1, 1)             # "same" padding: not dlib's network
    path = tmp_path / "padded.dat"
    path.write_bytes(enc_dlib_resnet(model))
    with pytest.raises(UserError, match=r"layer 14 is a \(8, 4, 3, 3\) conv, stride \(2, 2\), padding \(1, 1\)"):
        load_dlib_resnet(path)


@pytest.mark.filterwarnings("ignore:Constant folding")   # the exporter's pad list reversal; onnxruntime folds it
@pytest.mark.parametrize("opset", [13, 17])
def test_dlib_resnet_exports_to_onnx(opset):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = DlibResNet().eval()
    x = torch.randn(1, 3, 150, 150)
    with torch.no_grad():
        expected = model(x)
    assert expected.shape == (1, 128)
    buffer = io.BytesIO()
    torch.onnx.export(model, x, buffer, dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["embedding"])
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": x.numpy()})
    assert np.abs(got - expected.numpy()).max() < 1e-4
