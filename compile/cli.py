"""``python -m compile --target BOARD``: trained checkpoints -> a validated bundle in ``<out>/<board>/``.

No sub-command: compiling for a board is the package's one verb. Every option is checked against the board's
capability table before any work starts; conflicting options are refused, never rewritten.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from compile import exporters
from compile.bundle import OUTPUTS, BuildResult, SourceModel, build_bundle, gate_threads
from compile.calibration import HOLDOUT_IMAGES, enough_image_files, load_calibration_set
from compile.cohort import load_cohort_faces
from compile.detectors import DetectorPhotos, require_tflite2onnx
from compile.match_calibration import DEFAULT_MIN_AUC, DEFAULT_TARGET_FAR, MatchOptions
from compile.prune import PruneOptions, check_prunable, prune_verifier
from compile.prune import describe as describe_pruning
from compile.quantize import METHODS
from compile.real_pairs import PairFaces, load_pair_faces
from compile.report import render_table
from compile.texture import DEFAULT_LIVE_REJECT, TextureCalibration, load_live_faces, with_live_faces
from edge.base.errors import UserError
from edge.base.flags import add_renamed_rate, count, count_or_zero, rate
from edge.base.interrupts import check_folder_target
from edge.base.interrupts import interruptible
from edge.base.paths import refuse_output_over_input
from edge.bundles.signing import SIGNATURE_FILE, load_signing_key
from edge.faces.scan import strategy_detectors
from edge.liveness.texture import ROLE as TEXTURE_ROLE
from edge.runtime.boards import Artifact, BoardConfig, aliases, board_names, check_detector_artifacts, load_board
from edge.runtime.crops import BOX_CROPS, CROPS
from edge.runtime.models import default_precisions, pick_kind
from edge.runtime.packaged import VENDOR_MODELS, packaged_model_path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m compile", description=__doc__.splitlines()[0])
    parser.add_argument("--target", help="board name or alias from board_configs/ (see --list_targets)")
    parser.add_argument("--checkpoints", nargs="+", type=Path,
                        default=[Path("runs/verifier.pt"), Path("runs/generator.pt")],
                        help="checkpoints to compile; each file's stem names its bundle files")
    parser.add_argument("--calibration", type=Path, default=Path("data/aligned"),
                        help="folder of aligned 112x112 face crops (any depth)")
    parser.add_argument("--calibration_images", type=count, default=300,
                        help="images used to calibrate INT8 ranges (default: %(default)s)")
    parser.add_argument("--holdout_images", type=count, default=HOLDOUT_IMAGES,
                        help="more images, held out for the accuracy gates (default: %(default)s)")
    parser.add_argument("--calibration_method", default="minmax", choices=sorted(METHODS),
                        help="how INT8 activation ranges are chosen from the calibration images")
    parser.add_argument("--out", type=Path, default=Path("bundles"), help="bundles go to OUT/<board name>/")
    parser.add_argument("--artifacts", help="comma-separated FORMAT:PRECISION list replacing the board's own; "
                                            "each must be in the board's supports table")
    parser.add_argument("--detector_artifacts",
                        help="comma-separated detector files replacing the board's detector_artifacts (tflite:fp32 is "
                             "the packaged file; onnx:fp32, onnx:fp16, onnx:int8 are converted from it and gated)")
    parser.add_argument("--detector_photos", type=Path, default=None,
                        help="folder of photos with faces (any depth) that calibrate INT8 detector files and gate "
                             "every ONNX detector file against the packaged one (default: the --calibration folder)")
    parser.add_argument("--seed", type=count_or_zero, default=0, help="seed for choosing calibration images")
    parser.add_argument("--pairs_images", type=Path, nargs="+", default=None,
                        help="folders of real photos, DIR/<identity>/<image> (e.g. ../shared/data/orl "
                             "../shared/data/yaleb): each verifier file gets its own threshold from every impostor "
                             "pair of half the identities, is reported on the other half and gated on decision flips")
    parser.add_argument("--cohort_images", type=Path, default=None,
                        help="with --pairs_images: photos of people nobody will enrol (e.g. ../shared/data/faces80, "
                             "never the faces you evaluate on); 2000 of them are embedded by each verifier file and "
                             "shipped in the bundle as templates, and every score is normalised against them "
                             "(S-norm: thresholds that mean the same for every face and gallery size)")
    add_renamed_rate(parser, "--probe_far", "--target_far", default=DEFAULT_TARGET_FAR,
                     help="false accepts per probe (one face against the whole gallery) the kiosk aims at, at any "
                          "gallery size (default: %(default)s)")
    parser.add_argument("--min_auc", type=rate, default=DEFAULT_MIN_AUC,
                        help="refuse a verifier whose FP32 AUC on the real pairs is lower (default: %(default)s)")
    parser.add_argument("--mirror_average", action=argparse.BooleanOptionalAction, default=True,
                        help="with --pairs_images: average each embedding with its mirrored face's, the two run "
                             "side by side (dlib's ResNet INT8, python -m benchmarks.mirror_cost: 1.16x one face's "
                             "time on two cores, 1.95x on one; --no-mirror_average turns it off) (default: on)")
    parser.add_argument("--texture_live_reject", type=rate, default=DEFAULT_LIVE_REJECT,
                        help="a texture (liveness) checkpoint: the share of single looks of live people, faces found "
                             "in --detector_photos and --pairs_images, its threshold rejects (default: %(default)s)")
    parser.add_argument("--texture_artifacts",
                        help="comma-separated FORMAT:PRECISION files of the texture checkpoint, replacing --artifacts "
                             "for it (MiniFASNet's INT8 files fail their gate: e.g. onnx:fp32,tflite:fp32)")
    parser.add_argument("--prune", type=rate, default=None, metavar="RATIO",
                        help="remove this share of every verifier's channels (torch-pruning), distil the pruned model "
                             "from the unpruned one on the calibration crops, and compile it when it passes its gate")
    parser.add_argument("--prune_steps", type=count, default=400,
                        help="distillation steps after pruning (default: %(default)s)")
    parser.add_argument("--build_engine", "--build-engine", action="store_true",
                        help="also build each ONNX file's TensorRT engine here, into the bundle's engine cache (needs "
                             "TensorRT and the board's GPU: run it on the board; otherwise the engine is built at "
                             "the kiosk's first start)")
    parser.add_argument("--sign", type=Path, metavar="KEY",
                        help="sign the bundle with this Ed25519 key (python -m edge keygen DIR makes one); boards "
                             "that trust its signing.pub install and run it")
    parser.add_argument("--list_targets", action="store_true", help="list boards and aliases, then exit")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.list_targets:
            print(list_targets())
            return 0
        # build_bundle removes its staging folder on the way out (Ctrl+C and SIGTERM alike), so OUT holds what it
        # held before
        return interruptible("compile", lambda: run(args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    if not args.target:
        raise UserError("say which board to compile for: --target NAME (see --list_targets)")
    board = load_board(args.target)
    refuse_output_over_input(args.out, [*args.checkpoints, args.calibration, *(args.pairs_images or ()),
                                        *([args.detector_photos] if args.detector_photos else []),
                                        *([args.cohort_images] if args.cohort_images else [])])
    check_folder_target(args.out)
    artifacts = choose_artifacts(board, args.artifacts)
    detector_artifacts = choose_detector_artifacts(board, args.detector_artifacts)
    converts_detectors = any(a.format == "onnx" for a in detector_artifacts)
    if converts_detectors and args.detector_photos:
        enough_image_files(args.detector_photos, args.calibration_images, args.holdout_images)
    for folder in args.pairs_images or ():
        if not folder.is_dir():
            raise UserError(f"--pairs_images {folder} is not a folder of <person>/<image> photos")
    if args.cohort_images is not None and not args.pairs_images:
        raise UserError("--cohort_images normalises the scores that --pairs_images calibrates; give both")
    if args.cohort_images is not None and not args.cohort_images.is_dir():
        raise UserError(f"--cohort_images {args.cohort_images} is not a folder of face photos")
    if args.build_engine:
        check_engine_build(board)
    if args.sign is not None:
        load_signing_key(args.sign)             # a wrong key fails now, not after the slow exports
    detectors = strategy_detectors(board.detection)     # what the board's detection strategy runs
    for name in detectors:
        packaged_model_path(name)               # fail now, not after the slow exports
    sources = [source for path in args.checkpoints for source in load_sources(path)]
    check_texture_sources(board, sources)
    texture_photos = [*([args.detector_photos] if args.detector_photos else []), *(args.pairs_images or ())]
    if any(s.task == "liveness" for s in sources) and not texture_photos:
        raise UserError("a texture checkpoint is calibrated on faces of live people in real photos: give a folder of "
                        "colour photos with --detector_photos (or --pairs_images)")
    check_input_sizes(board, sources, detectors)
    roles = [s.role for s in sources]
    if len(set(roles)) != len(roles):
        raise UserError(f"checkpoint file names must differ (they name the bundle files): {roles}")
    enough_image_files(args.calibration, args.calibration_images, args.holdout_images)
    if args.prune is not None:
        check_prunable(sources, PruneOptions(args.prune, args.prune_steps))
    if any(a.format == "tflite" for a in artifacts):
        from compile.export_tflite import require_converter
        require_converter()
    calibration = load_calibration_set(args.calibration, args.calibration_images, args.seed, args.holdout_images)
    detector_photos = None
    if converts_detectors:
        photos = (load_calibration_set(args.detector_photos, args.calibration_images, args.seed, args.holdout_images)
                  if args.detector_photos else calibration)
        detector_photos = DetectorPhotos.load(photos, detectors, gate_threads(board))
    photo_detector = board.detection.detector
    pair_faces = (load_pairs(args.pairs_images, sources, photo_detector, args.seed, args.cohort_images)
                  if args.pairs_images else None)
    match = MatchOptions(args.probe_far, args.min_auc, args.mirror_average)
    texture = None
    if any(s.task == "liveness" for s in sources):
        sources, texture = texture_sources(board, sources, texture_photos, photo_detector, args)
    notes, pruning_rejected = {}, False
    if args.prune is not None:
        options = PruneOptions(args.prune, args.prune_steps)
        sources, notes, pruning_rejected = prune_sources(sources, calibration, options, args.out, pair_faces, match)
    result = build_bundle(board, artifacts, sources, calibration, args.out, detectors,
                          args.calibration_method, pair_faces, match, notes, detector_artifacts, detector_photos,
                          sign=args.sign, texture=texture)
    if args.sign is not None:
        print(f"bundle: signed with {args.sign} ({result.bundle_dir / SIGNATURE_FILE}); a board runs it once it "
              f"trusts the key: copy {args.sign.with_suffix('.pub')} into its $EDGE_FACE_HOME/trusted_keys/")
    if args.build_engine:
        build_engines(result, board)
    return max(summarise(result), int(pruning_rejected))


def check_texture_sources(board: BoardConfig, sources: list[SourceModel]) -> None:
    """At most one texture checkpoint; and one there must be when the board's liveness block runs the texture check
    (read loosely: a board config without a ``liveness:`` block asks for none)."""
    texture = [s for s in sources if s.task == "liveness"]
    if len(texture) > 1:
        raise UserError(f"{len(texture)} liveness checkpoints given; a bundle carries one {TEXTURE_ROLE} model")
    checks = getattr(getattr(board, "liveness", None), "checks", ()) or ()
    if TEXTURE_ROLE in checks and not texture:
        raise UserError(f"board {board.name} runs the {TEXTURE_ROLE} liveness check (liveness.checks in its board "
                        f"config) and no liveness checkpoint was given: import one (python -m trainer import "
                        f"minifasnet FILE.pth --out runs/{TEXTURE_ROLE}.pt) and add it to --checkpoints")


def texture_sources(board: BoardConfig, sources: list[SourceModel], photos: list[Path], detector: str,
                    args: argparse.Namespace) -> tuple[list[SourceModel], TextureCalibration]:
    """Each liveness source fed faces of live people cut from the real photos with its own crop."""
    from edge.faces.packaged_detector import load_packaged_detector

    found = load_packaged_detector(detector)
    faces = {s.spec.crop: load_live_faces(photos, s.spec.crop, found, args.calibration_images, args.holdout_images,
                                          args.seed)
             for s in sources if s.task == "liveness"}
    kinds = tuple(choose_artifacts(board, args.texture_artifacts, "--texture_artifacts")) \
        if args.texture_artifacts is not None else None
    fed = [dataclasses.replace(with_live_faces(s, faces[s.spec.crop]), artifacts=kinds) if s.task == "liveness" else s
           for s in sources]
    return fed, TextureCalibration(faces, args.texture_live_reject)


def prune_sources(sources: list[SourceModel], calibration, options: PruneOptions, out: Path,
                  pair_faces: dict[str, PairFaces] | None, match: MatchOptions):
    """Each verifier pruned and distilled (generators as they are); the report's lines, and whether one failed."""
    pruned, notes, rejected = [], {}, False
    for source in sources:
        if source.task != "verify":
            pruned.append(source)
            continue
        faces = (pair_faces or {}).get(source.spec.crop)
        kept, record = prune_verifier(source, calibration, options, out, faces, match)
        notes[f"pruning {source.role}"] = describe_pruning(record)
        print(f"prune: {source.role}: {notes[f'pruning {source.role}']}")
        if not record["passed"]:
            print(f"error: the pruned {source.role} failed its gate ({record['gate']}); the unpruned one is compiled",
                  file=sys.stderr)
            rejected = True
        pruned.append(kept)
    return pruned, notes, rejected


