"""Third-party native libraries that write to the process's stderr with no setting to stop them (the TFLite
runtime's delegate line, TensorFlow's oneDNN notice, torchao's optional kernels): while they run, stderr goes to
a file, and every line but the known noise is written back, so their warnings and errors still reach the log."""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile

TFLITE_INFO = re.compile(r"^INFO: ")
# litert-torch's import and conversion: TensorFlow's absl preamble and oneDNN notice, torchao's optional CUDA
# kernels that cannot load on a CPU machine, and torch's pytree deprecation notice for torchao's enums;
# ai-edge-quantizer's calibration bar (compile shows its own).
CONVERTER_NOISE = re.compile(r"^(INFO: |WARNING: All log messages before absl::InitializeLog|I\d{4} .*oneDNN "
                             r"custom operations|Failed to load .*torchao|W\d{4} .*_pytree\.py.*register_constant"
                             r"|\s*Running Calibration)")


@contextlib.contextmanager
def stderr_filtered(noise: re.Pattern):
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines() if not noise.match(line)]
            if kept:
                print("\n".join(kept), file=sys.stderr)
