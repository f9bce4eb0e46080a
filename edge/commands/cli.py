"""``python -m edge COMMAND``: data preparation and the on-device runtime: the kiosk from the command line or as
a service with its web page, bundles on the board, and face generation."""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
from pathlib import Path

from edge.base.errors import UserError
from edge.base.flags import add_renamed_rate, count, count_or_zero, duration, port, positive, score
from edge.base.interrupts import complete_or_absent, interruptible, make_folder, refuse_existing
from edge.commands.bundle_cli import add_allow_unsigned, add_bundle_verbs, checked_signature, install_checked
from edge.commands.fleet_cli import DEFAULT_MAX_REPLICA_AGE, add_fleet_verb, fleet_liveness, start_fleet
from edge.commands.enrolment import (
    add_keep_crops,
    add_model_choice,
    embed_photos,
    open_bundle_pipeline,
    reembed,
    shown_name,
)
from edge.commands.generate_cli import add_generate_verb
from edge.gallery.store import KEPT_CROPS
from edge.kiosk.actions import DOOR_EVENT_TTL_S, DOOR_TIMEOUT_S, MAX_FRAME_AGE_S

KIOSK_RESTART = 75          # EX_TEMPFAIL: the service manager starts the kiosk again (a new bundle, new liveness)
GALLERY_HELP = "the gallery database (default: $EDGE_FACE_HOME/gallery.db, ~/.local/share/edge-face/gallery.db)"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        if getattr(args, "gallery", "absent") is None:
            from edge.base.paths import default_gallery

            args.gallery = default_gallery()
        return interruptible(f"edge {args.verb}", lambda: args.handler(args))
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m edge", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True)

    synth = verbs.add_parser("synth", help="render synthetic identities as root/<identity>/<n>.png folders")
    synth.add_argument("--out", default="data/synthetic")
    synth.add_argument("--identities", type=count, default=40)
    synth.add_argument("--images", type=count, default=16, help="images per identity")
    synth.add_argument("--first_seed", type=count_or_zero, default=0,
                       help="identity seeds are first_seed, first_seed+1, ...")
    synth.add_argument("--size", type=count, default=160)
    synth.set_defaults(handler=run_synth)

    align = verbs.add_parser("align", help="detect and align every face photo in a folder, or every frame of a "
                                           "video, to 112x112 crops")
    align.add_argument("--src", required=True, help="a folder of photos (any depth), or a video of one person: its "
                                                     "frames go to OUT/<video name>/")
    align.add_argument("--out", required=True)
    align.add_argument("--detector", default="blazeface_short")
    align.add_argument("--crop", default="arcface112",
                       help="alignment template: arcface112 (our trained verifiers) or dlib150 (the imported dlib "
                            "ResNet) (default: %(default)s)")
    align.add_argument("--max_images", type=count_or_zero, default=0,
                       help="align a seeded random sample of this many images (default: all)")
    align.set_defaults(handler=run_align)

    enroll = verbs.add_parser("enroll", help="add a person's templates to the gallery from photos")
    enroll.add_argument("--bundle", required=True)
    enroll.add_argument("--name", required=True)
    enroll.add_argument("--gallery", type=Path, default=None, help=GALLERY_HELP)
    enroll.add_argument("--consent", action="store_true",
                        help="the person agreed to be enrolled (required; recorded with its time, as on the page)")
    enroll.add_argument("--add", action="store_true",
                        help="NAME is enrolled already and these photos are of that same person: add them")
    add_keep_crops(enroll)
    add_model_choice(enroll)
    enroll.add_argument("images", nargs="+", help="image files or folders, or frames of a video as VIDEO#N (e.g. "
                                                  "clip.mp4#90: its frame 90, counting from 0)")
    enroll.set_defaults(handler=run_enroll)

    doctor = verbs.add_parser("doctor", help="can this board run the kiosk (and this bundle)? one line per finding")
    doctor.add_argument("--bundle", type=Path, default=None,
                        help="also say which file and backend each task would run here, and one call's time")
    doctor.add_argument("--camera", default=None, help="frame source to grab one frame from (default: the camera of "
                                                      "the board config this machine matches)")
    doctor.add_argument("--json", action="store_true", help="the findings and the verdict as JSON")
    doctor.set_defaults(handler=run_doctor)

    gallery = verbs.add_parser("gallery", help="list enrolled identities, or remove, rename or suspend one")
    gallery.add_argument("--gallery", type=Path, default=None, help=GALLERY_HELP)
    gallery.add_argument("--create", action="store_true",
                         help="make an empty gallery (a kiosk that enrols people from its page starts with one)")
    gallery.add_argument("--remove", metavar="NAME", help="delete this identity, its templates and its decisions")
    gallery.add_argument("--rename", nargs=2, metavar=("NAME", "NEW_NAME"), help="give a person another name")
    gallery.add_argument("--suspend", metavar="NAME", help="still named, but no door opens for them")
    gallery.add_argument("--resume", metavar="NAME", help="undo --suspend")
    gallery.add_argument("--export", metavar="NAME", help="write everything held about this person as JSON")
    gallery.add_argument("--out", type=Path, help="with --export: the file to write (0600; default: stdout)")
    gallery.add_argument("--reembed", action="store_true",
                         help="with --bundle: make templates for its verifier from the kept enrolment crops of "
                              "everyone it cannot match, and list who must enrol again")
    gallery.add_argument("--bundle", type=Path, help="with --reembed: the new bundle")
    add_model_choice(gallery)
    gallery.add_argument("--import", dest="import_file", type=Path, metavar="FILE",
                         help="add a person from a file written by --export (the gallery must exist)")
    gallery.set_defaults(handler=run_gallery)

    run = verbs.add_parser("run", help="recognise faces from a frame source; one JSON line per visit's decision")
    run.add_argument("--bundle", required=True)
    run.add_argument("--source", required=True, help="video file, image folder, synthetic://..., v4l2:///dev/video0")
    run.add_argument("--gallery", type=Path, default=None, help=GALLERY_HELP)
    run.add_argument("--output", help="write an annotated video here (.mp4)")
    run.add_argument("--max_frames", type=count_or_zero, default=0,
                     help="stop after this many frames (0: until the end)")
    run.add_argument("--threshold", type=score,
                     help="a fixed threshold instead of the bundle's calibrated one, in its scores' units (cosine, or "
                          "S-norm when the bundle ships a score cohort: edge run's first line says which)")
    add_renamed_rate(run, "--probe_far", "--target_far",
                     help="false accepts per probe to aim at (default: the bundle's); the threshold is read off "
                          "the bundle's real-pair calibration for the gallery's size")
    run.add_argument("--unknown_threshold", type=score,
                     help="below this score a visitor is a stranger (default: read off the calibration at the "
                          "board's tracking.unknown_far; the match threshold when there is none)")
    add_kiosk_flags(run)
    run.add_argument("--allow_unsigned", action="store_true",
                     help="with door actions: accept a bundle that is unsigned or signed by a key this board does not "
                          "trust (a door opens only on a trusted bundle otherwise; without door actions any bundle "
                          "runs)")
    add_model_choice(run)
    run.set_defaults(handler=run_kiosk)

    add_generate_verb(verbs, count, count_or_zero, add_model_choice)
    add_fleet_verb(verbs, GALLERY_HELP)

    serve = verbs.add_parser("serve", help="run the kiosk with its web page and API")
    serve.add_argument("--bundle", type=Path, help="default: the installed one ($EDGE_FACE_HOME/bundles/current, "
                                                   "see python -m edge bundle install)")
    serve.add_argument("--source", help="frame source (default: the board config's camera)")
    serve.add_argument("--gallery", type=Path, default=None,
                       help=GALLERY_HELP + "; it must exist (python -m edge enroll, or python -m edge gallery "
                                           "--create for one to fill from the page)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s, this "
                                                          "machine only; 0.0.0.0 opens it to the network)")
    serve.add_argument("--port", type=port, default=8080)
    add_kiosk_flags(serve)
    add_allow_unsigned(serve)
    add_model_choice(serve)
    serve.set_defaults(handler=run_serve)

    add_bundle_verbs(verbs)
    return parser