def check_engine_build(board: BoardConfig) -> None:
    """Before any work: --build_engine needs a TensorRT board and TensorRT on this machine."""
    from edge.runtime.models import runnable_here

    if "tensorrt" not in board.backends:
        raise UserError(f"--build_engine: board {board.name} does not run TensorRT (its backends: "
                        f"{', '.join(board.backends)})")
    if not runnable_here("tensorrt"):
        raise UserError("--build_engine needs TensorRT on this machine, and it is not installed: run the compile on "
                        "the board, or leave the flag out and the kiosk builds each engine at its first start")


def build_engines(result: BuildResult, board: BoardConfig) -> None:
    """Builds and caches every ONNX file's engine in the bundle, as the kiosk would at its first start."""
    from edge.runtime.backends.base import BackendOptions
    from edge.runtime.models import load_model

    for entry in result.manifest.models:
        if entry.format == "onnx":
            load_model(result.bundle_dir, entry, "tensorrt", BackendOptions(threads=board.threads)).close()
            print(f"engine: {entry.file} built and cached in {result.bundle_dir / 'engines'}")


def choose_artifacts(board: BoardConfig, override: str | None, flag: str = "--artifacts") -> list[Artifact]:
    """The board's artifact list, or the user's (given with ``flag``); every item must be in the board's capability
    table."""
    if override is None:
        artifacts = board.artifact_list()
    else:
        artifacts = parse_artifacts(override)
        if not artifacts:
            raise UserError(f"{flag} is empty; write e.g. {flag} onnx:fp32,onnx:int8")
    for artifact in artifacts:
        require_supported(board, artifact)
        exporters.check_buildable(artifact)
    return artifacts


