"""Seeing faces: the bundle's detectors, the aligner and the embedding model, from an image to unit embeddings."""
from __future__ import annotations

import cv2
import numpy as np

from edge.base.errors import UserError
from edge.faces.align import Aligner, pick_face
from edge.faces.dataprep import enrolment_face
from edge.faces.detect import BlazeFaceDetector, Detection
from edge.gallery.store import EmbeddingKey
from edge.runtime.models import LoadedModel


class FaceReader:
    def __init__(self, detector: BlazeFaceDetector, embedder: LoadedModel, detectors: dict | None = None):
        self.detector = detector                 # whole frames and photos
        self.detectors = detectors or {detector.model.entry.architecture: detector}   # all the bundle's, by name
        self.embedder = embedder
        entry = embedder.entry
        self.aligner = Aligner(entry.input.crop, detector.keypoint_names)   # refused here, before any frame
        if any(d.keypoint_names != detector.keypoint_names for d in self.detectors.values()):
            raise UserError("the bundle's detectors name their key points differently; align needs one order")
        self.mirror_average = entry.images_per_face == 2
        self.key = EmbeddingKey(entry.sha256, entry.embedding_space, entry.kind, entry.compatible_with)

    def embed_aligned(self, faces: list[np.ndarray]) -> np.ndarray:
        """Aligned BGR crops -> L2-normalised embeddings (N, D), as ``embed_faces`` computes them."""
        return embed_faces(self.embedder, faces, self.mirror_average)

    def align(self, image: np.ndarray, detection: Detection) -> np.ndarray:
        return self.aligner.align(image, detection)

    def enrolment_embedding(self, image: np.ndarray) -> tuple[np.ndarray | None, str | None]:
        """(the embedding of the one person in an enrolment photo, None) or (None, why the photo is refused)."""
        embedding, _, why = self.enrolment_look(image)
        return embedding, why

    def enrolment_embedding_of_jpeg(self, jpeg: bytes) -> tuple[np.ndarray | None, str | None]:
        """``enrolment_embedding`` of a kept enrolment crop."""
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        return (None, "the kept crop does not decode") if image is None else self.enrolment_embedding(image)

    def enrolment_look(self, image: np.ndarray) -> tuple[np.ndarray | None, bytes | None, str | None]:
        """(embedding, the face with a margin as JPEG, None) for the one person in an enrolment photo, or (None,
        None, why it is refused). The crop is what a person may consent to keeping: another model's template can be
        made from it (``edge gallery --reembed``) without asking them back."""
        face, why = enrolment_face(self.detector.detect(image))
        if face is None:
            return None, None, why
        return self.embed_aligned([self.align(image, face)])[0], face_crop_jpeg(image, face), None

    def find_face(self, image: np.ndarray, pick: str = "largest") -> Detection | None:
        """The face ``edge.faces.align.pick_face`` chooses among those found."""
        return pick_face(self.detector.detect(image), image.shape, pick)

    def embed_image(self, image: np.ndarray, pick: str = "largest") -> np.ndarray | None:
        """The normalised embedding of the chosen face in ``image``, or None if no face is found."""
        chip = self.aligner.align_chosen(image, self.detector.detect(image), pick)
        return None if chip is None else self.embed_aligned([chip])[0]

    def close(self) -> None:
        for detector in self.detectors.values():
            detector.model.close()
        self.embedder.close()


CROP_MARGIN = 0.5             # of the face box's size on each side: enough for any model's alignment and detector
CROP_SIDE = 320               # pixels, the crop's longer side at most


def face_crop_jpeg(image: np.ndarray, face) -> bytes:
    """The face box with CROP_MARGIN around it, at most CROP_SIDE pixels, as JPEG (what a kept enrolment crop is)."""
    x1, y1, x2, y2 = face.box
    margin_x, margin_y = (x2 - x1) * CROP_MARGIN, (y2 - y1) * CROP_MARGIN
    height, width = image.shape[:2]
    left, top = int(max(0, x1 - margin_x)), int(max(0, y1 - margin_y))
    right, bottom = int(min(width, x2 + margin_x)), int(min(height, y2 + margin_y))
    crop = image[top:bottom, left:right]
    scale = min(1.0, CROP_SIDE / max(crop.shape[:2]))
    if scale < 1.0:
        crop = cv2.resize(crop, (round(crop.shape[1] * scale), round(crop.shape[0] * scale)),
                          interpolation=cv2.INTER_AREA)
    ok, jpeg = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return jpeg.tobytes()


def embed_faces(model: LoadedModel, faces, mirror_average: bool) -> np.ndarray:
    """Aligned BGR crops -> L2-normalised embeddings (N, D), one face per call: the one way the kiosk embeds, which
    compile also uses to calibrate each file's threshold.

    With mirror averaging (set per artifact by compile) each embedding is the normalised sum of the face's and its
    mirror image's, the two run as one-image calls side by side (``BackendOptions.split_batch``): 1.16x the time of
    one face on two cores, 1.95x on one (dlib's ResNet INT8, this CPU: python -m benchmarks.mirror_cost)."""
    output = model.entry.outputs[0].name
    rows = []
    for face in faces:
        batch = [face, face[:, ::-1]] if mirror_average else [face]
        vectors = [_unit(v) for v in model.run_images(batch)[output]]
        rows.append(_unit(np.sum(vectors, axis=0)))
    return np.asarray(rows, np.float32).reshape(len(faces), -1)


def _unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, np.float32).reshape(-1)
    return vector / (np.linalg.norm(vector) + 1e-12)
