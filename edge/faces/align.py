"""Face alignment: a similarity transform from detected key points onto a named crop template (edge.runtime.crops).

``Aligner`` is the one way a detection becomes a chip: template -> the detector's key points -> the face chosen
among those found (``pick_face``) -> the warp. The kiosk, data preparation, compile's real pairs, the latency
benchmark and the anonymiser all use it, so a chip is cut the same way everywhere (the template's border too).
"""
from __future__ import annotations

import cv2
import numpy as np

from edge.runtime.crops import CropTemplate, crop_template, keypoint_indices, similarity_transform


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