def parse_artifacts(text: str) -> list[Artifact]:
    """``onnx:fp32,onnx:int8`` -> artifacts (each item checked by ``Artifact.parse``)."""
    return [Artifact.parse(item.strip()) for item in text.split(",") if item.strip()]


def require_supported(board: BoardConfig, artifact: Artifact) -> None:
    if artifact.precision not in board.supports.get(artifact.format, ()):
        table = ", ".join(f"{fmt}:{'/'.join(ps)}" for fmt, ps in board.supports.items())
        raise UserError(f"board {board.name} does not support {artifact}; it supports {table}")


def choose_detector_artifacts(board: BoardConfig, override: str | None) -> list[Artifact]:
    """The board's detector files, or the user's, checked like the board config's."""
    if override is None:
        artifacts = board.detector_artifact_list()
    else:
        artifacts = parse_artifacts(override)
        check_detector_artifacts(artifacts, "--detector_artifacts")
        for artifact in artifacts:
            require_supported(board, artifact)
    if pick_kind([(a.format, a.precision) for a in artifacts], board, "detect") is None:     # as the board chooses
        wanted = default_precisions(board, "detect", None)[0]
        raise UserError(f"detector files {', '.join(map(str, artifacts))} leave board {board.name} nothing to detect "
                        f"with at its detect precision ({' or '.join(sorted(wanted))} on {', '.join(board.backends)}): "
                        f"add tflite:fp32")
    if any(a.format == "onnx" for a in artifacts):
        require_tflite2onnx()
    return artifacts


