"""Seeded synthetic faces: identities, single face photos, identity folders and kiosk-camera scenes; and
presentation-attack clips (a photo printed or on a screen, held up to a camera) rendered from real photos.

Data, not runtime: a package of its own (numpy and OpenCV only) that ``edge``'s ``synthetic://`` source and
``synth`` command and the trainer import lazily, so that a kiosk never loads it.
"""
from synthetic_faces.attacks import ATTACK_KINDS, AttackClip, ClipShape, Face
from synthetic_faces.dataset import DatasetStats, write_identity_folders
from synthetic_faces.identity import Identity, identities, identity_from_seed, identity_name
from synthetic_faces.render import Nuisance, render_face, sample_nuisance
from synthetic_faces.scene import SceneScript

__all__ = [
    "ATTACK_KINDS", "AttackClip", "ClipShape", "DatasetStats", "Face", "Identity", "Nuisance", "SceneScript",
    "identities", "identity_from_seed", "identity_name", "render_face", "sample_nuisance", "write_identity_folders",
]
