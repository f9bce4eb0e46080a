"""``python -m benchmarks.mirror_cost --bundle B``: what mirror averaging costs per face on this machine.

The bundle's verifier, loaded as the kiosk loads it, embeds the same aligned face alone (one one-image call) and
with its mirror image (the kiosk's way: two one-image calls side by side, then the two unit vectors averaged),
timed interleaved (edge.base.timing) so the machine's noise falls on both alike. Prints both medians and the ratio.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from edge.base.errors import UserError
from edge.base.flags import count
from edge.base.timing import time_interleaved
from edge.faces.reader import embed_faces
from edge.runtime.backends.base import BackendOptions
from edge.runtime.boards import load_board
from edge.runtime.manifest import read_manifest
from edge.runtime.models import choose_model, load_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.mirror_cost", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--threads", type=count, default=None, help="default: the board's")
    parser.add_argument("--repeat", type=count, default=300)
    args = parser.parse_args(argv)
    try:
        return measure(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def measure(args) -> int:
    manifest = read_manifest(args.bundle)
    board = load_board(manifest.board)
    choice = choose_model(manifest, board, "verify")
    if choice.entry.images_per_face != 2:
        raise UserError(f"{choice.entry.file} is not embedded with its mirror image (compiled without real pairs, "
                        f"or with --no-mirror_average): there is no mirror cost to measure")
    threads = args.threads or board.threads
    model = load_model(args.bundle, choice.entry, choice.backend, BackendOptions(threads=threads))
    side = choice.entry.input.size[0]
    face = np.random.default_rng(0).integers(0, 256, (side, side, 3), dtype=np.uint8)
    try:
        times = time_interleaved({"alone": lambda: embed_faces(model, [face], False),
                                  "with its mirror": lambda: embed_faces(model, [face], True)},
                                 warmup=20, repeat=args.repeat, desc="mirror cost")
    finally:
        model.close()
    alone, mirrored = (float(np.median(times[key])) for key in ("alone", "with its mirror"))
    print(f"{choice.entry.file} on {choice.backend}, {threads} threads: one face {alone:.2f} ms, with its mirror "
          f"{mirrored:.2f} ms (median of {args.repeat}, interleaved): {mirrored / alone:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
