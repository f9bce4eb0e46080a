"""``python -m trainer data-study``: does training the verifier on generated faces help on real ones?

Three verifiers with the same recipe and the same number of steps: on real identities only, on generated
identities only (``python -m trainer synth``), and on both. Each is scored on the same held-out real faces (folders
of identities none of them trained on): ROC curves, AUC, EER and TAR at a fixed FAR on every genuine pair and as
many impostor pairs; and on a gallery/probe split (each identity's first image enrolled, the rest probes), top-1
identification, macro F1 and a confusion matrix.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge.base import metrics
from edge.base.errors import UserError
from edge.base.imageio import scan_identity_folders
from trainer.checkpoint import load_checkpoint
from trainer.data import load_faces
from trainer.evaluate import embed, make_pairs
from trainer.report import write_report

ARMS = ("real", "generated", "both")
REPORT_FAR = 0.01


@dataclass
class StudyResult:
    rows: list[dict]
    report: Path
    summary: str


def run_study(real: Path, generated: Path, evals: list[Path], out: Path, *, steps: int, loss: str = "arcface",
              batch_size: int = 64, lr: float = 4e-3, width: float = 0.5, seed: int = 0, threads: int | None = None,
              command: str = "") -> StudyResult:
    from trainer.train_verifier import train_verifier

    for folder in (real, generated, *evals):
        scan_identity_folders(folder)                    # each an identity folder set, before any training
    if not evals:
        raise UserError("give the real faces to score on with --eval (identity folders no arm trains on)")
    out.mkdir(parents=True, exist_ok=True)
    rows, curves = [], {}
    with tempfile.TemporaryDirectory(prefix="data-study-") as scratch:
        sources = {"real": real, "generated": generated, "both": _merged(real, generated, Path(scratch))}
        for arm in ARMS:
            checkpoint = out / f"{arm}.pt"
            trained = train_verifier(sources[arm], checkpoint, batch_size=batch_size, lr=lr, seed=seed,
                                     threads=threads, width=width, loss=loss, steps=steps,
                                     command=f"{command} (arm {arm})")
            if trained.metrics["stopped_early"]:
                # no time limit here, so only Ctrl+C stops an arm: arms of unequal steps answer nothing
                raise KeyboardInterrupt
            model = load_checkpoint(checkpoint)
            for folder in evals:
                scores = score(model.build_model(), model.preprocessing, folder, seed)
                curves[(arm, folder.name)] = scores.pop("roc")
                rows.append({"arm": arm, "eval": folder.name, "train_identities":
                             trained.metrics["train_identities"], "train_images": trained.metrics["train_images"],
                             "train_seconds": trained.metrics["train_seconds"], **scores})
    (out / "study.json").write_text(json.dumps(rows, indent=2) + "\n")
    pictures = plot_roc(curves, out / "roc.png"), plot_confusion(rows, out / "confusion.png")
    table = ["| trained on | scored on | identities (images) | ROC AUC | EER | TAR @ FAR 1e-2 | top-1 | macro F1 |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    table += [f"| {r['arm']} | {r['eval']} | {r['train_identities']} ({r['train_images']}) | {r['auc']:.3f} | "
              f"{r['eer']:.3f} | {r['tar_at_far']:.3f} | {r['top1']:.3f} | {r['macro_f1']:.3f} |" for r in rows]
    best = {folder.name: max((r for r in rows if r["eval"] == folder.name), key=lambda r: r["auc"])["arm"]
            for folder in evals}
    summary = "data-study: best ROC AUC by training data: " + ", ".join(f"{k}: {v}" for k, v in best.items())
    report = write_report(out / "study.md", "Real, generated or both: the verifier's training data", summary, {
        "Results": table,
        "How": [f"Each arm: {loss}, {steps} steps of {batch_size}, lr {lr}, width {width}, seed {seed}; scored on "
                "every genuine pair and as many impostor pairs of each real set, and on a gallery of each "
                "identity's first image against the rest.", "",
                f"![ROC curves]({pictures[0].name})", "", f"![confusion matrices]({pictures[1].name})", "",
                f"- real: `{real}`", f"- generated: `{generated}`",
                f"- scored on: {', '.join(f'`{e}`' for e in evals)}", f"- command: `{command}`"],
    })
    print(summary)
    return StudyResult(rows, report, summary)


def _merged(real: Path, generated: Path, scratch: Path) -> Path:
    """Both sets as one identity folder set (symbolic links), identities prefixed by where they come from."""
    merged = scratch / "both"
    merged.mkdir()
    for prefix, root in (("real", real), ("gen", generated)):
        for name in scan_identity_folders(root).names:
            os.symlink((root / name).resolve(), merged / f"{prefix}_{name}")
    return merged


def score(model, spec, folder: Path, seed: int) -> dict:
    """Pair verification and gallery/probe identification of ``model`` on the identities under ``folder``."""
    faces = load_faces(folder)
    vectors = embed(model, faces.images, spec)
    first, second, same = make_pairs(faces.labels, np.random.default_rng([seed, 7]))
    pair_scores = np.sum(vectors[first] * vectors[second], axis=1)
    far, tar, _ = metrics.roc_curve(pair_scores, same)
    gallery = np.array([np.nonzero(faces.labels == k)[0][0] for k in np.unique(faces.labels)])
    probes = np.setdiff1d(np.arange(len(faces)), gallery)
    predicted = faces.labels[gallery][np.argmax(vectors[probes] @ vectors[gallery].T, axis=1)]
    truth = faces.labels[probes]
    classes = len(faces.names)
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (truth, predicted), 1)
    return {"auc": metrics.roc_auc(pair_scores, same), "eer": metrics.equal_error_rate(pair_scores, same)[0],
            "tar_at_far": metrics.tar_at_far(pair_scores, same, REPORT_FAR), "pairs": int(len(same)),
            "top1": float(np.mean(predicted == truth)), "macro_f1": macro_f1(confusion), "probes": int(len(probes)),
            "confusion": confusion.tolist(), "roc": (far, tar)}


def macro_f1(confusion: np.ndarray) -> float:
    """Mean over identities of F1 = 2 precision recall / (precision + recall), from a truth x predicted matrix."""
    hits = np.diag(confusion).astype(np.float64)
    precision = hits / np.maximum(confusion.sum(axis=0), 1)
    recall = hits / np.maximum(confusion.sum(axis=1), 1)
    f1 = np.where(precision + recall > 0, 2 * precision * recall / np.maximum(precision + recall, 1e-12), 0.0)
    return float(f1.mean())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    return pyplot


def plot_roc(curves: dict, path: Path) -> Path:
    plt = _pyplot()
    sets = sorted({name for _, name in curves})
    figure, axes = plt.subplots(1, len(sets), figsize=(4.5 * len(sets), 4), squeeze=False)
    for axis, name in zip(axes[0], sets):
        for arm in ARMS:
            far, tar = curves[(arm, name)]
            axis.plot(far, tar, label=arm)
        axis.set(xscale="log", xlim=(1e-3, 1), ylim=(0, 1), xlabel="false accept rate", ylabel="true accept rate",
                 title=name)
        axis.grid(alpha=0.3)
        axis.legend(title="trained on")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def plot_confusion(rows: list[dict], path: Path) -> Path:
    plt = _pyplot()
    shown = [r for r in rows if r["eval"] == rows[0]["eval"]]          # the first real set, one matrix per arm
    figure, axes = plt.subplots(1, len(shown), figsize=(4 * len(shown), 4), squeeze=False)
    for axis, row in zip(axes[0], shown):
        axis.imshow(np.asarray(row["confusion"]), cmap="viridis")
        axis.set(title=f"trained on {row['arm']}: top-1 {row['top1']:.2f}", xlabel="predicted identity",
                 ylabel="true identity")
    figure.suptitle(f"identification on {rows[0]['eval']} (gallery: each identity's first image)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