def run_doctor(args) -> int:
    from edge.commands.doctor import run_doctor as doctor

    return doctor(args)


def run_synth(args) -> int:
    from edge.base.progress import progress_bar
    from edge.sources.synthetic import face_renderer

    def bar(jobs):
        return progress_bar(jobs, desc="synthetic faces", unit="img")

    renderer = face_renderer()
    try:
        with complete_or_absent(args.out, folder=True) as partial:     # all of it, landmarks.txt too, or nothing
            stats = renderer.write_identity_folders(partial, args.identities, args.images, seed=args.first_seed,
                                                    size=args.size, progress=bar)
    except ValueError as err:   # the renderer's own argument checks
        raise UserError(str(err)) from err
    print(f"synth: {stats.identities} identities, {stats.images} images in {args.out}")
    return 0


def run_align(args) -> int:
    from edge.faces.dataprep import align_folder
    from edge.faces.packaged_detector import load_packaged_detector

    stats = align_folder(args.src, args.out, load_packaged_detector(args.detector), args.crop, args.max_images)
    print(f"align: {stats.summary()} -> {args.out}")
    return 0


def run_enroll(args) -> int:
    from edge.gallery.sqlite import SqliteGallery

    embeddings, sources, refused, pipeline, crops = embed_photos(args)
    gallery = SqliteGallery(args.gallery, create=True)       # only enrolment makes a gallery, and only with a face
    try:
        added = gallery.people.enroll(args.name, embeddings, pipeline.faces.key, sources,
                                      consent=f"yes (command line){KEPT_CROPS if crops else ''}", add=args.add,
                                      crops=crops)
    finally:
        gallery.close()
    note = f"; refused {len(refused)}: {'; '.join(refused[:5])}" if refused else ""
    print(f"enroll: {args.name}: {added} templates ({pipeline.faces.embedder.entry.name}) in {args.gallery}{note}")
    return 0


