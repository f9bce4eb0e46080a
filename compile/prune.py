"""Structured pruning of a verifier with torch-pruning, then a short distillation from the unpruned model.

Whole channels go (L2 magnitude, every convolution at the same ratio, the embedding layers kept), so the pruned
network is an ordinary smaller network that every exporter and runtime takes as it is. Distillation on the
calibration crops (no labels: the unpruned model's own embeddings are the targets, the loss of
``trainer distill``) recovers what pruning took. The pruned model is saved as a checkpoint recording its layer
widths, gated on real pairs when compile has them (its AUC may drop by at most ``MAX_AUC_DROP``), else on the
held-out crops' cosine to the unpruned model, and only then replaces the unpruned one in the bundle.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from compile.calibration import CalibrationSet
from compile.match_calibration import TORCH_BATCH, MatchOptions, measure
from compile.real_pairs import PairFaces
from edge.base.errors import UserError
from edge.base.progress import progress_bar
from trainer.checkpoint import save_checkpoint
from trainer.data import augment, to_tensor
from trainer.distill import embedding_loss
from trainer.evaluate import embed
from trainer.loop import optimise

MAX_AUC_DROP = 0.01          # real-pair AUC the pruned model may lose against the unpruned one
MIN_COSINE = 0.97            # without real pairs: mean held-out cosine to the unpruned model


@dataclass(frozen=True)
class PruneOptions:
    ratio: float                 # share of each layer's channels removed
    steps: int = 400             # distillation steps after pruning
    batch_size: int = 32
    lr: float = 1e-3


def check_prunable(sources, options: PruneOptions) -> None:
    if not 0 < options.ratio < 0.9:
        raise UserError(f"--prune takes the share of channels to remove, between 0 and 0.9, got {options.ratio}")
    if not any(s.task == "verify" for s in sources):
        raise UserError("--prune prunes verifiers, and no checkpoint given is a verifier")
    try:
        import torch_pruning  # noqa: F401
    except ImportError as err:
        raise UserError("--prune needs torch-pruning: pip install 'edge-face[compile]'") from err


def prune_verifier(source, calibration: CalibrationSet, options: PruneOptions, out: Path,
                   faces: PairFaces | None, match: MatchOptions):
    """The pruned, distilled source and the record of what it cost and saved; the unpruned source and a record
    saying why when the pruned model fails its gate."""
    import torch_pruning as tp

    teacher = source.model.eval()
    example = torch.zeros(source.spec.shape)                                 # 1,3,H,W
    student = copy.deepcopy(teacher)
    kept = [m for m in student.modules() if isinstance(m, (nn.Linear, nn.BatchNorm1d))]   # the embedding's size
    tp.pruner.MagnitudePruner(student, example, importance=tp.importance.MagnitudeImportance(p=2),
                              pruning_ratio=options.ratio, ignored_layers=kept, round_to=8).step()
    distill_from(teacher, student, calibration, source.spec, options)
    record = {"ratio": options.ratio, "method": "torch-pruning L2 magnitude, channels in multiples of 8",
              "distillation_steps": options.steps, **_costs(teacher, student, example)}
    record.update(_agreement(teacher, student, calibration, source.spec, faces, match))
    if not record["passed"]:
        return source, record
    path = out / "pruned" / f"{source.role}.pt"
    sha = save_checkpoint(path, architecture=source.architecture, config=source.config, task=source.task,
                          model=student.eval(), preprocessing=source.spec,
                          metrics={**source.metrics, "pruning": record}, threshold=source.threshold, pruned=True)
    record["checkpoint"] = str(path)
    return dataclasses.replace(source, model=student.eval(), sha256=sha,
                               passes={**source.passes, "pruning": record}), record


def distill_from(teacher: nn.Module, student: nn.Module, calibration: CalibrationSet, spec,
                 options: PruneOptions) -> None:
    """Pulls the pruned student back to the unpruned model's embeddings on the calibration crops."""
    images = np.stack(calibration.images)
    targets = torch.from_numpy(embed(teacher, images, spec)).float()                     # N,D, unit length
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(student.parameters(), lr=options.lr, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, options.steps)
    student.train()
    bar = progress_bar(range(options.steps), desc="prune: distil", unit="step")
    for _ in bar:
        index = rng.choice(len(images), min(options.batch_size, len(images)), replace=False)
        loss, cosine = embedding_loss(student(to_tensor(augment(images[index], rng), spec)), targets[index], 1.0)
        optimise(loss, optimizer, schedule)
        bar.set_postfix(cos=f"{cosine:.3f}", refresh=False)
    student.eval()


