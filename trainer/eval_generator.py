"""``python -m trainer eval-generator``: how good a face generator's faces are, on held-out real faces.

- PSNR and SSIM of its reconstructions against their inputs;
- a Frechet distance between its faces and the real ones, on the embeddings of a face network we have offline
  (dlib's descriptor, packaged with face-recognition-models, or any verifier checkpoint given with
  ``--features``). Its name goes into every report: the figure is not comparable with Inception FID;
- the share of its faces in which the runtime's detector finds a face (score at least 0.5), beside the same share
  for the real faces;
- a grid of real faces over their reconstructions, and a Markdown report.

A model that only reconstructs (the convolutional autoencoder) is judged on its reconstructions; families that
sample from a latent are judged on their samples when they land.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.imageio import list_images
from edge.base.metrics import frechet_distance, psnr, ssim
from edge.runtime.crops import CROPS
from edge.runtime.preprocess import output_to_images, prepare_batch
from trainer.checkpoint import load_checkpoint
from trainer.data import read_crop
from trainer.evaluate import reconstruct
from trainer.generator_features import detected_share, embed, feature_network
from trainer.report import image_grid, outputs_next_to, write_png, write_report
from trainer.sampling import interpolation_rows, latent_prior, sample_images
from trainer.train_faceswap import swap_scores

MIN_IMAGES = 16
GRID_COLUMNS = 8


@dataclass
class Result:
    metrics: dict
    report: Path
    summary: str


def evaluate_generator(checkpoint_path: Path, real: Path, features: Path | None = None, max_images: int = 500,
                       seed: int = 0, out: Path | None = None, command: str = "",
                       swap_with: Path | None = None) -> Result:
    checkpoint = load_checkpoint(checkpoint_path)
    if checkpoint.task != "generate":
        raise UserError(f"{checkpoint_path} is a {checkpoint.task} model; eval-generator judges generators")
    swap = checkpoint.architecture == "faceswap_autoencoder"
    if swap != (swap_with is not None):
        raise UserError(f"{checkpoint_path} is a face swap: give the second person's faces with --swap_with" if swap
                        else "--swap_with is for face-swap checkpoints")
    spec = checkpoint.preprocessing
    side = CROPS[spec.crop].size if spec.crop in CROPS else spec.size[0]
    faces = load_real(real, side, max_images, seed)
    model = checkpoint.build_model()
    prior = latent_prior(checkpoint)
    rng = np.random.default_rng(seed)
    real_images = output_to_images(prepare_batch(faces, spec), spec)
    extractor, extractor_name = feature_network(features)
    from edge.faces.packaged_detector import load_packaged_detector

    detector = load_packaged_detector()
    real_features = embed(extractor, real_images)
    metrics = {"images": len(faces), "architecture": checkpoint.architecture, "frechet_features": extractor_name,
               "faces_detected_real": round(detected_share(real_images, detector), 4)}
    rows = {"real faces": real_images}                 # the grid's rows, top to bottom
    if hasattr(model, "encoder") and not swap:         # the autoencoders: reconstructions of the real faces
        inputs, outputs = reconstruct(model, faces, spec)                      # N,3,H,W in [0, 1]
        rebuilt = output_to_images(outputs, spec)
        metrics.update({
            "psnr_db": round(float(np.mean([min(psnr(x, y), 120.0) for x, y in zip(inputs, outputs)])), 3),
            "ssim": round(float(np.mean([ssim(x, y) for x, y in zip(inputs, outputs)])), 4),
            "frechet_distance_reconstructions": round(frechet_distance(real_features, embed(extractor, rebuilt)), 4),
            "faces_detected_reconstructions": round(detected_share(rebuilt, detector), 4)})
        rows["their reconstructions"] = rebuilt
    if prior is not None:                             # samplers: as many new faces as real ones
        samples = sample_images(model, prior, len(faces), spec, rng)
        metrics.update({"frechet_distance_samples": round(frechet_distance(real_features, embed(extractor, samples)),
                                                          4),
                        "faces_detected_samples": round(detected_share(samples, detector), 4),
                        "latent_prior": "Gaussian fitted to the training codes" if prior.std.any() and
                        checkpoint.architecture == "conv_autoencoder" else "standard normal"})
        rows["samples (not of these people)"] = samples
    if swap:
        other = load_real(swap_with, side, max_images, seed)
        metrics.update(swap_scores(model, [(faces, faces), (other, other)], spec))
        rows["swapped into the second person"] = output_to_images(reconstruct(model, faces, spec)[1], spec)
    judged = "samples" if prior is not None else "reconstructions"
    metrics["judged_on"] = {"samples": "faces sampled from the latent prior",
                            "reconstructions": "reconstructions of the real faces"}[judged] if not swap else \
        "swaps of the real faces into the second person"
    metrics["frechet_distance"] = metrics.get(f"frechet_distance_{judged}")
    metrics["faces_detected"] = metrics.get(f"faces_detected_{judged}")
    out = out or outputs_next_to(checkpoint_path, "eval.md")
    shown = np.linspace(0, len(faces) - 1, min(GRID_COLUMNS, len(faces))).astype(int)   # spread over the folder
    grid = write_png(out.with_suffix(".png"), image_grid([[row[i] for i in shown] for row in rows.values()], zoom=2))
    pictures = [f"![rows: {'; '.join(rows)}]({grid.name})"]
    if prior is not None:
        walk = write_png(outputs_next_to(out.with_suffix(""), "interpolation.png"),
                         image_grid(interpolation_rows(model, prior, spec, rng), zoom=2))
        pictures.append(f"![latent interpolations: each row walks between two drawn latents]({walk.name})")
    out.with_suffix(".json").write_text(json.dumps(metrics, indent=2) + "\n")
    summary = (f"eval-generator: {metrics['images']} real faces"
               + (f", PSNR {metrics['psnr_db']:.2f} dB, SSIM {metrics['ssim']:.3f}" if "psnr_db" in metrics else "")
               + (f", Frechet distance {metrics['frechet_distance']:.4f} ({extractor_name}, {judged}), a face "
                  f"detected in {100 * metrics['faces_detected']:.1f} % of its {judged}"
                  if metrics["frechet_distance"] is not None else "")
               + (f", swap(A->B) nearer B in {100 * metrics['swap_a_to_b_nearer_b']:.1f} %"
                  if "swap_a_to_b_nearer_b" in metrics else ""))
    report = write_report(out, "Generator evaluation", summary, {
        "Figures": metrics,
        "Notes": [f"The Frechet distance is computed on {extractor_name} embeddings of the real faces and of the "
                  "model's faces: it ranks models judged with the same network and is not comparable with "
                  "Inception FID.", "", *pictures, "",
                  f"- checkpoint: `{checkpoint_path}`", f"- real faces: `{real}`", f"- command: `{command}`"],
    })
    print(summary)
    return Result(metrics, report, summary)


def load_real(root: Path, side: int, max_images: int, seed: int) -> np.ndarray:
    """Up to ``max_images`` aligned crops of ``side`` pixels under ``root`` (a seeded sample), unreadable skipped."""
    paths = list_images(root)
    if len(paths) > max_images:
        paths = [paths[i] for i in sorted(np.random.default_rng(seed).choice(len(paths), max_images, False))]
    images = [image for image in (read_crop(p, side) for p in paths) if image is not None]
    if len(images) < MIN_IMAGES:
        raise UserError(f"{root} holds {len(images)} readable {side}x{side} face crops; eval-generator needs at "
                        f"least {MIN_IMAGES}")
    return np.stack(images)
