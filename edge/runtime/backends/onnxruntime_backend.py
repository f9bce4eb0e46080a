"""onnxruntime backend (CPU execution provider; CUDA when onnxruntime-gpu is installed on a Jetson)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.runtime.backends.base import Backend, BackendOptions, check_feeds, import_runtime


# In order of preference, among those the installed onnxruntime build offers. TensorRT's execution provider is
# left out on purpose: it builds engines for minutes on first load and belongs to the TensorRT backend; Azure's
# provider is for remote inference.
PROVIDER_PREFERENCE = ("CUDAExecutionProvider", "CPUExecutionProvider")


def execution_providers(ort) -> list[str]:
    available = ort.get_available_providers()
    return [name for name in PROVIDER_PREFERENCE if name in available]


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self):
        self._session = None
        self._path: Path | None = None
        self._inputs: list[str] = []
        self._outputs: list[str] = []
        self._pool: ThreadPoolExecutor | None = None      # with split_batch: one worker per thread
        self._workers = 1

    def load(self, path: Path, options: BackendOptions) -> None:
        ort = import_runtime("onnxruntime", "pip install 'edge-face[edge]' (or onnxruntime-gpu on a Jetson)")
        session_options = ort.SessionOptions()
        split = options.split_batch and options.threads > 1
        session_options.intra_op_num_threads = 1 if split else options.threads
        session_options.inter_op_num_threads = 1
        session_options.log_severity_level = 3
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.spin else "0")
        try:
            self._session = ort.InferenceSession(str(path), session_options, providers=execution_providers(ort))
        except Exception as err:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise UserError(f"onnxruntime could not load {path}: {err}") from err
        self._path = path
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._outputs = [o.name for o in self._session.get_outputs()]
        if split:
            self._workers = options.threads
            self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="onnxruntime-batch")

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        check_feeds(feeds, self._inputs, self._path)
        batch = len(next(iter(feeds.values())))
        if self._pool is None or batch < 2:
            return dict(zip(self._outputs, self._session.run(self._outputs, feeds)))
        # onnxruntime runs one session from several threads at once, releasing the GIL while it computes
        parts = np.array_split(np.arange(batch), min(batch, self._workers))
        runs = [self._pool.submit(self._session.run, self._outputs, {k: v[p[0]:p[-1] + 1] for k, v in feeds.items()})
                for p in parts]
        results = [run.result() for run in runs]
        return {name: np.concatenate([r[i] for r in results]) for i, name in enumerate(self._outputs)}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
        self._session = None

    def describe(self) -> dict:
        import onnxruntime as ort

        session = self._session
        return {
            "runtime": "onnxruntime",
            "version": ort.__version__,
            "providers": session.get_providers(),
            "inputs": [{"name": i.name, "shape": i.shape, "type": i.type} for i in session.get_inputs()],
            "outputs": [{"name": o.name, "shape": o.shape, "type": o.type} for o in session.get_outputs()],
        }
