"""Training speed of every generator recipe on this machine, one after another on the same faces:
``python -m trainer.training_speed --data DIR --person_a A --person_b B [--seconds 30]``.

Each recipe trains for ``--seconds`` of wall time (its own --max_seconds) and its checkpoint's
``images_per_second`` is read back: the rate of the training loop alone (data loading, pose reading and the final
evaluation excluded). Run it on a quiet machine: the recipes run one after another, not interleaved. (It lives in
the trainer, not in benchmarks/, because benchmarks/ runs on boards without torch.)
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

RECIPES = ("autoencoder", "denoising", "sparse", "vae", "dcgan", "cgan", "faceswap")


def measure(data: Path, person_a: Path, person_b: Path, seconds: float, threads: int | None) -> list[dict]:
    from trainer.checkpoint import load_checkpoint
    from trainer.cli import main as trainer_main

    rows = []
    with tempfile.TemporaryDirectory(prefix="training-speed-") as scratch:
        for recipe in RECIPES:
            out = Path(scratch) / f"{recipe}.pt"
            inputs = (["--data", str(person_a), "--swap_with", str(person_b)] if recipe == "faceswap"
                      else ["--data", str(data)])
            command = ["generator", "--config", recipe, *inputs, "--out", str(out), "--max_seconds", str(seconds),
                       *(["--threads", str(threads)] if threads else [])]
            if trainer_main(command) != 0:
                raise SystemExit(f"training_speed: {recipe} failed")
            metrics = load_checkpoint(out).metrics
            rows.append({"recipe": recipe, "images_per_second": metrics["images_per_second"],
                         "seconds": metrics["train_seconds"], "epochs_run": metrics["epochs_run"]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trainer.training_speed", description=__doc__)
    parser.add_argument("--data", type=Path, required=True, help="aligned faces (identity folders)")
    parser.add_argument("--person_a", type=Path, required=True, help="the face swap's first person")
    parser.add_argument("--person_b", type=Path, required=True, help="the face swap's second person")
    parser.add_argument("--seconds", type=float, default=30.0, help="training time per recipe (default: 30)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = measure(args.data, args.person_a, args.person_b, args.seconds, args.threads)
    lines = ["| recipe | images/s | seconds timed |", "|---|---:|---:|"]
    lines += [f"| {r['recipe']} | {r['images_per_second']:.0f} | {r['seconds']:.0f} |" for r in rows]
    print("\n".join(lines))
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
