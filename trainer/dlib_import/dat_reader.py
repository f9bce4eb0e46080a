"""Reads a dlib DNN ``.dat`` file into typed layer records, input to output, with numpy only (no dlib).

dlib's serialization, as this reader decodes it:

- an integer is a control byte (0x80: negative; low 4 bits: how many bytes follow) and that many
  little-endian bytes; a float is an integer mantissa and an integer exponent (value = m * 2**e);
  a string is an integer length and its bytes; a bool is the ASCII byte '0' or '1';
- a tensor is version 2, four dims (n, k, nr, nc) and raw little-endian float32 values; an alias
  tensor (a view into a layer's parameter tensor) is version 1 and four dims;
- the network is written from the loss layer down: the loss wrapper writes its version, the loss
  details, then its sub-network; every ``add_layer`` writes its version, its whole sub-network, then
  its own layer details and training state. So the stream holds all the wrapper versions first (top
  to bottom), then the input layer, then each layer's details from the bottom up, which is the
  input-to-output order of the list this module returns.

dlib writes tag and skip layers as a bare version number, without their ids, so they come back as
``TagOrSkip`` markers: the architecture that reads the records says which is which.
"""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ClassVar, Union

import numpy as np

from edge.base.errors import UserError

# dlib's float_details reserves these exponents for the special values.
SPECIAL_EXPONENTS = {32000: math.inf, 32001: -math.inf, 32002: math.nan}
TENSOR_VERSION = 2
ALIAS_TENSOR_VERSION = 1
LOSS_WRAPPER_VERSION = 1
TAG_OR_SKIP_VERSION = 1
LAYER_VERSION = 2                     # add_layer over another layer
INPUT_LAYER_VERSIONS = (2, 3)         # add_layer over the input layer; 3 adds the sample expansion factor
CONV_MODE = 0                         # dlib's layer_mode for per-channel (not per-element) affine
FC_NO_BIAS = 1                        # dlib's fc_bias_mode


@dataclass(frozen=True, eq=False)
class InputRGB:
    kind: ClassVar[str] = "input_rgb_image_sized"
    mean: tuple[float, float, float]  # pixel units, R G B; dlib divides (pixel - mean) by 256
    rows: int
    cols: int


@dataclass(frozen=True, eq=False)
class Conv:
    kind: ClassVar[str] = "con_4"
    weight: np.ndarray                # [out, in, kh, kw]
    bias: np.ndarray                  # [out]
    stride: tuple[int, int]           # (y, x)
    padding: tuple[int, int]          # (y, x)


@dataclass(frozen=True, eq=False)
class Affine:
    kind: ClassVar[str] = "affine_"
    gamma: np.ndarray                 # [channels]: y = gamma * x + beta, per channel
    beta: np.ndarray


@dataclass(frozen=True, eq=False)
class Relu:
    kind: ClassVar[str] = "relu_"


@dataclass(frozen=True, eq=False)
class Pool:
    kind: ClassVar[str]
    size: tuple[int, int]             # (rows, cols); (0, 0) pools the whole input
    stride: tuple[int, int]
    padding: tuple[int, int]


@dataclass(frozen=True, eq=False)
class MaxPool(Pool):
    kind: ClassVar[str] = "max_pool_2"


@dataclass(frozen=True, eq=False)
class AvgPool(Pool):
    kind: ClassVar[str] = "avg_pool_2"


@dataclass(frozen=True, eq=False)
class AddPrev:
    kind: ClassVar[str] = "add_prev_"


@dataclass(frozen=True, eq=False)
class TagOrSkip:
    kind: ClassVar[str] = "tag/skip"


@dataclass(frozen=True, eq=False)
class Dense:
    kind: ClassVar[str] = "fc_2"
    weight: np.ndarray                # [inputs, outputs]: y = x @ weight (+ bias)
    bias: np.ndarray | None


@dataclass(frozen=True, eq=False)
class MetricLoss:
    kind: ClassVar[str] = "loss_metric_2"
    margin: float
    distance_threshold: float         # same identity when the Euclidean distance is below this


Layer = Union[InputRGB, Conv, Affine, Relu, MaxPool, AvgPool, AddPrev, TagOrSkip, Dense]


@dataclass(frozen=True, eq=False)
class DlibNet:
    layers: list[Layer]               # input layer first, the layer under the loss last
    loss: MetricLoss
    size: int                         # bytes read, which is the whole file
    sha256: str                       # of those bytes


