"""``python -m benchmarks {latency,pipeline,verify,identify,fleet,detect,peers,mosaic,pairs,attacks,liveness,report,
compare}``:
measure a bundle on the board it runs on, render the results as pages with plots, and compare two sets of results
beyond their noise."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.results import DEFAULT_RESULTS, write_results
from edge.base.errors import UserError
from edge.base.flags import count, count_list, count_or_zero, positive, setting_values, side
from edge.base.interrupts import interruptible
from edge.faces.align import FACE_CHOICES
from edge.runtime.boards import PRECISIONS


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bundle", type=Path, required=True, help="bundle directory (holds manifest.json)")
    parser.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS),
                        help="results folder; files go to RESULTS/<board>/ (default: %(default)s)")
    parser.add_argument("--threads", type=count, default=None, help="runtime threads (default: the board config's)")
    parser.add_argument("--backend", default=None, help="run with this backend only (default: see each command)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    latency = commands.add_parser("latency", help="batch-1 latency of every model file in a bundle")
    _add_common(latency)
    latency.add_argument("--warmup", type=count_or_zero, default=None,
                         help="untimed rounds (default: the board config's)")
    latency.add_argument("--repeat", type=count, default=None, help="timed rounds (default: the board config's)")
    latency.add_argument("--images", type=Path, default=None,
                         help="folder of photos to feed the models (default: a seeded random image)")
    latency.add_argument("--write_profile", nargs="?", type=Path, const=Path(), default=None, metavar="PATH",
                         help="on the board itself: save each task's fastest precision and backend as the board's "
                              "measured profile, which compile and the runtime then default to (default PATH: "
                              "$EDGE_FACE_HOME/profiles/<board>.json)")

    pipeline = commands.add_parser("pipeline", help="end-to-end fps and per-stage latency on a frame source")
    _add_common(pipeline)
    pipeline.add_argument("--source", required=True, help="video file, image folder or camera URI")
    pipeline.add_argument("--frames", type=count, default=300, help="frames to time at most (default: %(default)s)")
    pipeline.add_argument("--warmup", type=count_or_zero, default=5, help="untimed first frames (default: %(default)s)")
    pipeline.add_argument("--gallery", type=Path, default=None, help="gallery database to match against")
    pipeline.add_argument("--modes", default="tracked,per_frame",
                          help="comma-separated: tracked (the board's strategy, tracking, one decision per visit), "
                               "per_frame (every face of every frame), anonymise (every face replaced by the bundle's "
                               "generator, edge generate --mode anonymise); run side by side (default: %(default)s)")
    pipeline.add_argument("--reference", choices=("dlib",), default=None,
                          help="also find faces with dlib's HOG detector (dlib-bin), on a sample of the frames")
    pipeline.add_argument("--generator", default=None,
                          help="anonymise: the bundle's generator role (default: a face swap, else a decoder)")
    pipeline.add_argument("--reference_every", type=count, default=5,
                          help="dlib looks at every Nth timed frame (about 1 s per 1080p frame) (default: %(default)s)")
    pipeline.add_argument("--liveness", default=None, metavar="NAMES",
                          help="tracked: liveness checks replacing the kiosk's (as edge run --liveness; none: without "
                               "liveness); default: the board's, plus texture when the bundle carries it")

    verify = commands.add_parser("verify", help="verification accuracy on LFW-format pairs, detect -> embed")
    _add_common(verify)
    verify.add_argument("--pairs", type=Path, required=True, help="pairs file in LFW pairs.txt format")
    verify.add_argument("--images", type=Path, required=True, help="folder of <name>/<image> identity folders")
    verify.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="verifier precision (default: the board config's, if the bundle has it)")
    verify.add_argument("--face", choices=FACE_CHOICES, default="centre",
                        help="which face of a photo is the subject (default: %(default)s, as pair protocols "
                             "centre it)")
    verify.add_argument("--reference", choices=("dlib",), default=None,
                        help="also run dlib's own pipeline (dlib-bin) on the same pairs and folds; a pair either "
                             "pipeline finds no face in fails for both")

    identify = commands.add_parser("identify", help="open-set identification (FNIR at FPIR, rank-1) by gallery size")
    _add_common(identify)
    identify.add_argument("--images", type=Path, nargs="+", required=True,
                          help="one or more folders of <person>/<image> identity folders")
    identify.add_argument("--gallery_sizes", type=count_list, default=(100, 1000),
                          help="comma-separated gallery sizes; a smaller gallery is part of every larger one "
                               "(default: 100,1000)")
    identify.add_argument("--enrol", type=count, default=1, help="photos enrolled per person (default: %(default)s)")
    identify.add_argument("--probes", type=count, default=1,
                          help="mated probes per enrolled person, their photos after the enrolled ones "
                               "(default: %(default)s)")
    identify.add_argument("--distractors", type=Path, default=None,
                          help="photos of other people, one person per photo (any depth; e.g. "
                               "../shared/data/faces80): they fill galleries beyond --images' people, and those not "
                               "enrolled are non-mated probes")
    identify.add_argument("--seed", type=count_or_zero, default=0, help="seed of the gallery order (default: 0)")
    identify.add_argument("--precision", choices=PRECISIONS, default=None,
                          help="verifier precision (default: the board config's, if the bundle has it)")
    identify.add_argument("--face", choices=FACE_CHOICES, default="centre",
                          help="which face of a photo is the subject (default: %(default)s)")

    fleet = commands.add_parser("fleet", help="a fleet on a PostgreSQL server of its own: propagation of enrolments "
                                              "and erasures, catch-up, an outage (needs Debian's postgresql)")
    fleet.add_argument("--results", type=Path, default=Path(DEFAULT_RESULTS),
                       help="results folder; files go to RESULTS/<board>/ (default: %(default)s)")
    fleet.add_argument("--kiosks", type=count, default=3, help="kiosk processes (default: %(default)s)")
    fleet.add_argument("--rounds", type=count, default=20, help="enrolments and erasures timed (default: %(default)s)")
    fleet.add_argument("--outage_s", type=positive, default=30.0, help="seconds the server is stopped "
                                                                       "(default: %(default)s)")
    fleet.add_argument("--catchup_people", type=count, default=10_000,
                       help="people a new replica catches up with (default: %(default)s)")
    fleet.add_argument("--work", type=Path, default=None, help="folder for the server and the kiosks' galleries "
                                                               "(default: a temporary one, removed after)")

    detect = commands.add_parser("detect", help="detector recall by face size and precision against labelled boxes")
    _add_common(detect)
    detect.add_argument("--boxes", type=Path, required=True, help="labelled boxes in dlib's imglab XML format")
    detect.add_argument("--images", type=Path, default=None, help="image folder (default: the XML file's folder)")
    detect.add_argument("--precision", choices=PRECISIONS, default=None,
                        help="detector precision (default: the board's; a bundle compiled with --detector_artifacts "
                             "has more)")

    mosaic = commands.add_parser("mosaic", help="tile a small video into a large one, e.g. the stage clip 3x3 into "
                                                "1080p with nine distant faces per frame")
    mosaic.add_argument("--source", type=Path, required=True, help="the small video")
    mosaic.add_argument("--out", type=Path, required=True, help="the video to write (.mp4)")
    mosaic.add_argument("--grid", default="3x3", help="COLSxROWS copies (default: %(default)s)")
    mosaic.add_argument("--frames", type=count_or_zero, default=0, help="frames to write (default: the source's count)")
    mosaic.add_argument("--size", default=None, metavar="WxH",
                        help="resize the tiled frames to this size, e.g. 1920x1080 for the stage clip 2x2 with its "
                             "faces half as large again (default: the tiles' own size)")
    mosaic.add_argument("--every", type=count, default=1, metavar="N",
                        help="keep one source frame in N, written at the source's rate over N: e.g. 2 shows a 30 fps "
                             "clip as a 15 fps camera sees it (default: %(default)s, every frame)")

    pairs = commands.add_parser("pairs", help="write an LFW-format pairs file from identity folders")
    pairs.add_argument("--images", type=Path, required=True, help="folder of <name>/<image> identity folders")
    pairs.add_argument("--out", type=Path, required=True, help="pairs file to write")
    pairs.add_argument("--folds", type=count, default=10)
    pairs.add_argument("--per_fold", type=count, default=30, help="same-person pairs per fold (as many different)")
    pairs.add_argument("--seed", type=count_or_zero, default=0)

    attacks = commands.add_parser("attacks", help="print and screen-replay attack clips rendered from photos (and "
                                                  "videos) of real people, held up to a camera by a hand")
    attacks.add_argument("--images", type=Path, default=None, help="folder of face photos, any depth")
    attacks.add_argument("--videos", type=Path, nargs="+", default=(), help="videos to replay on a screen")
    attacks.add_argument("--out", type=Path, required=True, help="folder to write (must not exist)")
    attacks.add_argument("--kinds", default="", help="comma-separated of print, replay, video_replay (default: "
                                                     "every kind the given --images and --videos allow)")
    attacks.add_argument("--clips_per_photo", type=count, default=4, help="clips of each kind per photo or video "
                                                                          "(default: %(default)s)")
    attacks.add_argument("--max_photos", type=count_or_zero, default=0, help="a seeded sample of this many photos "
                                                                             "(default: 0, every photo)")
    attacks.add_argument("--clips_per_video", type=count, default=None,
                         help="video_replay clips per video (default: --clips_per_photo)")
    attacks.add_argument("--seed", type=count_or_zero, default=0)
    attacks.add_argument("--width", type=side, default=640)
    attacks.add_argument("--height", type=side, default=480)
    attacks.add_argument("--fps", type=positive, default=15.0)
    attacks.add_argument("--seconds", type=positive, default=2.0, help="clip length (default: %(default)s)")

    liveness = commands.add_parser("liveness", help="APCER on rendered attack clips and BPCER on live video, each "
                                                    "through the kiosk's loop at the bundle's liveness thresholds")
    _add_common(liveness)
    liveness.add_argument("--attacks", type=Path, required=True,
                          help="clips from python -m benchmarks attacks (KIND/NAME.mp4)")
    liveness.add_argument("--live", nargs="+", required=True,
                          help="videos (or other frame sources) of live people, any size, any number of faces")
    liveness.add_argument("--max_clips", type=count_or_zero, default=0,
                          help="clips of each kind at most (default: 0, every clip)")
    liveness.add_argument("--sweep", type=setting_values, action="append", default=[], metavar="SETTING=V[,V...]",
                          help="also measure the board config's liveness SETTING at each value (repeat for a grid: "
                               "every combination), e.g. --sweep planar_parallax=0.01,0.02 --sweep still_looks=0,10; "
                               "the report shows the trade-off beside the shipped settings")

    peers = commands.add_parser("peers", help="face_recognition's dlib pipeline and OpenCV's face detector beside "
                                              "ours, in the same run on the same frames")
    _add_common(peers)
    peers.add_argument("--source", required=True, help="video file, image folder or camera URI")
    peers.add_argument("--frames", type=count, default=150, help="frames to time at most (default: %(default)s)")

    report = commands.add_parser("report", help="Markdown and a self-contained HTML page with plots per board, from "
                                                "the result JSON alone")
    report.add_argument("results", type=Path, nargs="+", help="board folders, or results folders of boards")
    report.add_argument("--out", type=Path, default=None,
                        help="write OUT/<board>/report.{md,html} (default: into each board folder)")

    compare = commands.add_parser("compare", help="regressions of NEW against OLD beyond the measured noise: exit 1 "
                                                  "on a slowdown or an accuracy loss")
    compare.add_argument("old", type=Path, help="results folder (or a board folder, or one JSON file)")
    compare.add_argument("new", type=Path, help="the same, measured later")
    compare.add_argument("--seed", type=count_or_zero, default=0, help="bootstrap seed (default: %(default)s)")
    return parser


def _publish(args, kind: str, board: str, results: list[dict]) -> None:
    """Writes the JSON files, regenerates the board's report and prints this kind's section of it."""
    from benchmarks.render import render_section

    paths, report = write_results(args.results, board, results)
    print(render_section(kind, results))
    print(f"wrote {len(paths)} result file(s) and {report}")


def run_command(args) -> None:
    if args.command == "latency":
        from benchmarks.latency import LatencyOptions, run_latency

        board, results = run_latency(LatencyOptions(args.bundle, args.warmup, args.repeat, args.threads,
                                                    args.backend, args.images))
        _publish(args, "latency", board, results)
        if args.write_profile is not None:
            from benchmarks.profile import save_profile

            written = save_profile(board, results, args.write_profile if args.write_profile != Path() else None)
            print(f"wrote the board profile {written}: compile and the runtime now default to its choices")
    elif args.command == "pipeline":
        from benchmarks.pipeline_bench import PipelineOptions, run_pipeline

        modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
        board, result = run_pipeline(PipelineOptions(args.bundle, args.source, args.frames, args.warmup,
                                                     args.gallery, args.backend, args.threads, modes,
                                                     args.reference, args.reference_every, args.generator,
                                                     args.liveness))
        _publish(args, "pipeline", board, [result])
    elif args.command == "peers":
        from benchmarks.peers import run_peers

        board, result = run_peers(args.bundle, args.source, args.frames, threads=args.threads)
        _publish(args, "peers", board, [result])
    elif args.command == "verify":
        from benchmarks.verify import VerifyOptions, run_verify

        board, results = run_verify(VerifyOptions(args.bundle, args.pairs, args.images, args.precision,
                                                  args.backend, args.threads, args.face, args.reference))
        _publish(args, "verify", board, results)
    elif args.command == "identify":
        from benchmarks.identify import IdentifyOptions, run_identify, summary_lines

        board, result = run_identify(IdentifyOptions(args.bundle, tuple(args.images), args.gallery_sizes, args.enrol,
                                                     args.probes, args.distractors, args.seed, args.face,
                                                     args.threads, args.backend, args.precision))
        _publish(args, "identify", board, [result])
        print("\n".join(summary_lines(result)))
    elif args.command == "fleet":
        import tempfile

        from benchmarks.fleet import FleetOptions, run_fleet, summary_lines

        with tempfile.TemporaryDirectory(prefix="edge-fleet-", dir=args.work) as folder:
            board, result = run_fleet(FleetOptions(Path(folder), args.kiosks, args.rounds, args.outage_s,
                                                   args.catchup_people))
        _publish(args, "fleet", board, [result])
        print("\n".join(summary_lines(result)))
    elif args.command == "detect":
        from benchmarks.detect_bench import DetectOptions, run_detect

        board, result = run_detect(DetectOptions(args.bundle, args.boxes, args.images, args.threads, args.backend,
                                                 args.precision))
        _publish(args, "detect", board, [result])
    elif args.command == "mosaic":
        from benchmarks.mosaic import MosaicOptions, make_mosaic, parse_grid

        cols, rows = parse_grid(args.grid)
        size = parse_grid(args.size, "--size") if args.size else None
        options = MosaicOptions(args.source, args.out, cols, rows, args.frames, size, args.every)
        count, (width, height), fps = make_mosaic(options)
        print(f"wrote {count} frames of {width}x{height} at {fps:.2f} fps ({cols}x{rows} copies of {args.source}) "
              f"to {args.out}")
    elif args.command == "liveness":
        from benchmarks.liveness_bench import LivenessOptions, main_summary, run_liveness

        board, result = run_liveness(LivenessOptions(args.bundle, args.attacks, tuple(args.live), args.threads,
                                                     args.max_clips, tuple(args.sweep)))
        print(main_summary(result))
        _publish(args, "liveness", board, [result])
    elif args.command == "attacks":
        from benchmarks.attacks import AttackOptions, render_attacks

        kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
        summary = render_attacks(AttackOptions(args.images, args.out, tuple(args.videos), kinds, args.clips_per_photo,
                                               args.seed, args.width, args.height, args.fps, args.seconds,
                                               args.max_photos, args.clips_per_video))
        for kind, clips in summary.clips.items():
            print(f"{kind}: {clips} clips in {args.out / kind}")
        skipped = ", ".join(f"{len(names)} {reason.replace('_', ' ')}" for reason, names in summary.skipped.items())
        print(f"from {summary.photos_used} photos and {summary.videos_used} videos (skipped: {skipped}); "
              f"parameters in {args.out / 'summary.json'}")
    else:
        from benchmarks.pairs import make_pairs, write_pairs

        pairs_file, disjoint = make_pairs(args.images, args.folds, args.per_fold, args.seed)
        write_pairs(args.out, pairs_file)
        people = "disjoint people per fold" if disjoint else "too few people to keep folds disjoint"
        print(f"wrote {len(pairs_file.pairs)} pairs ({args.folds} folds x {args.per_fold} same + "
              f"{args.per_fold} different; {people}) to {args.out}")


def compare_results(args) -> int:
    from benchmarks.compare import compare, load_folder, render

    rows = compare(load_folder(args.old), load_folder(args.new), args.seed)
    print(render(rows))
    return 1 if any(r.regression for r in rows) else 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return interruptible(f"benchmarks {args.command}", lambda: dispatch(args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def dispatch(args) -> int:
    if args.command == "compare":
        return compare_results(args)
    if args.command == "report":
        from benchmarks.report_html import write_reports

        for path in write_reports(args.results, args.out):
            print(f"wrote {path}")
        return 0
    run_command(args)
    return 0
