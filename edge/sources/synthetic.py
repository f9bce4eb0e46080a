"""``synthetic://kiosk?seeds=100,101&frames_per_person=30``: rendered people walking up to a kiosk camera.

``&width=1920&height=1080&face_scale=0.12`` makes the same people small and far away (faces of about 40 px).

For demos and tests: the frames exercise the real detector, and each frame carries the ground truth (who is
in it), so a run can be scored. Identity names match the synthetic dataset's folders (``id0100``).
"""
from __future__ import annotations

import importlib

from edge.base.errors import UserError
from edge.base.flags import count, count_or_zero, positive, side, whole_numbers
from edge.sources.base import Frame, FrameSource
from edge.sources.uri import uri_options

OPTIONS = {"seeds": ((100, 101, 102, 103), whole_numbers), "frames_per_person": (30, count),
           "gap_frames": (5, count_or_zero), "width": (640, side), "height": (480, side), "seed": (0, count_or_zero),
           "fps": (30.0, positive), "face_scale": (1.0, positive)}


RENDERER_INSTALL = ("the face renderer is not installed (a board does not need it): from a clone, "
                    "pip install packages/synthetic-faces")


def face_renderer():
    """The ``synthetic_faces`` package, or a UserError saying how to install it."""
    try:
        return importlib.import_module("synthetic_faces")
    except ModuleNotFoundError as err:
        if err.name != "synthetic_faces":
            raise
        raise UserError(RENDERER_INSTALL) from err


class SyntheticSource(FrameSource):
    def __init__(self, uri: str):
        super().__init__(uri)
        self.options = uri_options(uri, OPTIONS)
        self._script = None
        self._index = 0

    def open(self) -> None:
        renderer = face_renderer()
        people = [renderer.identity_from_seed(s) for s in self.options["seeds"]]
        o = self.options
        try:
            self._script = renderer.SceneScript(people, frames_per_person=o["frames_per_person"],
                                                gap_frames=o["gap_frames"], width=o["width"], height=o["height"],
                                                seed=o["seed"], face_scale=o["face_scale"])
        except ValueError as err:           # the scene's own argument checks
            raise UserError(f"{self.uri}: {err}") from err

    def read(self) -> Frame | None:
        if self._index >= len(self._script):
            self.ended = True
            return None
        image, person, box = self._script.frame(self._index)
        truth = {"identity": face_renderer().identity_name(person) if person else None,
                 "box": [float(v) for v in box] if box is not None else None}
        frame = Frame(image, self._index, self._index / self.options["fps"], truth)
        self._index += 1
        return frame
