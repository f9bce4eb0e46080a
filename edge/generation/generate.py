"""Face generators on the device: a bundle's generator files loaded for sampling, reconstructing and swapping.

A bundle can hold several generator roles (compile names them after their checkpoints): a reconstructing or
face-swap graph that takes an aligned face (``generator``, ``faceswap``), and decoders that take a latent
(``generator_decoder``, ``dcgan``, ``cgan``: input layout ``NC``, the prior in ``extra.latent``). Every generator
answers in the project's generator image convention (edge.runtime.preprocess.generator_input_spec: NCHW, RGB, [0, 1]).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.bundles.golden import model_role
from edge.runtime.backends.base import BackendOptions
from edge.runtime.board_profile import BoardProfile
from edge.runtime.boards import BoardConfig
from edge.runtime.manifest import Manifest, ModelEntry
from edge.runtime.models import LoadedModel, choose_model, load_model
from edge.runtime.preprocess import generator_input_spec, output_to_images, to_input_dtype

MODES = ("sample", "reconstruct", "anonymise")


def takes_latent(entry: ModelEntry) -> bool:
    return entry.input.layout == "NC"


def generator_roles(manifest: Manifest) -> dict[str, list[ModelEntry]]:
    """Role -> its files, for every generator in the bundle."""
    roles: dict[str, list[ModelEntry]] = {}
    for entry in manifest.for_task("generate"):
        roles.setdefault(model_role(entry), []).append(entry)
    return roles


def pick_role(manifest: Manifest, mode: str, role: str | None = None) -> str:
    """The generator role ``mode`` uses: the one asked for, else the first that fits (anonymise: a face swap, then a
    decoder; sample: a decoder; reconstruct: a graph that takes faces)."""
    roles = generator_roles(manifest)
    if not roles:
        raise UserError("the bundle has no generator: compile one with python -m compile --checkpoints "
                        "runs/generator.pt ...")
    fits = {name: takes_latent(entries[0]) for name, entries in roles.items()}
    swaps = [n for n, e in roles.items() if e[0].architecture == "faceswap_autoencoder"]
    order = {"sample": [n for n, latent in fits.items() if latent],
             "reconstruct": [n for n, latent in fits.items() if not latent and n not in swaps],
             "anonymise": swaps + [n for n, latent in fits.items() if latent]}[mode]
    if role is not None:
        if role not in roles:
            raise UserError(f"the bundle has no generator {role!r}; it has {', '.join(sorted(roles))}")
        if role not in order:
            kind = "takes a latent" if fits[role] else "takes a face"
            raise UserError(f"generator {role} {kind}, which {mode} cannot use; for {mode}: "
                            f"{', '.join(order) or 'none in this bundle'}")
        return role
    if not order:
        wanted = {"sample": "a decoder from a latent (a VAE, an autoencoder or a GAN)",
                  "reconstruct": "an autoencoder's reconstructing graph",
                  "anonymise": "a face swap or a decoder from a latent"}[mode]
        raise UserError(f"{mode} needs {wanted}; the bundle's generators are {', '.join(sorted(roles))}")
    return order[0]


@dataclass(frozen=True)
class Prior:
    """A decoder's latent distribution, as compile recorded it (extra.latent)."""

    mean: np.ndarray
    std: np.ndarray
    classes: int
    class_names: tuple[str, ...]

    def draw(self, count: int, rng: np.random.Generator, labels: np.ndarray | None = None) -> np.ndarray:
        """The decoder's input rows: a latent each, then the class one-hot for a conditional decoder (classes
        cycled unless given)."""
        z = rng.normal(self.mean, self.std, (count, len(self.mean))).astype(np.float32)
        if not self.classes:
            return z
        labels = np.arange(count) % self.classes if labels is None else np.asarray(labels)
        return np.concatenate([z, np.eye(self.classes, dtype=np.float32)[labels]], axis=1)


class Generator:
    """One generator file bound to its backend."""

    def __init__(self, model: LoadedModel):
        self.model = model
        self.entry = model.entry
        self.prior = self.prior_of(self.entry) if takes_latent(self.entry) else None
        side = self.entry.outputs[0].shape[-1]
        self.output_spec = generator_input_spec(side)

    @staticmethod
    def prior_of(entry: ModelEntry) -> Prior:
        latent = entry.extra.get("latent")
        if not latent:
            raise UserError(f"{entry.name} takes a latent but its manifest entry records no prior (extra.latent): "
                            "recompile the bundle")
        return Prior(np.asarray(latent["mean"], np.float32), np.asarray(latent["std"], np.float32),
                     int(latent["classes"]), tuple(latent.get("class_names", ())))

    @property
    def name(self) -> str:
        return self.entry.name

    def decode(self, rows: np.ndarray) -> list[np.ndarray]:
        """Decoder input rows (Prior.draw) -> BGR uint8 faces."""
        return self._images(self.model.infer({self.entry.input.name: to_input_dtype(rows, self.entry.input)}))

    def sample(self, count: int, rng: np.random.Generator, labels: np.ndarray | None = None) -> list[np.ndarray]:
        """``count`` new faces, one call each (the files take batch 1, as the kiosk runs them)."""
        if self.prior is None:
            raise UserError(f"{self.name} takes faces, not latents: it cannot sample")
        rows = self.prior.draw(count, rng, labels)
        return [face for i in range(count) for face in self.decode(rows[i:i + 1])]

    def transform(self, crops: list[np.ndarray]) -> list[np.ndarray]:
        """Aligned face crops -> the model's faces (a reconstruction, or a swap into its second person)."""
        if self.prior is not None:
            raise UserError(f"{self.name} takes latents, not faces")
        return [face for crop in crops for face in self._images(self.model.run_images([crop]))]

    def _images(self, outputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return output_to_images(outputs[self.entry.outputs[0].name], self.output_spec)

    def close(self) -> None:
        self.model.close()


def open_generator(bundle_dir: str | Path, manifest: Manifest, board: BoardConfig, mode: str,
                   role: str | None = None, backend: str | None = None, precision: str | None = None,
                   threads: int | None = None, profile: BoardProfile | None = None) -> tuple[Generator, str]:
    """The generator ``mode`` uses, loaded as the board runs it, and a line saying which file and why."""
    role = pick_role(manifest, mode, role)
    only = Manifest(board=manifest.board, created=manifest.created, tools=manifest.tools,
                    models=tuple(generator_roles(manifest)[role]))
    choice = choose_model(only, board, "generate", backend=backend, precision=precision, profile=profile)
    model = load_model(bundle_dir, choice.entry, choice.backend, BackendOptions(threads=threads or board.threads))
    return Generator(model), f"{choice.entry.file} ({choice.reason})"