def run_gallery(args) -> int:
    from edge.gallery.sqlite import SqliteGallery

    if args.create:
        if args.gallery.exists():
            raise UserError(f"{args.gallery} exists; a gallery is never replaced (remove people with --remove)")
        SqliteGallery(args.gallery, create=True).close()
        print(f"gallery: made an empty gallery at {args.gallery} (0600) with its key {args.gallery}.key (0600); back "
              f"up both: templates cannot be read without the key")
        return 0
    if args.reembed != (args.bundle is not None):
        raise UserError("--reembed and --bundle go together: the bundle whose verifier makes the new templates")
    gallery = SqliteGallery(args.gallery)
    try:
        if args.reembed:
            return reembed(args, gallery.people)
        if args.remove is not None:                    # "" too: a name from before names had a rule
            if not gallery.people.remove(args.remove):
                raise UserError(f"{args.remove!r} is not enrolled in {args.gallery}")
            print(f"gallery: removed {args.remove!r}")
            return 0
        if args.rename:
            gallery.people.rename(*args.rename)
            print(f"gallery: {args.rename[0]!r} is {args.rename[1]!r}")
            return 0
        if args.suspend or args.resume:
            gallery.people.suspend(args.suspend or args.resume, suspended=bool(args.suspend))
            print(f"gallery: {args.suspend or args.resume!r} "
                  f"{'suspended: named, but no door opens' if args.suspend else 'resumed'}")
            return 0
        if args.import_file:
            try:
                exported = json.loads(args.import_file.read_text())
            except (OSError, json.JSONDecodeError) as err:
                raise UserError(f"cannot read {args.import_file}: {err}") from err
            added = gallery.people.import_person(exported)
            print(f"gallery: imported {exported['name']} ({added} templates) into {args.gallery}")
            return 0
        if args.export is not None:
            text = json.dumps(gallery.people.export_person(args.export), indent=1)
            if args.out is None:
                print(text)
                return 0
            refuse_existing(args.out, "file for the export", "--out")
            make_folder(args.out.parent)
            descriptor = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)   # biometric data
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
            print(f"gallery: exported {args.export!r} to {args.out}")
            return 0
        for name, templates in gallery.people.identities():
            print(f"{shown_name(name)}\t{templates} templates")
        print(f"gallery: {len(gallery.people.identities())} identities, {gallery.events.count()} logged decisions")
        return 0
    finally:
        gallery.close()


