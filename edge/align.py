"""Face alignment: a similarity transform from detected key points onto a named crop template.

``Aligner`` is the one way a detection becomes a chip: template -> the detector's key points -> the face chosen
among those found (``pick_face``) -> the warp. The kiosk, data preparation, compile's real pairs, the latency
benchmark and the anonymiser all use it, so a chip is cut the same way everywhere (the template's border too).

Each template (a registry by name; the manifest's ``crop`` names one) says its output size, which detector key
points it uses and where they land. Key points, everywhere in the project, are named in image order:
``eye_image_left``, ``eye_image_right``, ``nose``, ``mouth`` (BlazeFace gives these plus two ear points); a
5-point source with mouth corners (MTCNN, faces80 landmarks, the synthetic renderer) maps to the first four
with ``five_to_four``.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge.errors import UserError
from edge.registry import unknown_name_message

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


def largest(detections):
    """The detection with the largest box: at a kiosk, the person nearest the camera."""
    return max(detections, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), default=None)


def nearest_centre(detections, image_shape):
    """The detection whose box centre is nearest the image centre: the subject of a posed photo, where the
    largest face can be a bystander's (pair protocols such as LFW centre the subject)."""
    centre = np.array([image_shape[1], image_shape[0]], np.float32) / 2
    return min(detections, key=lambda d: float(np.linalg.norm((d.box[:2] + d.box[2:]) / 2 - centre)), default=None)


FACE_CHOICES = ("largest", "centre")


def pick_face(detections, image_shape, pick: str = "largest"):
    """The largest face (enrolment photos, the kiosk) or the one nearest the centre (posed pair photos)."""
    return nearest_centre(detections, image_shape) if pick == "centre" else largest(detections)


class Aligner:
    """A crop template bound to a detector's key point order; an unknown template or a detector lacking one of
    its key points is refused when it is made, before any image."""

    def __init__(self, crop: str | CropTemplate, keypoint_names: tuple[str, ...] | list[str]):
        self.template = crop_template(crop) if isinstance(crop, str) else crop
        self.indices = keypoint_indices(self.template, keypoint_names)

    def matrix(self, detection) -> np.ndarray:
        """The 2x3 image -> chip transform for one detection."""
        return similarity_transform(detection.keypoints[self.indices], self.template.array())

    def warp(self, image: np.ndarray, matrix: np.ndarray) -> np.ndarray:
        return warp_to_template(image, matrix, self.template)

    def align(self, image: np.ndarray, detection) -> np.ndarray:
        return self.warp(image, self.matrix(detection))

    def align_chosen(self, image: np.ndarray, detections, pick: str = "largest") -> np.ndarray | None:
        """The chip of the face ``pick_face`` chooses, None when there is none."""
        face = pick_face(detections, image.shape, pick)
        return None if face is None else self.align(image, face)


def warp_to_template(image: np.ndarray, matrix: np.ndarray, template: CropTemplate) -> np.ndarray:
    border = cv2.BORDER_CONSTANT if template.border == "black" else cv2.BORDER_REPLICATE
    return cv2.warpAffine(image, matrix, (template.size, template.size), flags=cv2.INTER_LINEAR,
                          borderMode=border, borderValue=0)


def align_face(image: np.ndarray, keypoints: np.ndarray, crop: str | CropTemplate = "arcface112") -> np.ndarray:
    """Warps the face onto ``crop`` from key points already in the template's order (a fitted template's points,
    a landmark file's); a detection goes through ``Aligner``."""
    template = crop_template(crop) if isinstance(crop, str) else crop
    points = np.asarray(keypoints, np.float32)[:len(template.points)]
    return warp_to_template(image, similarity_transform(points, template.array()), template)