def check_input_sizes(board: BoardConfig, sources: list[SourceModel], detectors: list[str]) -> None:
    """Each model's input side must be one the board config names for its task (the runtime's contract)."""
    sides = [(s.role, s.task, s.spec.size) for s in sources if s.takes_images]
    sides += [(name, "detect", (VENDOR_MODELS[name].input_size,) * 2) for name in detectors]
    for role, task, (height, width) in sides:
        allowed = board.input_sizes.get(task)
        if allowed is not None and (height != width or height not in allowed):
            raise UserError(f"{role} takes {height}x{width} {task} inputs, but board {board.name} is configured "
                            f"for sides {list(allowed)} (input_sizes in its board config)")


def load_sources(path: Path) -> list[SourceModel]:
    """The models compile makes of a checkpoint: the model on its images; for a generator that samples, also its
    decoder from a latent (compile.decoders); a GAN's generator is only that."""
    from compile.decoders import decoder_source
    from trainer.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    if checkpoint.task not in OUTPUTS:
        raise UserError(f"{path}: compile makes {', '.join(OUTPUTS)} models, not {checkpoint.task!r}")
    if checkpoint.preprocessing.crop not in CROPS and checkpoint.preprocessing.crop not in BOX_CROPS:
        raise UserError(f"{path} was trained on {checkpoint.preprocessing.crop!r} crops, which the runtime cannot "
                        f"cut; crops it knows: {', '.join(sorted(CROPS) + sorted(BOX_CROPS))}")
    # a liveness model's files are named after the check that runs them, whatever the checkpoint's file is called
    role = TEXTURE_ROLE if checkpoint.task == "liveness" else path.stem
    source = SourceModel(role=role, task=checkpoint.task, architecture=checkpoint.architecture,
                         model=checkpoint.build_model(), spec=checkpoint.preprocessing, sha256=checkpoint.sha256,
                         threshold=checkpoint.threshold, metrics=checkpoint.metrics, created=checkpoint.created,
                         config=checkpoint.config)
    decoder = decoder_source(source, checkpoint) if checkpoint.task == "generate" else None
    if decoder is None:
        return [source]
    return [decoder] if decoder.role == source.role else [source, decoder]