def run_kiosk(args) -> int:
    """``edge run``: the kiosk's one loop (edge.kiosk.service) in the foreground, without the web server."""
    from edge.base.paths import refuse_output_over_input
    from edge.kiosk.run_sinks import AnnotatedVideo, DecisionLines
    from edge.kiosk.service import KioskService
    from edge.kiosk.stream import KioskStream
    from edge.sources import check_source

    check_source(args.source)
    if args.output and Path(args.source).exists():
        refuse_output_over_input(args.output, [args.source], "--output")
    secret = webhook_secret(args)
    if args.webhook or args.mqtt or args.gpio is not None:
        # a door opens only on a bundle this board trusts, as under serve (stdout holds the decisions)
        checked_signature(Path(args.bundle), args.allow_unsigned, log=sys.stderr)
    pipeline = open_bundle_pipeline(args, args.gallery)
    pipeline.matcher.require_current(args.bundle)
    door = door_actions(args, pipeline.board, secret)
    fleet = fleet_first_round(args)
    stream = KioskStream(pipeline, unknown_threshold=args.unknown_threshold,
                         liveness=kiosk_liveness(fleet_liveness(args, fleet, "run"), door, "run"))
    fleet_running(fleet, stream)
    print(f"run: {json.dumps({**pipeline.describe(), **stream.describe()})}", file=sys.stderr)
    print(f"run: {pipeline.matcher.score_kind} scores; {pipeline.matcher.match_threshold.describe()}; "
          f"{stream.thresholds.describe()}", file=sys.stderr)
    lines = DecisionLines(set(pipeline.matcher.templates.names))
    sinks = (lines, *([AnnotatedVideo(args.output, stream.judge)] if args.output else ()))
    service = KioskService(pipeline, args.source, door=door, sinks=sinks,
                           retention_days=(args.keep_unknown_days, args.keep_named_days), stream=stream,
                           max_frames=args.max_frames, fleet=fleet)
    try:
        interrupted = service.run()
    finally:
        pipeline.close()
    if interrupted:
        print("run: interrupted; deciding the visits still open (cut short: they open nothing)", file=sys.stderr)
    print(lines.text(), file=sys.stderr)
    return 130 if interrupted else 0          # the shell's code for Ctrl+C, after everything is logged


def run_serve(args) -> int:
    import uvicorn

    from edge.base.paths import tokens_file
    from edge.kiosk.service import KioskService
    from edge.kiosk.stream import KioskStream
    from edge.kiosk.tokens import load_or_create
    from edge.kiosk.web import create_app

    if args.bundle is None:
        from edge.bundles.installed import current_bundle

        args.bundle = current_bundle()
    secret = webhook_secret(args)
    trust = checked_signature(args.bundle, args.allow_unsigned)
    # everything is checked before anything is written: the bundle, the gallery (never made here: a mistyped path is
    # refused, not emptied), the door actions and the camera; only then are the tokens made
    pipeline = open_bundle_pipeline(args, args.gallery)
    pipeline.matcher.require_current(args.bundle)
    door = door_actions(args, pipeline.board, secret)
    restart: list[str] = []              # why the kiosk stops to be started again (a rollout, the fleet's liveness)
    fleet = fleet_first_round(args, rollout_installer(args, restart))
    stream = KioskStream(pipeline, liveness=kiosk_liveness(fleet_liveness(args, fleet, "serve"), door, "serve"))
    fleet_running(fleet, stream)
    service = KioskService(pipeline, args.source or pipeline.streaming.camera, door=door, stream=stream,
                           retention_days=(args.keep_unknown_days, args.keep_named_days), trust=trust, fleet=fleet,
                           restart=None if args.no_liveness else lambda why: restart_kiosk(restart, why))
    service.start()
    tokens_path = tokens_file()
    try:
        tokens = load_or_create(tokens_path)
    except UserError:
        service.stop()
        pipeline.close()
        raise
    print(f"serve: http://{args.host}:{args.port}/?token=READ_OR_ADMIN_TOKEN (tokens in {tokens_path}); "
          f"gallery {args.gallery}", file=sys.stderr)
    # uvicorn stops on SIGTERM/SIGINT, then raises the signal again for the handler it found: main's
    # (edge.base.interrupts) turns it into KeyboardInterrupt, so the loop is drained and the database closed first.
    interrupted = False
    try:
        uvicorn.run(create_app(service, tokens, args.gallery), host=args.host, port=args.port, log_level="warning")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        service.stop()
        pipeline.close()
        print(f"serve: stopped after {service.state.frames} frames; {sum(service.state.decisions.values())} "
              f"decisions logged", file=sys.stderr)
    if restart:
        print(f"serve: {restart[0]}; exiting with {KIOSK_RESTART} for the service manager to start the kiosk again "
              f"(systemd: Restart=on-failure)", file=sys.stderr)
        return KIOSK_RESTART
    return 130 if interrupted else 0


