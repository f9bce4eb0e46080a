"""``python -m trainer <generator|verifier> --data DIR --out FILE.pt``: train a model from aligned face folders;
``python -m trainer distill --teacher CKPT --data DIR... --out FILE.pt``: train a small student to reproduce a
teacher's embeddings on unlabelled faces;
``python -m trainer import SOURCE [FILE] --out FILE.pt``: bring a pretrained model in as an ordinary checkpoint."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from edge.base.errors import UserError
from edge.base.flags import add_renamed_rate, count, count_or_zero, positive, rate
from edge.base.interrupts import check_file_target, interruptible
from edge.base.paths import refuse_output_over_input
from edge.base.registry import Registry

# Pretrained models the ``import`` verb knows: name -> function(out_path, source_path or None) -> sha256.
IMPORTERS = Registry("import source", {
    "dlib-resnet": "trainer.dlib_import.convert:import_dlib_resnet",
    "minifasnet": "trainer.minifasnet_import:import_minifasnet",
})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m trainer", description="Train a face model from folders of "
                                     "aligned 112x112 crops (DATA/<identity>/<image>), or import a pretrained one.")
    commands = parser.add_subparsers(dest="command", required=True,
                                     metavar="{generator,verifier,distill,eval-generator,synth,data-study,import,"
                                             "fit-crop}")

    generator = commands.add_parser("generator", help="train a face generator (conv autoencoder, its denoising and "
                                                       "sparse variants, a VAE, a DCGAN or a conditional GAN) on "
                                                       "64x64 crops")
    # None: the recipe's value (trainer/configs/<config>.yaml); a flag given replaces it, KEY=VALUE replaces both
    add_common(generator, out="runs/generator.pt", epochs=None, batch_size=None, lr=None)
    generator.add_argument("--config", default="autoencoder",
                           help="recipe: autoencoder, denoising, sparse, vae, dcgan, cgan, faceswap, or a YAML file "
                                "(default: %(default)s)")
    generator.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                           help="settings over the recipe and the flags, e.g. epochs=5 noise=mask:0.25")
    generator.add_argument("--latent", type=count, default=None, help="latent size (recipe: 32)")
    generator.add_argument("--noise", default=None,
                           help="denoising autoencoder: gaussian:STD or mask:SHARE of the input corrupted, the clean "
                                "face the target")
    generator.add_argument("--sparsity", type=float, default=None,
                           help="sparse autoencoder: weight of an L1 penalty on the code")
    generator.add_argument("--ssim_weight", type=float, default=None,
                           help="loss = (1 - W) MSE + W (1 - SSIM); MSE alone blurs faces")
    generator.add_argument("--dedup_distance", type=count_or_zero, default=None,
                           help="drop a face within this many bits (of 64) of an earlier one's difference hash: "
                                "copies and re-encodings of one photo (recipe: 2; 0: exact copies)")
    generator.add_argument("--patience", type=count_or_zero, default=None,
                           help="stop after this many epochs without a lower held-out loss; the best epoch is kept "
                                "either way (recipe: 0, never stop early)")
    generator.add_argument("--family", default=None, choices=("autoencoder", "vae", "dcgan", "cgan", "faceswap"),
                           help="the convolutional autoencoder, a VAE of the same shapes, a DCGAN or a conditional "
                                "GAN (the recipes of the same names set the rest)")
    generator.add_argument("--width", type=count, default=None,
                           help="GAN: channel width of the last generator / first discriminator layer (recipe: 32)")
    generator.add_argument("--condition", default=None, choices=("pose", "folder"),
                           help="conditional GAN: the head pose read by the detector, or the identity folder")
    generator.add_argument("--beta", type=float, default=None, help="VAE: weight of the KL term (recipe: 1.0)")
    generator.add_argument("--stacked_epochs", type=count_or_zero, default=None,
                           help="stacked autoencoder: greedy layer-wise pre-training, this many epochs per layer, "
                                "before end-to-end training (recipe: 0, none)")
    generator.add_argument("--colour", default=None, choices=("rgb", "grey"), help="autoencoders (recipe: rgb)")
    generator.add_argument("--channels", type=widths, default=None,
                           help="autoencoders: encoder widths, one stride-2 layer each, e.g. 16,32,64 (the recipe's)")
    generator.add_argument("--swap_with", type=Path, default=None,
                           help="face swap: the second person's aligned faces, or a video of them (--data is the "
                                "first, a folder or a video too)")
    generator.add_argument("--resume", type=Path, default=None,
                           help="continue a stopped run from the <out>_last.pt it wrote after its last whole epoch "
                                "after Ctrl+C or a crash (same recipe and epochs; the state file is advanced in place)")
    generator.add_argument("--no_amp", action="store_true",
                           help="train in float32 on a GPU too (default: bfloat16/float16 autocast on CUDA)")

    verifier = commands.add_parser("verifier", help="train the MobileFaceNet-style verifier with ArcFace")
    add_common(verifier, out="runs/verifier.pt", epochs=20, batch_size=64, lr=4e-3)
    verifier.add_argument("--embedding", type=count, default=128, help="embedding size (default: %(default)s)")
    verifier.add_argument("--width", type=positive, default=0.5,
                          help="channel width multiplier (default: %(default)s; 1.0 is MobileFaceNet's widths)")
    verifier.add_argument("--holdout_identities", type=rate, default=0.25,
                          help="fraction of identities held out for evaluation, at least 2 (default: %(default)s)")
    add_renamed_rate(verifier, "--pair_far", "--target_far", default=0.01,
                     help="false accepts per impostor pair (1:1) the checkpoint's threshold is calibrated at "
                          "(default: %(default)s)")
    verifier.add_argument("--margin", type=positive, default=0.4, help="ArcFace angular margin (default: %(default)s)")
    verifier.add_argument("--scale", type=positive, default=30.0, help="ArcFace logit scale (default: %(default)s)")
    verifier.add_argument("--loss", default="arcface", choices=("arcface", "cosface", "triplet"),
                          help="ArcFace or CosFace head, or the batch-hard triplet loss (default: %(default)s)")
    verifier.add_argument("--steps", type=count, default=None,
                          help="train this many steps instead of --epochs (compare sets of different sizes)")

    student = commands.add_parser("distill", help="train a MobileFaceNet-class student to reproduce a teacher's "
                                                  "embeddings on unlabelled aligned faces (no identity labels)")
    student.add_argument("--teacher", type=Path, required=True, help="the teacher verifier's checkpoint")
    student.add_argument("--teacher_bundle", type=Path, default=None,
                         help="a bundle holding a compiled file of the teacher: its targets are computed with its "
                              "INT8 file (much faster than PyTorch)")
    student.add_argument("--data", type=Path, nargs="+", required=True,
                         help="folders of face crops cut like the teacher's input (any depth; labels unused)")
    student.add_argument("--eval_data", type=Path, nargs="*", default=[],
                         help="identity folders (DIR/<identity>/<image>) of crops to score the student on real "
                              "pairs at every checkpoint, beside the teacher")
    student.add_argument("--out", type=Path, default=Path("runs/student.pt"), help="default: %(default)s")
    add_overwrite(student)
    student.add_argument("--images", type=count, default=60_000, help="images seen in all (default: %(default)s)")
    student.add_argument("--checkpoint_every", type=count, default=10_000,
                         help="images between saved and scored checkpoints (default: %(default)s)")
    student.add_argument("--width", type=positive, default=1.0, help="channel width multiplier (default: %(default)s)")
    student.add_argument("--input_size", type=count, default=112, help="student input side (default: %(default)s)")
    student.add_argument("--batch_size", type=count, default=64, help="default: %(default)s")
    student.add_argument("--lr", type=positive, default=3e-3, help="peak learning rate (default: %(default)s)")
    student.add_argument("--relational", type=positive, default=1.0,
                         help="weight of the relational (pairwise similarity) loss (default: %(default)s)")
    add_renamed_rate(student, "--pair_far", "--target_far", default=0.01,
                     help="false accepts per impostor pair (1:1) for the threshold (default: %(default)s)")
    student.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    student.add_argument("--max_seconds", type=positive, default=None, help="stop after this much wall time")
    student.add_argument("--threads", type=count, default=None, help="torch threads (default: all CPU cores)")
    student.add_argument("--device", default="auto", help="auto, cpu or cuda (default: %(default)s)")

    judge = commands.add_parser("eval-generator", help="PSNR/SSIM, a Frechet distance on face-network features and "
                                                       "the detector's hit rate of a generator, on real faces")
    judge.add_argument("--ckpt", type=Path, required=True, help="the generator checkpoint")
    judge.add_argument("--real", type=Path, required=True, help="folder of held-out aligned real faces (any depth)")
    judge.add_argument("--features", type=Path, default=None,
                       help="the network whose features the Frechet distance uses: a verifier checkpoint, or an ONNX "
                            "file such as FID's Inception v3 exported with its 2048-D pool output (default: dlib's "
                            "descriptor from face-recognition-models)")
    judge.add_argument("--swap_with", type=Path, default=None,
                       help="face swap: the second person's faces (--real is the first); scores how often the "
                            "verifier puts swap(A->B) nearer B than A")
    judge.add_argument("--max_images", type=count, default=500, help="default: %(default)s")
    judge.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    judge.add_argument("--out", type=Path, default=None, help="report (default: next to the checkpoint)")

    synth = commands.add_parser("synth", help="identity folders of faces made by a generator checkpoint, filtered "
                                              "by the detector, de-duplicated and balanced, to train a verifier")
    synth.add_argument("--generator", type=Path, required=True, help="an autoencoder, VAE, DCGAN or cGAN checkpoint")
    synth.add_argument("--identities", type=count, default=100, help="default: %(default)s")
    synth.add_argument("--per_identity", "--per-identity", type=count, default=10, help="default: %(default)s")
    synth.add_argument("--out", type=Path, required=True, help="a new folder: OUT/gen00000/0000.png ...")
    synth.add_argument("--spread", type=positive, default=0.35,
                       help="how far an identity's faces move from its latent, in prior standard deviations "
                            "(default: %(default)s)")
    synth.add_argument("--min_score", type=rate, default=0.5,
                       help="keep faces the detector finds at this score or more (default: %(default)s)")
    synth.add_argument("--dedup_distance", type=count_or_zero, default=2, help="default: %(default)s")
    synth.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")

    study = commands.add_parser("data-study", help="train the verifier on real, generated and both sets of "
                                                   "identities with the same steps, score each on real faces")
    study.add_argument("--real", type=Path, required=True, help="real identity folders to train on")
    study.add_argument("--generated", type=Path, required=True, help="generated identity folders (trainer synth)")
    study.add_argument("--eval", type=Path, nargs="+", required=True,
                       help="real identity folders none of the arms trains on (e.g. the other halves of ORL, Yale B)")
    study.add_argument("--out", type=Path, required=True, help="a folder for the three checkpoints and the report")
    study.add_argument("--steps", type=count, default=600, help="steps per arm (default: %(default)s)")
    study.add_argument("--loss", default="arcface", choices=("arcface", "cosface", "triplet"))
    study.add_argument("--batch_size", type=count, default=64, help="default: %(default)s")
    study.add_argument("--width", type=positive, default=0.5, help="default: %(default)s")
    study.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    study.add_argument("--threads", type=count, default=None, help="torch threads (default: all CPU cores)")

    importer = commands.add_parser("import", help="write a pretrained model as a checkpoint (no training)")
    importer.add_argument("source", help=f"what to import: {', '.join(IMPORTERS.names())}")
    importer.add_argument("file", nargs="?", default=None,
                          help="the source model file (dlib-resnet: default, the one installed with its package; "
                               "minifasnet: required, e.g. 2.7_80x80_MiniFASNetV2.pth)")
    importer.add_argument("--out", required=True, help="checkpoint to write (never the source file)")
    add_overwrite(importer)
    importer.add_argument("--dat", default=None, help="the source model file, as FILE")
    importer.add_argument("--crop_scale", type=positive, default=None,
                          help="minifasnet: the crop's size over the face box (default: the number its file name "
                               "starts with: 2.7, 4)")

    fit = commands.add_parser("fit-crop", help="fit where our detector's key points land in dlib's 150 px chip "
                                               "(needs dlib-bin, a development-only peer)")
    fit.add_argument("images", nargs="+", help="folders of real face photos (root/<identity>/<image> or flat)")
    fit.add_argument("--max_images", type=count, default=1000, help="per folder (default: %(default)s)")
    fit.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    fit.add_argument("--report", default=None, help="also write the Markdown report here")
    return parser


def widths(text: str) -> list[int]:
    """``16,32,64`` -> [16, 32, 64]."""
    try:
        values = [int(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive whole numbers separated by commas, e.g. 16,32,64; "
                                         f"got {text!r}")
    return values


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing checkpoint at --out (otherwise refused: it may be another model)")


def refuse_checkpoint_target(out: str, inputs: list, overwrite: bool) -> None:
    """Before any work: an --out that is one of the inputs, or an existing file not given up with --overwrite."""
    refuse_output_over_input(out, inputs)
    check_file_target(out)
    if Path(out).exists() and not overwrite:
        raise UserError(f"--out {out} exists (another model's checkpoint?): choose a new path, or add "
                        f"--overwrite to replace it")


def add_common(parser: argparse.ArgumentParser, *, out: str, epochs: int, batch_size: int, lr: float) -> None:
    parser.add_argument("--data", required=True, help="folder of aligned 112x112 crops: DATA/<identity>/<image>")
    parser.add_argument("--out", default=out, help="checkpoint to write (default: %(default)s); the report and "
                        "PNGs go next to it")
    add_overwrite(parser)
    source = "default: %(default)s" if epochs is not None else "default: the recipe's"
    parser.add_argument("--epochs", type=count, default=epochs, help=source)
    parser.add_argument("--batch_size", type=count, default=batch_size, help=source)
    parser.add_argument("--lr", type=positive, default=lr, help=f"peak learning rate ({source})")
    parser.add_argument("--seed", type=count_or_zero, default=0, help="default: %(default)s")
    parser.add_argument("--max_seconds", type=positive, default=None,
                        help="stop training after this much wall time and evaluate what there is")
    parser.add_argument("--threads", type=count, default=None, help="torch threads (default: all CPU cores)")
    parser.add_argument("--device", default="auto",
                        help="auto, cpu or cuda; auto takes a CUDA GPU when torch sees one (default: %(default)s)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # KEY=VALUE overrides may come anywhere among the generator's flags, not only in one run after the last
    if extra and args.command == "generator" and all("=" in t and not t.startswith("-") for t in extra):
        args.overrides += extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    # a training loop stops at Ctrl+C or SIGTERM and keeps its best epoch; elsewhere (loading data, evaluating) the
    # command just ends: nothing half-written
    return interruptible(f"trainer {args.command}", lambda: run_command(args, argv))


def run_command(args, argv: list[str]) -> int:
    if args.command == "import":
        return import_model(args.source, args.out, args.file or args.dat, args.crop_scale,
                            conflict=bool(args.file and args.dat), overwrite=args.overwrite)
    if args.command == "fit-crop":
        return fit_crop(args.images, args.max_images, args.seed, args.report)
    verbs = {"distill": distill_student, "eval-generator": judge_generator, "synth": synth_faces,
             "data-study": data_study}
    if args.command in verbs:
        try:
            verbs[args.command](args, shlex.join(["python", "-m", "trainer", *argv]))
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    common = {"data": args.data, "out": args.out, "epochs": args.epochs, "batch_size": args.batch_size,
              "lr": args.lr, "seed": args.seed, "max_seconds": args.max_seconds, "threads": args.threads,
              "device": args.device,
              "command": shlex.join(["python", "-m", "trainer", *argv])}
    try:
        refuse_checkpoint_target(args.out, [args.data, *([args.swap_with] if getattr(args, "swap_with", None)
                                                         else [])], args.overwrite or getattr(args, "resume", None))
        # Imported here so that `--help` and argument errors do not wait for torch to load.
        if args.command == "generator":
            from trainer.configs import KEYS, resolve
            from trainer.generator_families import train_generator

            flags = {key: getattr(args, key) for key in KEYS}
            recipe, settings = resolve(args.config, flags, args.overrides)
            fixed = {key: value for key, value in common.items() if key not in settings}
            result = train_generator(**fixed, **settings, recipe=recipe, resume=args.resume,
                                     mixed_precision="off" if args.no_amp else "auto", swap_with=args.swap_with)
        else:
            from trainer.train_verifier import train_verifier
            result = train_verifier(embedding=args.embedding, width=args.width, holdout=args.holdout_identities,
                                    target_far=args.pair_far, margin=args.margin, scale=args.scale,
                                    loss=args.loss, steps=args.steps, **common)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.summary)
    return 0


def judge_generator(args, command: str) -> None:
    if args.out is not None:
        refuse_output_over_input(args.out, [args.ckpt, args.real, *([args.swap_with] if args.swap_with else [])])
    from trainer.eval_generator import evaluate_generator

    evaluate_generator(args.ckpt, args.real, args.features, args.max_images, args.seed, args.out, command,
                       args.swap_with)


def data_study(args, command: str) -> None:
    refuse_output_over_input(args.out, [args.real, args.generated, *args.eval])
    from trainer.data_study import run_study

    run_study(args.real, args.generated, args.eval, args.out, steps=args.steps, loss=args.loss,
              batch_size=args.batch_size, width=args.width, seed=args.seed, threads=args.threads,
              command=command)


def synth_faces(args, command: str) -> None:
    refuse_output_over_input(args.out, [args.generator])
    from trainer.synth import synthesise

    synthesise(args.generator, args.identities, args.per_identity, args.out, spread=args.spread,
               min_score=args.min_score, dedup_distance=args.dedup_distance, seed=args.seed, command=command)


def distill_student(args, command: str) -> None:
    refuse_checkpoint_target(args.out, [args.teacher, *args.data, *args.eval_data], args.overwrite)
    from trainer.distill import DistillOptions, distill

    options = DistillOptions(images=args.images, checkpoint_every=args.checkpoint_every, width=args.width,
                             input_size=args.input_size, batch_size=args.batch_size, lr=args.lr,
                             relational=args.relational, target_far=args.pair_far, seed=args.seed,
                             threads=args.threads, device=args.device, max_seconds=args.max_seconds)
    distill(args.teacher, args.data, args.out, options, args.teacher_bundle, args.eval_data, command)


def import_model(source: str, out: str, source_path: str | None, crop_scale: float | None = None,
                 conflict: bool = False, overwrite: bool = False) -> int:
    try:
        if conflict:
            raise UserError("give the source model file once: as FILE or with --dat, not both")
        if crop_scale is not None and source != "minifasnet":
            raise UserError(f"--crop_scale is for minifasnet, not {source}")
        refuse_checkpoint_target(out, [source_path] if source_path else [], overwrite)
        options = {} if crop_scale is None else {"crop_scale": crop_scale}
        sha256 = IMPORTERS.get(source)(out, source_path, **options)
        # Read back what was written: the summary then describes the file, and a bad write shows here.
        # Imported here, like the trainers, so that `--help` does not wait for torch.
        from trainer.checkpoint import load_checkpoint
        metrics = load_checkpoint(out).metrics
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"imported {source}: {metrics['parameters']:,} parameters, {metrics['convs']} convs -> {out} "
          f"(sha256 {sha256[:12]})")
    return 0


def fit_crop(images: list[str], max_images: int, seed: int, report: str | None) -> int:
    try:
        from trainer.crop_fit import fit_dlib_chip_template

        fit = fit_dlib_chip_template(images, max_images=max_images, seed=seed)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if report:
        Path(report).write_text(fit.markdown())
    print(fit.summary)
    return 0