def load_pairs(roots: list[Path], sources: list[SourceModel], detector: str, seed: int,
               cohort: Path | None = None) -> dict[str, PairFaces]:
    """Real pair faces aligned once per crop template the verifiers use, each with its score cohort's faces when
    ``cohort`` is given."""
    from edge.faces.packaged_detector import load_packaged_detector

    found = load_packaged_detector(detector)
    crops = sorted({s.spec.crop for s in sources if s.task == "verify"})
    if not crops:
        raise UserError("--pairs_images calibrates verifiers, and no checkpoint given is a verifier")
    return {crop: dataclasses.replace(load_pair_faces(roots, crop, found, seed),
                                      cohort=load_cohort_faces(cohort, crop, found) if cohort else None)
            for crop in crops}


def summarise(result: BuildResult) -> int:
    print(render_table(result.rows))
    print(f"bundle: {result.bundle_dir} ({len(result.manifest.models)} models; report: "
          f"{result.bundle_dir / 'report.md'})")
    for row in result.rejected:
        print(f"error: {row.model} rejected: {row.reason}; left out of the bundle", file=sys.stderr)
    return 1 if result.rejected else 0


def list_targets() -> str:
    lines = [f"{name}: artifacts {', '.join(board.artifacts)}; detectors {', '.join(board.detector_artifacts)}"
             for name, board in ((name, load_board(name)) for name in board_names())]
    lines += [f"{alias} -> {board}" for alias, board in sorted(aliases().items())]
    return "\n".join(lines)