def restart_kiosk(restart: list[str], why: str) -> None:
    """Stops ``edge serve`` (SIGTERM to itself, the way systemd stops it) to exit with KIOSK_RESTART, saying why."""
    if not restart:
        restart.append(why)
        os.kill(os.getpid(), signal.SIGTERM)


def rollout_installer(args, restart: list[str]):
    """A kiosk serving its installed bundle takes the fleet's rollouts: each is installed with the checks of ``edge
    bundle install``, then the kiosk stops to be started on it; a kiosk given another --bundle keeps it (None)."""
    from edge.base.paths import bundles_dir

    if Path(args.bundle).resolve().parent != bundles_dir().resolve():
        return None

    def install(folder: Path) -> str:
        installed = install_checked(folder, args.allow_unsigned)
        restart_kiosk(restart, f"the fleet's rollout installed {installed.name}")
        return f"current is {installed.name}; the kiosk restarts on it"
    return install


def fleet_first_round(args, installer=None):
    """With --fleet: the replica's sync after its first round (erasures and the fleet's settings applied before the
    kiosk chooses its checks or decides anything); None without."""
    if args.fleet is not None and args.gallery is None:
        raise UserError("--fleet needs the kiosk's own --gallery")
    return start_fleet(args, installer)


def fleet_running(fleet, stream) -> None:
    """The kiosk's checks are chosen: the fleet's report says which, and the gallery is read with what the first
    round applied."""
    if fleet is not None:
        fleet.started_with["liveness"] = ",".join(stream.liveness.names) if stream.liveness is not None else "off"
        stream.reload_gallery()


def webhook_secret(args) -> bytes:
    """The secret that signs webhook events (empty without --webhook), read before anything else is opened."""
    from edge.kiosk.actions import read_webhook_secret

    if not args.webhook:
        return b""
    if args.webhook_secret_file is None:
        raise UserError("--webhook needs --webhook_secret_file FILE, the secret that signs each event; make one with: "
                        "head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE")
    return read_webhook_secret(args.webhook_secret_file)


def door_actions(args, kiosk: str, secret: bytes):
    from edge.kiosk.actions import DoorActions, GpioAction, MqttAction, MqttAlerts, WebhookAction

    actions = [WebhookAction(url, secret, args.door_timeout_s, args.webhook_ca) for url in args.webhook]
    alerts = [WebhookAction(url, secret, args.door_timeout_s, args.webhook_ca) for url in args.alert_webhook]
    if args.mqtt:
        actions.append(MqttAction(args.mqtt, kiosk, args.door_event_ttl_s, args.door_timeout_s))
        alerts.append(MqttAlerts(actions[-1]))
    if args.gpio is not None:
        actions.append(GpioAction(args.gpio, args.open_s))
    return DoorActions(actions, args.door_interval, args.max_frame_age_s, args.door_event_ttl_s,
                       require_live=not args.no_liveness, alerts=alerts)


