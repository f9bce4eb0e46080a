"""Seeded synthetic faces: identities, single face photos, identity folders and kiosk-camera scenes.

numpy and OpenCV only, so it runs on a board as well as on the training machine.
"""
from edge.synthetic.dataset import DatasetStats, write_identity_folders
from edge.synthetic.identity import Identity, identities, identity_from_seed, identity_name
from edge.synthetic.render import Nuisance, render_face, sample_nuisance
from edge.synthetic.scene import SceneScript

__all__ = [
    "DatasetStats", "Identity", "Nuisance", "SceneScript", "identities", "identity_from_seed", "identity_name",
    "render_face", "sample_nuisance", "write_identity_folders",
]