class Stream:
    """dlib's primitive encodings over a byte string; every read names what it reads for the error."""

    def __init__(self, data: bytes, source: str):
        self.data = memoryview(data)
        self.pos = 0
        self.source = source

    def fail(self, message: str) -> UserError:
        return UserError(f"{self.source}: {message}")

    def take(self, count: int, what: str) -> memoryview:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail(f"truncated at byte {len(self.data)} while reading {what} (from byte {self.pos})")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def integer(self, what: str) -> int:
        start = self.pos
        control = self.take(1, what)[0]
        count = control & 0x0F
        if count > 8:
            raise self.fail(f"byte {start} is not a dlib integer ({count} bytes) while reading {what}")
        value = int.from_bytes(self.take(count, what), "little")
        return -value if control & 0x80 else value

    def floating(self, what: str) -> float:
        mantissa = self.integer(what)
        exponent = self.integer(what)
        if exponent in SPECIAL_EXPONENTS:
            return SPECIAL_EXPONENTS[exponent]
        return math.ldexp(mantissa, exponent)

    def string(self, what: str) -> str:
        length = self.integer(what)
        return bytes(self.take(length, what)).decode("latin-1")

    def boolean(self, what: str) -> bool:
        start = self.pos
        value = bytes(self.take(1, what))
        if value not in (b"0", b"1"):
            raise self.fail(f"byte {start} is not a dlib bool ({value!r}) while reading {what}")
        return value == b"1"

    def dims(self, version: int, what: str) -> tuple[int, int, int, int]:
        start = self.pos
        found = self.integer(what)
        if found != version:
            raise self.fail(f"{what} at byte {start} has version {found}; this reader knows version {version}")
        shape = tuple(self.integer(what) for _ in range(4))
        if min(shape) < 0:
            raise self.fail(f"{what} at byte {start} has negative dimensions {shape}")
        return shape  # type: ignore[return-value]

    def tensor(self, what: str) -> np.ndarray:
        shape = self.dims(TENSOR_VERSION, what)
        count = math.prod(shape)
        raw = self.take(4 * count, what)
        return np.frombuffer(raw, dtype="<f4", count=count).astype(np.float32).reshape(shape)

    def alias(self, what: str) -> tuple[int, int, int, int]:
        return self.dims(ALIAS_TENSOR_VERSION, what)

    def peek_name(self) -> str | None:
        """The short string at the current position, if there is one, without consuming it."""
        start = self.pos
        try:
            name = self.string("a name")
        except UserError:
            name = None
        self.pos = start
        return name if name is not None and len(name) < 64 and name.isprintable() else None


def split_params(stream: Stream, params: np.ndarray, shapes: list[tuple[int, ...]], what: str) -> list[np.ndarray]:
    """Cuts a layer's flat parameter tensor into its alias views, in order; the sizes must add up."""
    flat = params.reshape(-1)
    sizes = [math.prod(shape) for shape in shapes]
    if sum(sizes) != flat.size:
        raise stream.fail(f"{what}: {flat.size} parameters, but its views {shapes} need {sum(sizes)}")
    offsets = np.cumsum([0, *sizes])
    return [flat[offsets[i]:offsets[i + 1]].reshape(shape) for i, shape in enumerate(shapes)]


def read_conv(s: Stream, what: str) -> Conv:
    params = s.tensor(f"{what} parameters")
    out, rows, cols = (s.integer(f"{what} filter count and size") for _ in range(3))
    stride = (s.integer(f"{what} stride"), s.integer(f"{what} stride"))
    padding = (s.integer(f"{what} padding"), s.integer(f"{what} padding"))
    filters = s.alias(f"{what} filter view")
    biases = s.alias(f"{what} bias view")
    for _ in range(4):                # learning-rate and weight-decay multipliers: training only
        s.floating(f"{what} multipliers")
    if filters[0] != out or filters[2:] != (rows, cols):
        raise s.fail(f"{what}: filter view {filters} does not match {out} filters of {rows}x{cols}")
    weight, bias = split_params(s, params, [filters, (out,)], what)
    if math.prod(biases) != out:
        raise s.fail(f"{what}: bias view {biases} does not match {out} filters")
    return Conv(weight=weight, bias=bias, stride=stride, padding=padding)


def read_affine(s: Stream, what: str) -> Affine:
    params = s.tensor(f"{what} parameters")
    gamma_view = s.alias(f"{what} gamma view")
    beta_view = s.alias(f"{what} beta view")
    mode = s.integer(f"{what} mode")
    if mode != CONV_MODE:
        raise s.fail(f"{what}: only per-channel (conv mode) affine layers are supported, found mode {mode}")
    gamma, beta = split_params(s, params, [(math.prod(gamma_view),), (math.prod(beta_view),)], what)
    return Affine(gamma=gamma, beta=beta)


def read_pool(cls: type[Pool]) -> Callable[[Stream, str], Pool]:
    def read(s: Stream, what: str) -> Pool:
        values = [s.integer(f"{what} window, stride and padding") for _ in range(6)]
        return cls(size=(values[0], values[1]), stride=(values[2], values[3]), padding=(values[4], values[5]))
    return read


def read_dense(s: Stream, what: str) -> Dense:
    outputs = s.integer(f"{what} output count")
    inputs = s.integer(f"{what} input count")
    params = s.tensor(f"{what} parameters")
    weight_view = s.alias(f"{what} weight view")
    bias_view = s.alias(f"{what} bias view")
    bias_mode = s.integer(f"{what} bias mode")
    for _ in range(4):
        s.floating(f"{what} multipliers")
    if math.prod(weight_view) != inputs * outputs:
        raise s.fail(f"{what}: weight view {weight_view} does not match {inputs} inputs x {outputs} outputs")
    if bias_mode == FC_NO_BIAS:
        (weight,) = split_params(s, params, [(inputs, outputs)], what)
        return Dense(weight=weight, bias=None)
    if math.prod(bias_view) != outputs:
        raise s.fail(f"{what}: bias view {bias_view} does not match {outputs} outputs")
    weight, bias = split_params(s, params, [(inputs, outputs), (outputs,)], what)
    return Dense(weight=weight, bias=bias)


