"""``python -m compile.int8_gain``: how much faster INT8 runs than FP32 for MobileFaceNet-class verifiers of
several widths and schedules, on this machine's CPU, at batch 1, on the backend the host board runs ONNX files with
(the one chooser's pick: onnxruntime).

Each net has random weights whose BatchNorm statistics come from random inputs (speed does not depend on what a
net learned), goes through compile's own exporters (ONNX FP32 simplified; INT8 static QDQ, per-channel weights,
uint8 activations), and both files are timed interleaved (edge.base.timing) at each thread count. Prints a
Markdown table; the README's table of INT8 gains by width came from it.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from compile.exporters import ExportRequest, export
from edge.base.flags import count
from edge.base.timing import time_interleaved
from edge.runtime.backends import BACKENDS
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import Artifact, load_board
from edge.runtime.models import pick_kind
from edge.runtime.preprocess import verifier_input_spec
from trainer.models.mobilefacenet import BOTTLENECKS, PAPER_BOTTLENECKS, MobileFaceNetS

NETS = {  # name -> (width, bottleneck schedule)
    "width 0.5, our short schedule (the demo's)": (0.5, BOTTLENECKS),
    "width 1.0, our short schedule": (1.0, BOTTLENECKS),
    "width 1.0, expansion 4 throughout": (1.0, tuple((4, c, n, s) for _, c, n, s in BOTTLENECKS)),
    "width 1.0, the paper's schedule (5/1/6/1/2 repeats)": (1.0, PAPER_BOTTLENECKS),
    "width 1.5, our short schedule": (1.5, BOTTLENECKS),
}
CALIBRATION_IMAGES = 40


def random_net(width: float, bottlenecks) -> MobileFaceNetS:
    torch.manual_seed(0)
    net = MobileFaceNetS(width=width, bottlenecks=bottlenecks).train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(16, 3, 112, 112))            # BatchNorm statistics of the inputs it will see
    return net.eval()


def export_pair(net: MobileFaceNetS, folder: Path) -> dict[str, Path]:
    spec = verifier_input_spec()
    calibration = np.random.default_rng(0).normal(size=(CALIBRATION_IMAGES, *spec.shape[1:])).astype(np.float32)
    files = {}
    for artifact in (Artifact("onnx", "fp32"), Artifact("onnx", "int8")):
        path = folder / f"net.{artifact.precision}.onnx"
        export(artifact, ExportRequest(model=net, spec=spec, output_name="embedding", path=path, workdir=folder,
                                       opset=17, calibration=calibration))
        files[artifact.precision] = path
    return files


def measure(files: dict[str, Path], threads: int, repeat: int) -> dict[str, float]:
    host = load_board("host")
    backends = {}
    for precision, path in files.items():
        _, name, _ = pick_kind([("onnx", precision)], host, "verify", precision=precision)
        backends[precision] = BACKENDS.get(name)()
        backends[precision].load(path, BackendOptions(threads=threads))
    feed = {"input": np.random.default_rng(1).random((1, 3, 112, 112), dtype=np.float32)}
    times = time_interleaved({p: (lambda b=b: b.infer(feed)) for p, b in backends.items()}, warmup=10,
                             repeat=repeat, desc=f"{threads} thread(s)")
    for backend in backends.values():
        backend.close()
    return {precision: float(np.median(values)) for precision, values in times.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compile.int8_gain", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts (default: %(default)s)")
    parser.add_argument("--repeat", type=count, default=140, help="timed rounds per net (default: %(default)s)")
    args = parser.parse_args(argv)
    thread_counts = [int(t) for t in args.threads.split(",")]
    header = " | ".join(f"INT8 vs FP32, {t} thread(s)" for t in thread_counts)
    print(f"| net | FP32 ms, {' / '.join(map(str, thread_counts))} threads | {header} | INT8 size / FP32 |")
    print("|---|---|" + "---:|" * len(thread_counts) + "---:|")
    for name, (width, bottlenecks) in NETS.items():
        with tempfile.TemporaryDirectory(prefix="int8-gain-") as folder:
            files = export_pair(random_net(width, bottlenecks), Path(folder))
            medians = [measure(files, threads, args.repeat) for threads in thread_counts]
            size = files["int8"].stat().st_size / files["fp32"].stat().st_size
        fp32 = " / ".join(f"{m['fp32']:.2f}" for m in medians)
        gains = " | ".join(f"{m['fp32'] / m['int8']:.2f}x" for m in medians)
        print(f"| {name} | {fp32} | {gains} | {size:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
