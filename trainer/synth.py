"""``python -m trainer synth``: identity folders of faces made by one of our generators, to train a verifier on.

Each identity is one latent drawn from the generator's prior; its images are that latent moved a little
(``spread`` of the prior's standard deviation in every dimension), and for a conditional GAN also shown under each
of its classes (the head poses it was trained on), so one identity is seen in several poses. Every face is
upscaled to the 112 px aligned crop the verifier trains on, kept only where the runtime's detector finds a face at
``min_score`` or more, de-duplicated within its identity, and each identity kept only when it reaches
``per_identity`` faces, so the set is balanced. The report says what was kept and dropped, and why.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from edge.base.errors import UserError
from edge.base.progress import progress_bar
from edge.runtime.preprocess import output_to_images
from trainer.checkpoint import load_checkpoint
from trainer.data import ALIGNED_SIZE
from trainer.dedup import near_duplicates
from trainer.report import image_grid, outputs_next_to, write_png, write_report
from trainer.sampling import decode, latent_prior

ATTEMPTS = 3            # candidates drawn per wanted face before an identity is given up
GRID_IDENTITIES = 8


@dataclass
class SynthResult:
    metrics: dict
    report: Path
    summary: str


def synthesise(generator: Path, identities: int, per_identity: int, out: Path, *, spread: float = 0.35,
               min_score: float = 0.5, dedup_distance: int = 2, seed: int = 0, command: str = "") -> SynthResult:
    if identities < 2 or per_identity < 2:
        raise UserError("synth needs at least 2 identities of at least 2 faces each (a verifier learns from pairs)")
    if not 0 < spread < 2:
        raise UserError(f"--spread must be between 0 and 2 (a share of the prior's standard deviation), got {spread}")
    if out.exists() and any(out.iterdir()):
        raise UserError(f"{out} is not empty: synth writes a new folder and never mixes with old faces")
    checkpoint = load_checkpoint(generator)
    prior = latent_prior(checkpoint)
    if prior is None:
        raise UserError(f"{generator} is a {checkpoint.architecture}: it does not sample new faces; give an "
                        "autoencoder, a VAE, a DCGAN or a conditional GAN")
    from edge.faces.packaged_detector import load_packaged_detector

    detector = load_packaged_detector()
    model = checkpoint.build_model()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    counts = {"generated": 0, "low_score": 0, "duplicates": 0, "identities_dropped": 0}
    scores, grid_rows = [], []
    kept_identities = 0
    for identity in progress_bar(range(identities), desc="synth identities", unit="id"):
        centre, _ = prior.draw(1, rng)
        wanted = per_identity * ATTEMPTS
        z = (centre + spread * prior.std * rng.standard_normal((wanted, prior.size))).astype(np.float32)
        labels = (np.arange(wanted) % prior.classes).astype(np.int64) if prior.classes else None
        faces = [cv2.resize(face, (ALIGNED_SIZE, ALIGNED_SIZE), interpolation=cv2.INTER_CUBIC)
                 for face in output_to_images(decode(model, z, labels), checkpoint.preprocessing)]
        counts["generated"] += len(faces)
        found = [max((d.score for d in detector.detect(face)), default=0.0) for face in faces]
        confident = [i for i, score in enumerate(found) if score >= min_score]
        counts["low_score"] += len(faces) - len(confident)
        dropped = {confident[j] for _, j, _ in near_duplicates(np.stack([faces[i] for i in confident]),
                                                                dedup_distance)} if confident else set()
        counts["duplicates"] += len(dropped)
        usable = [i for i in confident if i not in dropped][:per_identity]
        if len(usable) < per_identity:
            counts["identities_dropped"] += 1
            continue
        folder = out / f"gen{identity:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        for n, i in enumerate(usable):
            cv2.imwrite(str(folder / f"{n:04d}.png"), faces[i])
            scores.append(found[i])
        kept_identities += 1
        if len(grid_rows) < GRID_IDENTITIES:
            grid_rows.append([faces[i] for i in usable[:8]])
    if not kept_identities:
        raise UserError(f"no identity reached {per_identity} faces the detector accepts at {min_score}: the "
                        "generator's faces are not faces yet (train it longer), or lower --min_score")
    metrics = {"generator": str(generator), "architecture": checkpoint.architecture, "identities_asked": identities,
               "identities_kept": kept_identities, "per_identity": per_identity, "faces_kept": len(scores),
               **counts, "min_score": min_score, "score_median": round(float(np.median(scores)), 4),
               "spread": spread, "dedup_distance_bits": dedup_distance, "seed": seed}
    grid = write_png(outputs_next_to(out, "samples.png"), image_grid(grid_rows, zoom=1))
    summary = (f"synth: {kept_identities} of {identities} identities, {len(scores)} faces in {out} "
               f"({counts['low_score']} of {counts['generated']} generated dropped for a detector score under "
               f"{min_score}, {counts['duplicates']} as near-duplicates)")
    report = write_report(outputs_next_to(out, "report.md"), "Generated identities", summary, {
        "What was kept and dropped": metrics,
        "Notes": ["Each row of the picture is one identity: one latent moved a little"
                  + (", under each of the generator's classes" if prior.classes else "") + ".", "",
                  f"![identities]({grid.name})", "", f"- command: `{command}`"],
    })
    print(summary)
    return SynthResult(metrics, report, summary)

