"""Distillation: a MobileFaceNet-class student learns to reproduce a teacher's embeddings on unlabelled faces.

The student takes the teacher's crop (``dlib150`` for the imported dlib ResNet) resized to its own input side, and
its normalised embedding is pulled towards the teacher's, centred on the teacher's mean embedding (cosine loss),
while the similarities between the faces of a batch are pulled towards the teacher's (relational loss): no
identity labels are needed. The student's threshold is its own, calibrated by compile like any verifier's.
Training is counted in images seen; at every ``checkpoint_every`` images the student is saved and, with
``eval_data``, scored on real pairs beside the teacher: the curve of images seen against accuracy.
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from edge.base.errors import UserError
from edge.base.progress import progress_bar
from trainer.checkpoint import load_checkpoint, save_checkpoint
from trainer.data import augment, batches, load_faces, to_tensor
from trainer.distill_data import Crops, Teacher, cached_targets, load_crops
from trainer.evaluate import embed, make_pairs, verification_metrics
from trainer.loop import optimise, start_run
from trainer.models.mobilefacenet import MobileFaceNetS
from trainer.report import Clock, interrupt_notice, outputs_next_to, write_report

ARCHITECTURE = "mobilefacenet_s"
WEIGHT_DECAY = 5e-4
GREY = 0.25            # share of training faces turned grey: IR kiosk cameras and grey photo sets
JITTER = 0.04          # scale and shift jitter (share of the side) and rotation (radians) of the crop


@dataclass(frozen=True)
class DistillOptions:
    images: int = 60_000              # images seen in all
    checkpoint_every: int = 10_000
    width: float = 1.0
    input_size: int = 112
    batch_size: int = 64
    lr: float = 3e-3
    relational: float = 1.0           # weight of the relational loss beside the cosine loss
    target_far: float = 0.01
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    max_seconds: float | None = None


@dataclass
class Result:
    checkpoint: Path
    curve: list[dict]
    teacher_metrics: dict | None
    report: Path
    summary: str


def check_options(options: DistillOptions) -> None:
    if options.batch_size < 2:
        raise UserError(f"--batch_size must be at least 2 (the relational loss compares faces), got "
                        f"{options.batch_size}")
    if options.images < options.batch_size:
        raise UserError(f"--images ({options.images}) must be at least one batch ({options.batch_size})")
    if options.input_size % 16:
        raise UserError(f"--input_size must be a multiple of 16, got {options.input_size}")
    if options.width <= 0 or options.lr <= 0 or options.relational < 0:
        raise UserError("--width and --lr must be positive and --relational not negative")


def distill(teacher_path: Path, data: list[Path], out: Path, options: DistillOptions = DistillOptions(),
            teacher_bundle: Path | None = None, eval_data: list[Path] = (), command: str = "") -> Result:
    check_options(options)
    teacher_ckpt = load_checkpoint(teacher_path)
    if teacher_ckpt.task != "verify":
        raise UserError(f"{teacher_path} is a {teacher_ckpt.task} model; the teacher must be a verifier")
    rng, device = start_run(options.seed, options.threads, options.device)
    side = teacher_ckpt.preprocessing.size[0]
    crops = load_crops(data, side)
    evaluation = load_faces_of(eval_data, side) if eval_data else None
    teacher = Teacher(teacher_ckpt, teacher_bundle, threads=torch.get_num_threads())
    try:
        raw = cached_targets(outputs_next_to(out, "targets.npz"), teacher, crops)
        # A face embedding net puts every face in a narrow cone (dlib's: cosines of 0.8-0.95 between strangers), so
        # the student learns the teacher's directions around their mean: what tells people apart. Its own space
        # is that centred one; compile calibrates its threshold like any verifier's.
        centre = raw.mean(axis=0)
        targets = F.normalize(torch.from_numpy(raw - centre), dim=1)
        teacher_metrics = score(teacher.embed(evaluation.images, "teacher on pairs"), evaluation,
                                options.target_far) if evaluation else None
    finally:
        teacher.close()

    spec = dataclasses.replace(teacher_ckpt.preprocessing, shape=(1, 3, options.input_size, options.input_size))
    # Resized once here, not in every batch: the student sees the crop at its own side.
    images = np.stack([cv2.resize(c, (options.input_size,) * 2, interpolation=cv2.INTER_AREA) for c in crops.images])
    config = {"width": options.width, "embedding": int(targets.shape[1]), "input_size": options.input_size}
    student = MobileFaceNetS(**config).to(device, memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, weight_decay=WEIGHT_DECAY)
    total_steps = math.ceil(options.images / options.batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=options.lr, total_steps=total_steps,
                                                   pct_start=0.1)
    clock = Clock(options.max_seconds)
    curve: list[dict] = []
    seen, next_mark, loss_value = 0, options.checkpoint_every, float("nan")
    bar = progress_bar(total=total_steps * options.batch_size, desc="distill", unit="img")
    order = iter(())
    try:
        while seen < total_steps * options.batch_size and not clock.expired():
            index = next(order, None)
            if index is None:                               # a new pass over the faces, whole batches only
                order = batches(len(images), options.batch_size, rng, drop_last=True)
                continue
            student.train()
            x = to_tensor(jitter(augment(images[index], rng), rng), spec, True, device)    # N,3,S,S
            loss, cosine = embedding_loss(student(x), targets[index].to(device), options.relational)
            loss_value = optimise(loss, optimizer, schedule)
            seen += len(index)
            bar.set_postfix(loss=f"{loss_value:.4f}", cos=f"{cosine:.3f}", refresh=False)  # drawn by update()
            bar.update(len(index))
            if seen >= next_mark:
                curve.append(milestone(student, spec, config, seen, evaluation, options, out, clock, loss_value))
                next_mark += options.checkpoint_every
    except KeyboardInterrupt:                               # the student as it is is scored and saved
        print(interrupt_notice("distill", seen, total_steps * options.batch_size, "images"), file=sys.stderr)
    bar.close()
    if not curve or curve[-1]["images_seen"] != seen:
        curve.append(milestone(student, spec, config, seen, evaluation, options, out, clock, loss_value))
    final = curve[-1]
    metrics = {**final, "teacher": teacher.source, "teacher_centre": [round(float(v), 6) for v in centre],
               "teacher_metrics": teacher_metrics, "data": crops.per_root,
               "skipped_images": crops.skipped, "curve": curve, "options": dataclasses.asdict(options)}
    threshold = final.get("threshold", teacher_ckpt.threshold)
    save_checkpoint(out, architecture=ARCHITECTURE, config=config, task="verify",
                    model=student.to(memory_format=torch.contiguous_format), preprocessing=spec, metrics=metrics,
                    threshold=threshold)
    return finish(out, curve, teacher_metrics, teacher.source, crops, options, command)


def embedding_loss(raw: torch.Tensor, targets: torch.Tensor, relational: float) -> tuple[torch.Tensor, float]:
    """Cosine loss to the (unit) targets plus ``relational`` times the squared error between the batch's
    similarity matrices; returns the loss and the batch's mean cosine to the targets."""
    mine = F.normalize(raw, dim=1)                                                      # N,D
    cosine = (mine * targets).sum(dim=1).mean()
    loss = (1 - cosine) + relational * F.mse_loss(mine @ mine.T, targets @ targets.T)
    return loss, cosine.item()