def read_input_rgb(s: Stream, what: str) -> InputRGB:
    mean = tuple(s.floating(f"{what} channel mean") for _ in range(3))
    rows, cols = s.integer(f"{what} rows"), s.integer(f"{what} cols")
    return InputRGB(mean=mean, rows=rows, cols=cols)  # type: ignore[arg-type]


def read_metric_loss(s: Stream, what: str) -> MetricLoss:
    return MetricLoss(margin=s.floating(f"{what} margin"), distance_threshold=s.floating(f"{what} threshold"))


# dlib's version string of each layer's details -> its reader.
LAYER_READERS: dict[str, Callable[[Stream, str], Layer]] = {
    Conv.kind: read_conv,
    Affine.kind: read_affine,
    Relu.kind: lambda s, what: Relu(),
    MaxPool.kind: read_pool(MaxPool),
    AvgPool.kind: read_pool(AvgPool),
    AddPrev.kind: lambda s, what: AddPrev(),
    Dense.kind: read_dense,
}
INPUT_READERS: dict[str, Callable[[Stream, str], InputRGB]] = {InputRGB.kind: read_input_rgb}
LOSS_READERS: dict[str, Callable[[Stream, str], MetricLoss]] = {MetricLoss.kind: read_metric_loss}


def read_details(s: Stream, readers: dict[str, Callable], what: str):
    start = s.pos
    name = s.string(f"{what} type")
    if name not in readers:
        raise s.fail(f"unknown dlib layer {name!r} at byte {start} ({what}); this reader knows: "
                     f"{', '.join(sorted(readers))}")
    return readers[name](s, f"{what} ({name})")


def skip_training_state(s: Stream, what: str, tensors: int) -> None:
    """The flags and cached tensors dlib keeps for training; empty in a saved network, read and dropped."""
    for _ in range(3):
        s.boolean(f"{what} state flags")
    for _ in range(tensors):
        s.tensor(f"{what} cached tensors")


def read_loss(s: Stream) -> MetricLoss:
    """The loss wrapper opens every dlib network file; anything else is not one."""
    try:
        version: int | None = s.integer("the loss layer's version")
    except UserError:
        version = None
    name = s.peek_name() if version is not None else None
    if version != LOSS_WRAPPER_VERSION or name is None or not name.startswith("loss_"):
        raise s.fail("not a dlib network file: it should open with a loss layer such as "
                     f"{MetricLoss.kind!r}, found {bytes(s.data[:16]).hex(' ')}")
    return read_details(s, LOSS_READERS, "the loss layer")


def parse_dlib_net(data: bytes, source: str = "<bytes>") -> DlibNet:
    s = Stream(data, source)
    loss = read_loss(s)
    wrappers: list[int] = []          # add_layer / tag / skip versions, from the top down
    while True:
        start = s.pos
        version = s.integer(f"the version of layer {len(wrappers) + 1} under the loss")
        name = s.peek_name()
        # A layer's version is followed by the next version; only the layer over the input by a name.
        at_input = name is not None and name.startswith("input")
        if at_input or version not in (LAYER_VERSION, TAG_OR_SKIP_VERSION):
            if version not in INPUT_LAYER_VERSIONS:
                raise s.fail(f"unknown layer wrapper version {version} at byte {start}; this reader knows "
                             f"{LAYER_VERSION} (a layer), {TAG_OR_SKIP_VERSION} (a tag or skip layer) and "
                             f"{', '.join(map(str, INPUT_LAYER_VERSIONS))} (the layer over the input)")
            break
        wrappers.append(version)
    layers: list[Layer] = [read_details(s, INPUT_READERS, "the input layer")]
    layers.append(read_details(s, LAYER_READERS, "layer 1"))
    # The layer over the input also keeps grad_final and, from version 3, the sample expansion factor.
    skip_training_state(s, "layer 1", tensors=3)
    if version == 3:
        s.integer("layer 1 sample expansion factor")
    for wrapper in reversed(wrappers):
        what = f"layer {len(layers)}"
        if wrapper == TAG_OR_SKIP_VERSION:
            layers.append(TagOrSkip())
            continue
        layers.append(read_details(s, LAYER_READERS, what))
        skip_training_state(s, what, tensors=3)
    if s.pos != len(s.data):
        raise s.fail(f"{len(s.data) - s.pos} bytes left over after the network ended at byte {s.pos}: "
                     "not a single dlib network")
    return DlibNet(layers=layers, loss=loss, size=s.pos, sha256=hashlib.sha256(data).hexdigest())


def read_dlib_net(path: str | Path) -> DlibNet:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"dlib network file {path} does not exist")
    return parse_dlib_net(path.read_bytes(), str(path))
