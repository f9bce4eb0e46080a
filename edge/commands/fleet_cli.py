"""``python -m edge fleet ACTION``: a fleet of kiosks on one PostgreSQL gallery of record (edge.fleet).

The admin's actions (init, add-kiosk, status, enrol, rename, suspend, remove, revoke, rotate-key) connect with
``--url`` (default: the URL ``init`` recorded; the password from the URL, PGPASSWORD or ~/.pgpass); ``sync`` is the
kiosk's side, in the foreground (``edge serve --fleet`` runs the same in a thread).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from edge.base.errors import UserError
from edge.base.flags import duration, positive
from edge.commands.enrolment import add_keep_crops, add_model_choice, embed_photos, reembed
from edge.gallery.store import KEPT_CROPS

DEFAULT_MAX_REPLICA_AGE = "24h"


def add_fleet_verb(verbs, gallery_help: str) -> None:
    fleet = verbs.add_parser("fleet", help="a fleet of kiosks sharing one gallery of record on PostgreSQL")
    actions = fleet.add_subparsers(dest="action", required=True)

    def admin_action(name: str, handler, help_text: str, url_required: bool = False):
        parser = actions.add_parser(name, help=help_text)
        parser.add_argument("--url", required=url_required,
                            help="the fleet's database as its owner's role (CREATEROLE): "
                                 "postgresql://OWNER@HOST:PORT/DB (default: the one edge fleet init recorded)")
        parser.set_defaults(handler=handler)
        return parser

    admin_action("init", run_init, "make the fleet in an existing database, and the fleet key", url_required=True)
    add = admin_action("add-kiosk", run_add_kiosk, "add a kiosk: its role and its credentials file (copy it to "
                                                   "the kiosk)")
    add.add_argument("kiosk", help="the kiosk's id: lower-case letters, digits and '-' (e.g. door-1)")
    add.add_argument("--out", type=Path, help="its credentials file (0600; default $EDGE_FACE_HOME/fleet/kiosks/"
                                              "KIOSK.json)")
    add.add_argument("--kiosk_url", help="the server as the kiosk reaches it, when not as the admin does (remote: "
                                         "TLS is required)")
    status = admin_action("status", run_status, "people, kiosks (last seen, lag, replica age, bundle, liveness), "
                                                "erasures not yet applied everywhere, possible duplicates")
    status.add_argument("--json", action="store_true")
    enrol = admin_action("enrol", run_enrol, "enrol a person from photos at the desk, for every kiosk")
    enrol.add_argument("--bundle", required=True)
    enrol.add_argument("--name", required=True)
    enrol.add_argument("--consent", action="store_true", help="the person agreed to be enrolled (required)")
    enrol.add_argument("--add", action="store_true", help="NAME is enrolled already: add these photos to them")
    add_keep_crops(enrol)
    add_model_choice(enrol)
    enrol.add_argument("images", nargs="+", help="image files or folders")
    again = admin_action("reembed", run_reembed, "templates for a new bundle's verifier from the kept enrolment "
                                                 "crops, for every kiosk; lists who must enrol again")
    again.add_argument("--bundle", type=Path, required=True, help="the new bundle")
    add_model_choice(again)
    remove = admin_action("remove", run_remove, "erase a person everywhere: centrally and on every kiosk")
    remove.add_argument("name")
    rename = admin_action("rename", run_rename, "give a person another name")
    rename.add_argument("name")
    rename.add_argument("new_name")
    suspend = admin_action("suspend", run_suspend, "suspend a person: still named, no door opens (--resume undoes)")
    suspend.add_argument("name")
    suspend.add_argument("--resume", action="store_true")
    visitors = admin_action("visitors", run_visitors, "unnamed visitors every kiosk kept, newest first")
    visitors.add_argument("--json", action="store_true")
    name_visitor = admin_action("name-visitor", run_name_visitor, "enrol a kept visitor (judged live) for every "
                                                                  "kiosk, and forget the visitor")
    name_visitor.add_argument("kiosk")
    name_visitor.add_argument("visitor", type=int)
    name_visitor.add_argument("--name", required=True)
    name_visitor.add_argument("--consent", action="store_true", help="the person agreed to be enrolled (required)")
    name_visitor.add_argument("--add", action="store_true", help="NAME is enrolled already: add these looks to them")
    forget_visitor = admin_action("forget-visitor", run_forget_visitor, "delete a kept visitor, on the server and "
                                                                        "at its kiosk")
    forget_visitor.add_argument("kiosk")
    forget_visitor.add_argument("visitor", type=int)
    groups = admin_action("groups", run_groups, "set the access groups a person belongs to (none: no groups)")
    groups.add_argument("name")
    groups.add_argument("groups", nargs="*", metavar="GROUP")
    door = admin_action("door", run_door, "who may open a door when: its rules replace those it had")
    door.add_argument("door", help="the kiosk's id")
    door.add_argument("--allow", nargs=3, action="append", metavar=("GROUP", "DAYS", "HOURS"),
                      help="people in GROUP may open it on DAYS (all, mon-fri, mon,wed) within HOURS (07:00-19:00; "
                           "22:00-06:00 runs past midnight) in the fleet's time zone (repeatable)")
    door.add_argument("--open_to_all", action="store_true", help="no rules: it opens for everyone enrolled")
    settings = admin_action("settings", run_settings, "the one place for what every door shares; no flags: show them")
    settings.add_argument("--door_interval", type=positive, help="seconds before the same person opens a door again")
    settings.add_argument("--max_frame_age_s", type=positive, help="a door opens only on looks younger than this")
    settings.add_argument("--max_replica_age", type=duration, help="how long a kiosk that cannot reach the server "
                                                                   "still opens doors (90s, 15m, 24h)")
    settings.add_argument("--require_liveness", choices=("yes", "no"),
                          help="yes: a kiosk running with --no_liveness opens no door")
    settings.add_argument("--liveness", metavar="NAMES", help="the liveness checks every kiosk runs (planar,texture; "
                                                               "none: no passive check), over its --liveness")
    settings.add_argument("--challenge", choices=("yes", "no"), help="whether every kiosk asks for a head movement")
    settings.add_argument("--keep_unknown_days", type=positive, help="retention of decisions that named nobody "
                                                                     "(kiosks and server)")
    settings.add_argument("--keep_named_days", type=positive, help="retention of decisions that named someone")
    settings.add_argument("--timezone", help="the IANA time zone door hours are read in (e.g. Europe/Berlin)")
    revoke = admin_action("revoke", run_revoke, "revoke a lost or stolen kiosk, and rotate the fleet key")
    revoke.add_argument("kiosk")
    admin_action("rotate-key", run_rotate, "a new fleet key, every template re-sealed with it")
    rollout = admin_action("rollout", run_rollout, "the bundle every kiosk of its board is to run: each installs it "
                                                   "with its own checks and reports (status)")
    rollout.add_argument("bundle", type=Path,
                         help="a bundle folder (signed: kiosks refuse what their keys did not sign)")

    sync = actions.add_parser("sync", help="this kiosk's replica in step with the fleet (foreground; edge serve "
                                           "--fleet runs it too)")
    sync.add_argument("--fleet", type=Path, required=True, help="this kiosk's credentials file")
    sync.add_argument("--gallery", type=Path, default=None, help=gallery_help + "; it must exist (python -m edge "
                                                                                "gallery --create)")
    sync.add_argument("--once", action="store_true", help="one round, then exit (2 when the server fails it)")
    sync.add_argument("--max_replica_age", type=duration, default=duration(DEFAULT_MAX_REPLICA_AGE))
    sync.set_defaults(handler=run_sync)


def _with_admin(args, act):
    """``act(admin)``'s result, the admin's connection closed after it whatever happens."""
    from edge.fleet.admin import FleetAdmin, admin_url

    admin = FleetAdmin(admin_url(args.url))
    try:
        return act(admin)
    finally:
        admin.close()


def run_init(args) -> int:
    from edge.fleet.admin import FleetAdmin, key_path

    FleetAdmin.init(args.url).close()
    print(f"fleet: made in {_shown(args.url)}; the fleet key is {key_path()} (0600): back it up now, off this "
          f"machine (losing it loses every template); next: python -m edge fleet add-kiosk door-1")
    return 0


def run_add_kiosk(args) -> int:
    from edge.base.paths import fleet_dir

    out = args.out or fleet_dir() / "kiosks" / f"{args.kiosk}.json"
    _with_admin(args, lambda admin: admin.add_kiosk(args.kiosk, out, args.kiosk_url))
    print(f"fleet: kiosk {args.kiosk} added; copy {out} to the kiosk as $EDGE_FACE_HOME/fleet-kiosk.json (0600) "
          f"and start it with --fleet; then delete this copy")
    return 0


def run_status(args) -> int:
    from edge.fleet.access import describe_rules

    status = _with_admin(args, lambda admin: admin.status())
    if args.json:
        print(json.dumps(status, indent=1, default=str))
        return 0
    print(f"fleet: {status['people']} people ({status['suspended']} suspended), {status['changes']} changes")
    print("kiosk\tstate\tlast seen\tbehind\treplica age\tbundle\tliveness\trollout")
    for k in status["kiosks"]:
        state = "revoked" if k["revoked"] else ("never seen" if k["last_seen_s"] is None else "active")
        seen = "-" if k["last_seen_s"] is None else f"{k['last_seen_s']:.0f} s ago"
        age = "-" if k["replica_age_s"] is None else f"{k['replica_age_s']:.0f} s"
        print(f"{k['kiosk']}\t{state}\t{seen}\t{k['behind']}\t{age}\t{k['bundle'] or '-'}\t{k['liveness'] or '-'}"
              f"\t{k['rollout'] or '-'}")
    for board, target in status["rollout"].items():
        print(f"rollout: {board} kiosks are to run {target['name']} ({target['bundle'][:12]})")
    for erasure in status["erasures_not_applied"]:
        print(f"erasure of person {erasure['person']} (change {erasure['seq']}) not yet applied at: "
              f"{', '.join(erasure['waiting_for'])}")
    for door, rules in status["doors"].items():
        print(f"door {door}: {describe_rules(rules)}")
    if status["settings"]:
        print(f"settings: {json.dumps(status['settings'])}")
    for duplicate in status["possible_duplicates"]:
        print(f"possible duplicate: {duplicate['name']!r} was enrolled while {duplicate['same_name_as']!r} existed "
              f"(never merged: remove or rename one)")
    return 0


def run_enrol(args) -> int:
    embeddings, sources, refused, pipeline, crops = embed_photos(args)
    added = _with_admin(args, lambda admin: admin.enrol(args.name, embeddings, pipeline.faces.key, sources,
                                                        f"yes (fleet desk){KEPT_CROPS if crops else ''}",
                                                        add=args.add, crops=crops))
    note = f"; refused {len(refused)}: {'; '.join(refused[:5])}" if refused else ""
    print(f"fleet: enrolled {args.name}: {added} templates; every online kiosk has them within seconds{note}")
    return 0


def _one_change(args, act, done: str) -> int:
    _with_admin(args, act)
    print(f"fleet: {done}")
    return 0


def run_reembed(args) -> int:
    return _with_admin(args, lambda admin: reembed(args, admin))


def run_remove(args) -> int:
    return _one_change(args, lambda a: a.remove(args.name),
                       f"erased {args.name!r} centrally; each kiosk erases them as it applies the change "
                       f"(edge fleet status lists those that have not)")


def run_rename(args) -> int:
    return _one_change(args, lambda a: a.rename(args.name, args.new_name), f"{args.name!r} is {args.new_name!r}")


def run_suspend(args) -> int:
    return _one_change(args, lambda a: a.suspend(args.name, not args.resume),
                       f"{args.name!r} {'resumed' if args.resume else 'suspended: named, but no door opens'}")


def run_visitors(args) -> int:
    kept = _with_admin(args, lambda admin: admin.visitors())
    if args.json:
        print(json.dumps(kept, indent=1))
        return 0
    for v in kept:
        crop = "" if v["has_crop"] else "\tno crop"
        print(f"{v['kiosk']}\t{v['visitor']}\t{v['time']}\t{v['outcome']}\tscore {v['score'] or 0:.2f}\t"
              f"liveness {v['liveness'] or 'not judged'}{crop}")
    print(f"fleet: {len(kept)} kept visitors (python -m edge fleet name-visitor KIOSK ID --name NAME --consent)")
    return 0


def run_name_visitor(args) -> int:
    if not args.consent:
        raise UserError(f"naming a visitor enrols {args.name!r}'s face: ask them, and once they agree add --consent")
    added = _with_admin(args, lambda admin: admin.name_visitor(args.kiosk, args.visitor, args.name, "yes (fleet desk, "
                                                               "from a kept visitor)", args.add))
    print(f"fleet: visitor {args.visitor} of {args.kiosk} is {args.name!r} ({added} templates), for every kiosk")
    return 0


def run_forget_visitor(args) -> int:
    return _one_change(args, lambda a: a.forget_visitor(args.kiosk, args.visitor),
                       f"visitor {args.visitor} of {args.kiosk} forgotten, on the server and at the kiosk")


def run_groups(args) -> int:
    return _one_change(args, lambda a: a.set_groups(args.name, args.groups),
                       f"{args.name!r} is in {', '.join(args.groups) or 'no group'}")


def run_door(args) -> int:
    from edge.fleet.access import describe_rules, parse_rule

    if bool(args.allow) == args.open_to_all:
        raise UserError("give the door's rules (--allow GROUP DAYS HOURS, repeatable) or --open_to_all, one of them")
    rules = None if args.open_to_all else [parse_rule(*rule) for rule in args.allow]
    return _one_change(args, lambda a: a.set_door(args.door, rules), f"door {args.door}: {describe_rules(rules)}")


def run_settings(args) -> int:
    names = {"door_interval": "door_interval_s", "max_frame_age_s": "max_frame_age_s",
             "max_replica_age": "max_replica_age_s", "require_liveness": "require_liveness",
             "liveness": "liveness", "challenge": "challenge",
             "keep_unknown_days": "keep_unknown_days", "keep_named_days": "keep_named_days", "timezone": "timezone"}
    changes = {setting: getattr(args, flag) for flag, setting in names.items() if getattr(args, flag) is not None}
    for flag in ("require_liveness", "challenge"):
        if flag in changes:
            changes[flag] = changes[flag] == "yes"
    settings = _with_admin(args, lambda a: a.update_settings(changes) if changes else a.policy()["settings"])
    print(f"fleet settings: {json.dumps(settings) if settings else 'none (each kiosk its own flags)'}")
    return 0


def run_rollout(args) -> int:
    done = _with_admin(args, lambda admin: admin.rollout(args.bundle))
    print(f"fleet: {args.bundle} ({done['bytes'] / 1e6:.1f} MB) is the bundle for {done['board']} kiosks; each "
          f"installs it on its next round and reports (python -m edge fleet status)")
    return 0


def run_revoke(args) -> int:
    resealed = _with_admin(args, lambda admin: admin.revoke(args.kiosk))
    print(f"fleet: kiosk {args.kiosk} revoked (its role logs in no more); the fleet key was rotated and "
          f"{resealed} templates re-sealed: back up the new key")
    return 0


def run_rotate(args) -> int:
    resealed = _with_admin(args, lambda admin: admin.rotate_key())
    print(f"fleet: a new fleet key; {resealed} templates re-sealed: back up the new key")
    return 0


def run_sync(args) -> int:
    from edge.fleet.credentials import KioskCredentials
    from edge.fleet.sync import FleetSync

    fleet = FleetSync(KioskCredentials.read(args.fleet), args.gallery, args.max_replica_age)
    try:
        if args.once:
            state = fleet.sync_once()
            print(f"fleet sync: kiosk {fleet.credentials.kiosk} at change {state.applied}; {state.erased} erased",
                  file=sys.stderr)
            return 0
        print(f"fleet sync: kiosk {fleet.credentials.kiosk}, gallery {args.gallery}; Ctrl+C stops", file=sys.stderr)
        stop = threading.Event()
        try:
            fleet.run(stop)
        except KeyboardInterrupt:
            stop.set()
            print(f"fleet sync: stopped at change {fleet.state.applied}; {fleet.state.pending} changes made here wait "
                  f"to be sent", file=sys.stderr)
            return 130
        return 0
    finally:
        fleet.close()


def start_fleet(args, installer=None) -> "object | None":
    """``edge run`` and ``edge serve`` with --fleet: the kiosk's replica sync, after one round that applies erasures
    and the fleet's settings before anything is decided (a server that cannot be reached is said in one line, and
    the replica decides). ``installer``: takes the bundles rolled out to this board (a kiosk that runs its installed
    bundle). The facts it reports are ``started_with``: their ``"liveness"`` is the caller's to fill in once the
    checks are chosen (``edge.commands.cli.fleet_running``)."""
    if args.fleet is None:
        return None
    from edge.fleet.credentials import KioskCredentials
    from edge.fleet.rollout import bundle_id
    from edge.fleet.sync import FleetSync
    from edge.runtime.manifest import read_manifest

    facts = {"bundle": Path(args.bundle).resolve().name, "bundle_id": bundle_id(args.bundle),
             "board": read_manifest(args.bundle, verify_files=False).board, "liveness": None}
    fleet = FleetSync(KioskCredentials.read(args.fleet), args.gallery, args.max_replica_age, lambda: facts)
    try:
        state = fleet.sync_once()
        print(f"fleet: kiosk {fleet.credentials.kiosk} at change {state.applied}", file=sys.stderr)
    except (UserError, OSError) as err:
        print(f"fleet: {err}; deciding from the replica ({fleet.status()['doors']})", file=sys.stderr)
    fleet.installer = installer            # rollouts from the next round, once the kiosk runs
    fleet.started_with = facts
    return fleet


def fleet_liveness(args, fleet, verb: str):
    """The kiosk's flags with the fleet's liveness checks and challenge over its own, when the fleet sets them (a
    kiosk started with --no_liveness keeps its operator's choice: the fleet's require_liveness shuts its door)."""
    settings = fleet.settings() if fleet is not None else {}
    if args.no_liveness or not ({"liveness", "challenge"} & settings.keys()):
        return args
    chosen = argparse.Namespace(**{**vars(args), "liveness": settings.get("liveness", args.liveness),
                                   "challenge": settings.get("challenge", args.challenge)})
    print(f"{verb}: liveness as the fleet sets it: checks {chosen.liveness or 'the board default'}, challenge "
          f"{'yes' if chosen.challenge else 'no'}", file=sys.stderr)
    return chosen


def _shown(url: str) -> str:
    from edge.fleet.server import redacted

    return redacted(url)
