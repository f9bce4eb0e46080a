"""dlib's own face pipeline as a reference to measure ours against, on the same pairs, folds and machine.

dlib-bin is a development-only peer (never on a board): its HOG detector (upsampled once, as dlib's examples
do for small faces), its 5-point shape predictor, ``get_face_chip`` (150 px, padding 0.25) and its ResNet
descriptor, all from the files of face-recognition-models. Its score for a pair is the negated Euclidean
distance of the raw descriptors, so that higher means more alike, as our cosine does.
"""
from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.faces.align import pick_face
from edge.runtime.packaged import installed_package_file

MODELS_PACKAGE = "face_recognition_models"
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
INSTALL = "pip install dlib-bin face-recognition-models (development machines only)"
UPSAMPLE = 1


def model_file(name: str) -> Path:
    return installed_package_file(MODELS_PACKAGE, f"models/{name}", INSTALL)


class _Box:
    """A detection in the shape edge.faces.dataprep's face choosers read (box = x1, y1, x2, y2)."""

    def __init__(self, rect):
        self.rect = rect
        self.box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float32)


def import_dlib():
    try:
        import dlib
    except ImportError as err:
        raise UserError(f"the dlib reference needs dlib ({err}): {INSTALL}") from err
    return dlib


class DlibDetector:
    """dlib's HOG face detector, upsampled once (faces down to about 40 px)."""

    name = "dlib-bin HOG, upsampled once"

    def __init__(self):
        self._detector = import_dlib().get_frontal_face_detector()

    def faces(self, rgb: np.ndarray) -> list[_Box]:
        return [_Box(rect) for rect in self._detector(rgb, UPSAMPLE)]


class DlibPipeline:
    """HOG detection -> 5 landmarks -> 150 px chip -> 128-D descriptor, timing the descriptor alone."""

    name = "dlib-bin (HOG + 5-point + ResNet)"

    def __init__(self, face: str = "centre"):
        dlib = import_dlib()
        self._dlib = dlib
        self._detector = DlibDetector()
        self._landmarks = dlib.shape_predictor(str(model_file(LANDMARKS_FILE)))
        self._descriptor = dlib.face_recognition_model_v1(str(model_file(DESCRIPTOR_FILE)))
        self._face = face
        self.version = dlib.__version__

    def embed(self, image_bgr: np.ndarray) -> tuple[np.ndarray | None, float | None]:
        """(descriptor or None when no face is found, ms spent in the descriptor alone)."""
        rgb = np.ascontiguousarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB))
        faces = self._detector.faces(rgb)
        face = pick_face(faces, image_bgr.shape, self._face)
        if face is None:
            return None, None
        chip = self._dlib.get_face_chip(rgb, self._landmarks(rgb, face.rect), size=150, padding=0.25)
        start = time.perf_counter()
        descriptor = np.asarray(self._descriptor.compute_face_descriptor(chip), np.float32)
        return descriptor, (time.perf_counter() - start) * 1000.0


def dlib_scores(first: np.ndarray, second: np.ndarray) -> float:
    """Negated Euclidean distance: dlib's rule accepts a pair below 0.6, i.e. a score above -0.6."""
    return -float(np.linalg.norm(first - second))