def _costs(teacher: nn.Module, student: nn.Module, example: torch.Tensor) -> dict:
    import torch_pruning as tp

    (macs, params), (pruned_macs, pruned_params) = (tp.utils.count_ops_and_params(m, example)
                                                    for m in (teacher, student))
    return {"macs": int(macs), "pruned_macs": int(pruned_macs), "mac_cut": round(1 - pruned_macs / macs, 4),
            "params": int(params), "pruned_params": int(pruned_params),
            "torch_ms": _latency_ms(teacher, example), "pruned_torch_ms": _latency_ms(student, example)}


def _latency_ms(model: nn.Module, example: torch.Tensor, repeat: int = 30) -> float:
    """Median PyTorch CPU time of one image (for the report; the bundle's files are timed by benchmarks)."""
    times = []
    with torch.no_grad():
        for i in range(repeat + 5):
            start = time.perf_counter()
            model(example)
            if i >= 5:
                times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def _agreement(teacher, student, calibration: CalibrationSet, spec, faces: PairFaces | None,
               match: MatchOptions) -> dict:
    """The gate: real-pair AUC before and after when there are pairs, held-out cosine to the unpruned always."""
    held_out = np.stack(calibration.held_out)
    cosines = np.sum(embed(teacher, held_out, spec) * embed(student, held_out, spec), axis=1)
    result = {"held_out_cosine_mean": round(float(cosines.mean()), 5),
              "held_out_cosine_min": round(float(cosines.min()), 5)}
    if faces is not None:
        auc_before, auc_after = (measure(embed(m, faces.chips, spec, TORCH_BATCH, mirror=match.mirror_average),
                                         faces, match).auc for m in (teacher, student))
        result.update({"real_pair_auc": round(auc_before, 4), "pruned_real_pair_auc": round(auc_after, 4),
                       "passed": auc_before - auc_after <= MAX_AUC_DROP,
                       "gate": f"real-pair AUC drop at most {MAX_AUC_DROP}"})
    else:
        result.update({"passed": result["held_out_cosine_mean"] >= MIN_COSINE,
                       "gate": f"held-out cosine to the unpruned model at least {MIN_COSINE} (no real pairs given)"})
    return result


def describe(record: dict) -> str:
    """One line for the compile report."""
    line = (f"{100 * record['ratio']:.0f} % of channels removed, MACs {record['macs'] / 1e6:.1f} M -> "
            f"{record['pruned_macs'] / 1e6:.1f} M (-{100 * record['mac_cut']:.0f} %), parameters "
            f"{record['params']:,} -> {record['pruned_params']:,}, PyTorch CPU {record['torch_ms']:.2f} -> "
            f"{record['pruned_torch_ms']:.2f} ms, held-out cosine to the unpruned model "
            f"{record['held_out_cosine_mean']:.4f}")
    if "real_pair_auc" in record:
        line += f", real-pair AUC {record['real_pair_auc']:.4f} -> {record['pruned_real_pair_auc']:.4f}"
    status = "kept" if record["passed"] else f"REJECTED ({record['gate']}): the unpruned model is compiled"
    return f"{line}, {record['distillation_steps']} distillation steps; {status}"
