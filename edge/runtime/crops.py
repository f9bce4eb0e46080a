"""Crop templates: where a face's key points land in the chip a model was trained on.

Each template (a registry by name; the manifest's ``crop`` names one) says its output size, which detector key
points it uses and where they land. Key points, everywhere in the project, are named in image order:
``eye_image_left``, ``eye_image_right``, ``nose``, ``mouth`` (BlazeFace gives these plus two ear points); a
5-point source with mouth corners (MTCNN, faces80 landmarks, the synthetic renderer) maps to the first four
with ``five_to_four``. Templates are a contract between training, compile and the board, so they live beside the
manifest; ``edge.faces.align.Aligner`` cuts chips with them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge.base.errors import UserError
from edge.base.registry import unknown_name_message

FOUR_POINTS = ("eye_image_left", "eye_image_right", "nose", "mouth")


@dataclass(frozen=True)
class CropTemplate:
    name: str
    size: int                                      # square output side in pixels
    keypoints: tuple[str, ...]                     # the detector key points it is fitted to, in this order
    points: tuple[tuple[float, float], ...]        # where each lands in the output, pixel positions
    origin: str                                    # where the numbers come from
    border: str = "replicate"                      # how the warp fills outside the photo: replicate | black

    def array(self) -> np.ndarray:
        return np.asarray(self.points, np.float32)


CROPS = {
    # The ArcFace 112x112 template (eyes, nose tip, mouth corners) with the two mouth corners averaged into the
    # mouth centre BlazeFace predicts: models trained on these crops match the common face-recognition layout.
    "arcface112": CropTemplate(
        "arcface112", 112, FOUR_POINTS,
        ((38.2946, 51.6963), (73.5318, 51.5014), (56.0252, 71.7366), (56.1396, 92.2848)),
        "insightface's 112x112 ArcFace template, mouth corners averaged"),
    # dlib's 150-pixel face chip (get_face_chip_details, padding 0.25), which dlib's ResNet descriptor was trained
    # on: where BlazeFace's points land in it, fitted on real faces of ORL, Yale B and faces80 against dlib's own
    # 5-point alignment (python -m trainer fit-crop; docs/dlib_chip_template.md gives residuals and agreement).
    "dlib150": CropTemplate(
        "dlib150", 150, FOUR_POINTS,
        ((45.363, 45.973), (100.507, 46.201), (72.457, 75.915), (72.395, 104.485)),
        "fitted to dlib's chip on real faces (docs/dlib_chip_template.md)",
        border="black"),            # dlib's chips are black outside the photo, and so were its training chips
}


def crop_template(name: str) -> CropTemplate:
    if name not in CROPS:
        raise UserError(unknown_name_message("crop template", name, sorted(CROPS)))
    return CROPS[name]


def keypoint_indices(template: CropTemplate, detector_keypoints: tuple[str, ...] | list[str]) -> list[int]:
    """Where the template's key points sit in a detector's output; a detector lacking one is refused."""
    missing = [name for name in template.keypoints if name not in detector_keypoints]
    if missing:
        raise UserError(f"crop {template.name} needs key points {list(template.keypoints)}; the detector gives "
                        f"{list(detector_keypoints)} (missing {missing})")
    return [list(detector_keypoints).index(name) for name in template.keypoints]


def five_to_four(points5: np.ndarray) -> np.ndarray:
    """[eye, eye, nose, mouth corner, mouth corner] -> [eye, eye, nose, mouth centre]."""
    points5 = np.asarray(points5, np.float32)
    return np.concatenate([points5[:3], points5[3:5].mean(axis=0, keepdims=True)])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation + uniform scale + translation mapping ``src`` onto ``dst`` (Umeyama, 1991).

    Returns a 2x3 matrix for cv2.warpAffine. A similarity (not a full affine) keeps the face's proportions,
    which carry identity; reflections are excluded.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[1, 1] = -1
    rotation = u @ sign @ vt
    variance = (src_c ** 2).sum() / len(src)
    scale = (singular * np.diag(sign)).sum() / variance
    translation = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, translation[:, None]]).astype(np.float32)
