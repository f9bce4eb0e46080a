"""Crop templates: where a face's key points land in the chip a model was trained on.

Each template (a registry by name; the manifest's ``crop`` names one) says its output size, which detector key
points it uses and where they land. Key points, everywhere in the project, are named in image order:
``eye_image_left``, ``eye_image_right``, ``nose``, ``mouth`` (BlazeFace gives these plus two ear points); a
5-point source with mouth corners (MTCNN, faces80 landmarks, the synthetic renderer) maps to the first four
with ``five_to_four``. Templates are a contract between training, compile and the board, so they live beside the
manifest; ``edge.faces.align.Aligner`` cuts chips with them.

Box crops (``BOX_CROPS``) are the other kind: a rectangle around the detector's face box, a few times its size,
resized without rotation (passive liveness models look at the face's surroundings: a screen's edge, a hand).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
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


@dataclass(frozen=True)
class BoxCrop:
    """Silent-Face-Anti-Spoofing's crop, cut around our detector's box: its box made the publisher's shape, scaled
    about its centre (less where the photo is too small), moved inside the photo, resized to size x size (the
    aspect is not kept, as the publisher's is not)."""

    name: str
    size: int                                      # square output side in pixels
    scale: float                                   # the crop's sides over the publisher's face box's
    box_height: float                              # the publisher's box height over our detector's, same bottom
    origin: str

    def region(self, box: np.ndarray, image_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
        """(x1, y1, x2, y2), inclusive pixel bounds inside the photo, of the crop around a detector box."""
        height, width = image_shape[:2]
        x1, _, x2, y2 = (float(v) for v in box[:4])
        box_w = max(x2 - x1, 1.0)
        box_h = max((y2 - box[1]) * self.box_height, 1.0)
        scale = min((height - 1) / box_h, (width - 1) / box_w, self.scale)
        crop_w, crop_h = box_w * scale, box_h * scale
        centre_x, centre_y = (x1 + x2) / 2, y2 - box_h / 2
        left = min(max(centre_x - crop_w / 2, 0.0), width - 1 - crop_w)
        top = min(max(centre_y - crop_h / 2, 0.0), height - 1 - crop_h)
        return int(left), int(top), int(left + crop_w), int(top + crop_h)

    def cut(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The size x size crop of the face whose detector box is ``box`` (x1, y1, x2, y2)."""
        x1, y1, x2, y2 = self.region(box, image.shape)
        return cv2.resize(image[y1:y2 + 1, x1:x2 + 1], (self.size, self.size), interpolation=cv2.INTER_LINEAR)


# RetinaFace's box (the publisher's detector) reaches higher up the forehead than BlazeFace's, which is about as
# tall as it is wide: the box is made a fifth taller upwards before scaling. An estimate, not a fit (RetinaFace does
# not run here); docs/bundles-and-compile.md gives how live scores move with it.
PUBLISHER_BOX_HEIGHT = 1.2
BOX_CROPS = {
    name: BoxCrop(name, 80, scale, PUBLISHER_BOX_HEIGHT,
                  f"Silent-Face-Anti-Spoofing's {scale:g}x box crop, from BlazeFace's box made {PUBLISHER_BOX_HEIGHT}x "
                  f"taller")
    for name, scale in (("face_box_2.7x", 2.7), ("face_box_4x", 4.0))
}


def box_crop(name: str) -> BoxCrop:
    if name not in BOX_CROPS:
        raise UserError(unknown_name_message("box crop", name, sorted(BOX_CROPS)))
    return BOX_CROPS[name]


def box_crop_for_scale(scale: float) -> BoxCrop:
    """The box crop at ``scale`` times the face box; a scale no crop has is refused with the ones there are."""
    for crop in BOX_CROPS.values():
        if abs(crop.scale - scale) < 1e-6:
            return crop
    raise UserError(f"no box crop at {scale:g}x the face box; there are: "
                    f"{', '.join(f'{c.scale:g}x ({c.name})' for c in BOX_CROPS.values())}")


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