def kiosk_liveness(args, door, verb: str):
    """The kiosk's liveness checks (edge.liveness.choose), or None with --no_liveness. A kiosk with door actions
    and no liveness check refuses to start unless --no_liveness says so."""
    from edge.liveness.choose import open_liveness
    from edge.runtime.board_profile import bundle_profile

    if args.no_liveness and (args.liveness is not None or args.challenge):
        door.close()
        raise UserError("--no_liveness turns liveness off; it cannot be given with --liveness or --challenge")
    if args.no_liveness:
        print(f"{verb}: liveness is off (--no_liveness): a printed photo or a phone showing an enrolled face is "
              f"named like the person{' and opens the door' if door.actions else ''}", file=sys.stderr)
        return None
    gate = open_liveness(args.bundle, args.liveness, args.challenge, args.threads, bundle_profile(args.bundle))
    if gate is None and door.actions:
        door.close()
        raise UserError("the door has actions but no liveness check runs (--liveness none): a photo of an enrolled "
                        "person would open it; name checks with --liveness, ask --challenge, or give --no_liveness "
                        "to run without")
    return gate


def add_kiosk_flags(parser) -> None:
    """What the one kiosk loop takes in ``edge run`` and ``edge serve`` alike: door actions, liveness, retention."""
    parser.add_argument("--webhook", action="append", default=[],
                        help="POST each door opening here, signed with --webhook_secret_file (repeatable)")
    parser.add_argument("--alert_webhook", action="append", default=[],
                        help="POST each presentation-attack alert here, signed like door events (repeatable; never "
                             "the door's URL)")
    parser.add_argument("--liveness", default=None, metavar="NAMES",
                        help="comma-separated liveness checks replacing the board config's (planar, texture; none: "
                             "no passive check); default: the board's, plus texture when the bundle carries it")
    parser.add_argument("--challenge", action="store_true",
                        help="also ask each visitor, on the kiosk page, for a short head movement that their head "
                             "pose must follow (stops a replayed video, which planar cannot)")
    parser.add_argument("--no_liveness", action="store_true",
                        help="run without liveness: decisions say 'off' and a named visit opens the door whatever "
                             "is in front of the camera (the page and /metrics say so)")
    parser.add_argument("--webhook_secret_file", type=Path,
                        help="a file (0600) holding the secret that signs each webhook event (HMAC-SHA256)")
    parser.add_argument("--webhook_ca", type=Path,
                        help="a PEM file of the CA that signed the webhook server's certificate (default: the "
                             "system's CAs)")
    parser.add_argument("--mqtt", help="HOST[:PORT] of an MQTT broker: door events (MQTT v5, expiring) and Home "
                                       "Assistant discovery; needs pip install 'edge-face[mqtt]'")
    parser.add_argument("--gpio", type=count_or_zero, help="drive this GPIO pin (BCM) for --open_s on each opening")
    parser.add_argument("--open_s", type=positive, default=3.0, help="seconds the GPIO pin stays on")
    parser.add_argument("--door_timeout_s", type=positive, default=DOOR_TIMEOUT_S,
                        help="seconds a webhook or the MQTT broker has to acknowledge a door event, else it failed "
                             "(default: %(default)s)")
    parser.add_argument("--door_event_ttl_s", type=count, default=DOOR_EVENT_TTL_S,
                        help="whole seconds a door event is good for: dropped unsent after it, MQTT message expiry "
                             "(default: %(default)s)")
    parser.add_argument("--max_frame_age_s", type=positive, default=MAX_FRAME_AGE_S,
                        help="a door opens only on looks younger than this many seconds (default: %(default)s)")
    parser.add_argument("--keep_unknown_days", type=positive, default=7.0,
                        help="days a decision that named nobody stays in the log (default: %(default)s)")
    parser.add_argument("--keep_named_days", type=positive, default=90.0,
                        help="days a decision that named someone stays in the log (default: %(default)s)")
    parser.add_argument("--fleet", type=Path, help="this kiosk's fleet credentials (edge fleet add-kiosk): its "
                                                   "gallery is the fleet's replica, kept in step with the server")
    parser.add_argument("--max_replica_age", type=duration, default=duration(DEFAULT_MAX_REPLICA_AGE),
                        help="with --fleet: how long (90s, 15m, 24h) named visits still open the door while the "
                             "server cannot be reached (default: %(default)s s)")
    parser.add_argument("--door_interval", type=positive, default=10.0,
                        help="seconds before the same person opens the door again (default: %(default)s)")
