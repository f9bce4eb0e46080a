"""``python -m edge generate``: a bundle's generator on this device.

- ``--mode sample --out faces.png``: new faces from a decoder (a grid, or one PNG each with ``--out DIR/``);
- ``--mode reconstruct --source S --output video.mp4``: the stream's faces through an autoencoder;
- ``--mode anonymise --source S --output video.mp4``: every detected face replaced (a face swap, or a decoder's
  face kept per visit), failing closed: a face lost for a frame is pixelated (edge.generation.anonymise).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from edge.base.errors import UserError
from edge.base.flags import port
from edge.base.interrupts import complete_or_absent, refuse_existing

SAMPLE_COLUMNS = 8
MAX_SAMPLES = 1024          # faces one sample run draws (a 128 px face is 48 kB; the count is a typo above this)
GRID_SUFFIXES = (".png", ".jpg", ".jpeg")


def add_generate_verb(verbs, count, count_or_zero, add_model_choice) -> None:
    generate = verbs.add_parser("generate", help="sample faces, or reconstruct or anonymise a stream's faces, with "
                                                 "a bundle's generator")
    generate.add_argument("--bundle", required=True)
    generate.add_argument("--mode", default="sample", choices=("sample", "reconstruct", "anonymise"),
                          help="default: %(default)s")
    generate.add_argument("--model", default=None,
                          help="the generator's role in the bundle (default: the first that fits the mode)")
    generate.add_argument("--count", type=count, default=16, help="sample: faces to draw (default: %(default)s)")
    generate.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    generate.add_argument("--out", type=Path, default=None,
                          help="sample: a PNG grid (faces.png) or a folder for one PNG per face (faces/)")
    generate.add_argument("--source", help="reconstruct, anonymise: video file, image folder, synthetic://..., "
                                           "v4l2:///dev/video0, rtsp://...")
    generate.add_argument("--output", help="reconstruct, anonymise: write the video here (.mp4)")
    generate.add_argument("--max_frames", type=count_or_zero, default=0, help="0: until the stream ends")
    generate.add_argument("--serve", action="store_true",
                          help="reconstruct, anonymise: show the output stream on a web page (with or without "
                               "--output); only output frames are ever served")
    generate.add_argument("--host", default="127.0.0.1", help="--serve: address (default: %(default)s, this machine)")
    generate.add_argument("--port", type=port, default=8080, help="--serve: port (default: %(default)s)")
    add_model_choice(generate)
    generate.set_defaults(handler=run_generate)


def run_generate(args) -> int:
    from edge.generation.generate import open_generator
    from edge.runtime.board_profile import board_with_profile
    from edge.runtime.manifest import read_manifest

    _check_arguments(args)
    manifest = read_manifest(args.bundle)
    board, profile = board_with_profile(manifest.board)
    generator, why = open_generator(args.bundle, manifest, board, args.mode, args.model, args.backend,
                                    args.precision, args.threads, profile)
    print(f"generate: {args.mode} with {why}", file=sys.stderr)
    try:
        if args.mode == "sample":
            return _sample(generator, args)
        return _stream(generator, manifest, board, args)
    finally:
        generator.close()


def _check_arguments(args) -> None:
    from edge.base.paths import refuse_output_over_input

    if args.mode == "sample":
        if args.out is None:
            raise UserError("--mode sample writes faces: give --out faces.png (a grid) or --out faces/ (one each)")
        if args.count > MAX_SAMPLES:
            raise UserError(f"--count {args.count}: at most {MAX_SAMPLES} faces a run (each is a full image in memory)")
        if args.out.suffix and args.out.suffix.lower() not in GRID_SUFFIXES:
            raise UserError(f"--out {args.out}: a grid is a {'/'.join(GRID_SUFFIXES)} file, and one face per file "
                            f"goes into a folder (a name without a suffix)")
        refuse_existing(args.out, "name", "--out")      # before the model loads; complete_or_absent checks again
        return
    if not args.source:
        raise UserError(f"--mode {args.mode} reads a stream: give --source (a video, a folder, v4l2:///dev/video0)")
    if not args.output and not args.serve:
        raise UserError(f"--mode {args.mode} writes the stream: give --output video.mp4, or --serve to watch it")
    if args.output and Path(args.source).exists():
        refuse_output_over_input(args.output, [args.source], "--output")


def _sample(generator, args) -> int:
    faces = generator.sample(args.count, np.random.default_rng(args.seed))
    out = Path(args.out)
    grid = out.suffix.lower() in GRID_SUFFIXES
    with complete_or_absent(out, folder=not grid) as partial:
        if grid:
            rows = [faces[i:i + SAMPLE_COLUMNS] for i in range(0, len(faces), SAMPLE_COLUMNS)]
            side = faces[0].shape[0]
            blank = np.full((side, side, 3), 255, np.uint8)
            _write(partial, np.vstack([np.hstack(row + [blank] * (SAMPLE_COLUMNS - len(row))) for row in rows]))
        else:
            for index, face in enumerate(faces):
                _write(partial / f"face_{index:04d}.png", face)
    print(f"generate: {len(faces)} faces from {generator.name} -> {out}")
    return 0


def _serve(anonymiser, detectors, args) -> int:
    import uvicorn

    from edge.faces.annotate import VideoWriter
    from edge.generation.anonymise import AnonymisedStream
    from edge.generation.anonymise_web import create_app
    from edge.sources import open_source

    writer = VideoWriter(args.output) if args.output else None
    try:
        with open_source(args.source) as source:
            stream = AnonymisedStream(anonymiser, source, writer, args.max_frames, keep_jpeg=True).start()
            print(f"generate: serving the {args.mode} stream on http://{args.host}:{args.port}/", file=sys.stderr)
            try:
                uvicorn.run(create_app(stream), host=args.host, port=args.port, log_level="warning")
            finally:
                stream.stop()
    finally:
        if writer:
            writer.close()
        for detector in detectors.values():
            detector.model.close()
    print(json.dumps({"mode": args.mode, **stream.status(), "output": args.output}))
    return 0


def _write(path: Path, image: np.ndarray) -> None:
    import cv2

    if not cv2.imwrite(str(path), image):
        raise UserError(f"OpenCV cannot write {path} (use a .png or .jpg name)")


def _stream(generator, manifest, board, args) -> int:
    from edge.faces.annotate import VideoWriter
    from edge.faces.scan import load_detectors
    from edge.generation.anonymise import AnonymisedStream, Anonymiser
    from edge.runtime.backends.base import BackendOptions
    from edge.sources import open_source

    detectors = load_detectors(args.bundle, manifest, board, BackendOptions(threads=args.threads or board.threads))
    anonymiser = Anonymiser(detectors, generator, board.detection, board.tracking, seed=args.seed)
    if args.serve:
        return _serve(anonymiser, detectors, args)
    writer = VideoWriter(args.output)
    stream = None
    interrupted = False
    try:
        with open_source(args.source) as source:
            stream = AnonymisedStream(anonymiser, source, writer, args.max_frames)
            stream.run()
    except KeyboardInterrupt:
        interrupted = True
        print(f"generate: interrupted after {stream.frames if stream else 0} frames; the video so far is kept",
              file=sys.stderr)
    finally:
        writer.close()
        for detector in detectors.values():
            detector.model.close()
    status = stream.status() if stream else {}
    summary = {"mode": args.mode, **{key: status.get(key) for key in ("frames", "faces_replaced", "faces_pixelated",
                                                                       "median_frame_ms", "fps")},
               "output": args.output}
    print(json.dumps(summary))
    return 130 if interrupted else 0