def load_faces_of(roots: list[Path], side: int):
    """Identity folders from several roots as one labelled set (each root's identities kept apart)."""
    from trainer.data import FaceSet

    sets = [load_faces(root, side) for root in roots]
    labels, offset = [], 0
    for faces in sets:
        labels.append(faces.labels + offset)
        offset += len(faces.names)
    names = [f"{Path(f.root).name}/{n}" for f in sets for n in f.names]
    return FaceSet(np.concatenate([f.images for f in sets]), np.concatenate(labels), names,
                   sum(f.skipped for f in sets), Path(roots[0]))


def jitter(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Small random scale, shift and rotation of each crop: the aligner's own error on a real camera."""
    side = images.shape[1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        scale = 1 + rng.uniform(-JITTER, JITTER)
        angle = math.degrees(rng.uniform(-JITTER, JITTER) * 2)
        matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
        matrix[:, 2] += rng.uniform(-JITTER, JITTER, 2) * side
        out[i] = cv2.warpAffine(image, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    grey = rng.random(len(images)) < GREY
    if grey.any():
        out[grey] = np.repeat(out[grey].mean(axis=3, keepdims=True), 3, axis=3).astype(np.uint8)
    return out


def score(vectors: np.ndarray, faces, target_far: float) -> dict:
    """Verification metrics on every genuine pair and as many impostor pairs (fixed: the same at each mark)."""
    first, second, same = make_pairs(faces.labels, np.random.default_rng(1234))
    return verification_metrics(np.sum(vectors[first] * vectors[second], axis=1), same, target_far)


def milestone(student, spec, config, seen: int, evaluation, options: DistillOptions, out: Path, clock: Clock,
              loss: float) -> dict:
    """Saves the student as it is after ``seen`` images and scores it on the real pairs."""
    row = {"images_seen": seen, "seconds": round(clock.elapsed), "loss": round(loss, 5)}
    if evaluation is not None:
        metrics = score(embed(student, evaluation.images, spec, mirror=True, desc=f"pairs at {seen}"), evaluation,
                        options.target_far)
        row.update({k: metrics[k] for k in ("accuracy", "auc", "eer", "tar_at_far", "threshold")})
    path = outputs_next_to(out, f"at{seen:07d}.pt")
    save_checkpoint(path, architecture=ARCHITECTURE, config=config, task="verify", model=student, preprocessing=spec,
                    metrics=row, threshold=row.get("threshold"))
    summary = ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
    print(f"distill: {summary} -> {path}", flush=True)
    return row


def finish(out: Path, curve: list[dict], teacher_metrics: dict | None, teacher_source: str, crops: Crops,
           options: DistillOptions, command: str) -> Result:
    outputs_next_to(out, "curve.json").write_text(json.dumps({"teacher": teacher_metrics, "curve": curve}, indent=2))
    plot = plot_curve(curve, teacher_metrics, outputs_next_to(out, "curve.png"))
    final = curve[-1]
    versus = (f", accuracy {final['accuracy']:.4f} against the teacher's {teacher_metrics['accuracy']:.4f}"
              if teacher_metrics else "")
    summary = f"distill: {final['images_seen']} images seen in {final['seconds']:.0f} s{versus}; checkpoint {out}"
    rows = ["| images seen | seconds | loss | accuracy | AUC | EER | TAR@FAR |", "|---:|---:|---:|---:|---:|---:|---:|"]
    for r in curve:
        rows.append(f"| {r['images_seen']} | {r['seconds']:.0f} | {r['loss']:.4f} | "
                    + " | ".join(f"{r[k]:.4f}" if k in r else "-" for k in ("accuracy", "auc", "eer", "tar_at_far"))
                    + " |")
    if teacher_metrics:
        rows.append("| teacher | | | " + " | ".join(f"{teacher_metrics[k]:.4f}"
                                                   for k in ("accuracy", "auc", "eer", "tar_at_far")) + " |")
    report = write_report(outputs_next_to(out, "report.md"), "Distillation report", summary, {
        "Curve (mirror-averaged embeddings, every genuine pair of the evaluation folders and as many impostors)": rows,
        "Data": {"teacher": teacher_source, **crops.per_root, "unreadable skipped": crops.skipped},
        "Options": dataclasses.asdict(options),
        "Files": [f"- checkpoint: `{out}`", f"- curve: `{plot.name if plot else 'not drawn (no matplotlib)'}`",
                  f"- command: `{command}`"],
    })
    print(summary)
    return Result(out, curve, teacher_metrics, report, summary)


def plot_curve(curve: list[dict], teacher_metrics: dict | None, path: Path) -> Path | None:
    if "accuracy" not in curve[-1]:
        return None
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    from matplotlib import pyplot

    figure, axis = pyplot.subplots(figsize=(6, 3.6), dpi=110)
    axis.plot([r["images_seen"] for r in curve], [r["accuracy"] for r in curve], marker="o", label="student")
    if teacher_metrics:
        axis.axhline(teacher_metrics["accuracy"], color="grey", linestyle="--", label="teacher")
    axis.set_xlabel("images seen")
    axis.set_ylabel("pair accuracy (10-fold)")
    axis.grid(alpha=0.3)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    pyplot.close(figure)
    return path
