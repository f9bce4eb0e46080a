"""``python -m edge {bundle,keygen,install-service}``: putting a signed bundle on a board, checking it there, and
running the kiosk as a service."""
from __future__ import annotations

import sys
from pathlib import Path

from edge.base.errors import UserError


def add_bundle_verbs(verbs) -> None:
    bundle = verbs.add_parser("bundle", help="install a bundle on this board (atomic switch), roll back, or check "
                                             "that its files compute here what they computed at compile time")
    actions = bundle.add_subparsers(dest="action", required=True)
    install = actions.add_parser("install", help="copy a bundle in, check it, make it current")
    install.add_argument("folder", type=Path, help="the bundle folder to install")
    check = actions.add_parser("check", help="do its files compute here what they computed at compile time?")
    check.add_argument("folder", type=Path, nargs="?", help="the bundle (default: the current one)")
    check.add_argument("--runtimes_here", action="store_true",
                       help="check each file with a runtime this machine has, the board's own when present (a Jetson "
                            "bundle's ONNX files without TensorRT); files nothing here runs are listed as skipped")
    for verb in (install, check):
        add_allow_unsigned(verb)
    sign = actions.add_parser("sign", help="sign a bundle's files with an Ed25519 key")
    sign.add_argument("folder", type=Path, help="the bundle folder")
    sign.add_argument("--key", type=Path, required=True, help="the signing key (python -m edge keygen DIR)")
    actions.add_parser("rollback", help="make the previous bundle current again")
    actions.add_parser("show", help="the current and previous bundles")
    bundle.set_defaults(handler=run_bundle)

    keygen = verbs.add_parser("keygen", help="make an Ed25519 key pair that signs bundles: DIR/signing.key (0600) "
                                             "and DIR/signing.pub (what a board trusts)")
    keygen.add_argument("folder", type=Path)
    keygen.set_defaults(handler=run_keygen)

    service = verbs.add_parser("install-service", help="write a systemd unit that runs the kiosk on this board")
    service.add_argument("--board", required=True, help="board name or alias (its camera is the default source)")
    service.add_argument("--bundle", type=Path, required=True)
    service.add_argument("--source", help="frame source (default: the board config's camera)")
    service.add_argument("--out", type=Path, default=Path("edge-face.service"), help="unit file to write")
    service.add_argument("--fleet", type=Path, help="the kiosk's fleet credentials (edge fleet add-kiosk), as the "
                                                    "service sees them (e.g. /var/lib/edge-face/fleet-kiosk.json)")
    service.set_defaults(handler=run_install_service)


def add_allow_unsigned(parser) -> None:
    parser.add_argument("--allow_unsigned", action="store_true",
                        help="accept a bundle that is unsigned or signed by a key this board does not trust (its "
                             "files are then not authenticated; said at start, on the page and in /metrics)")


def checked_signature(folder: Path, allow_unsigned: bool, shown: Path | None = None, log=None):
    """The bundle's signature checked against this board's trusted keys (edge.bundles.signing), said in one line naming
    ``shown`` (default: ``folder``) on ``log`` (default: stdout, stderr when it is not authenticated)."""
    from edge.bundles.signing import verify_bundle
    from edge.runtime.manifest import read_manifest

    read_manifest(folder, verify_files=False)           # a folder that is no bundle at all is told so first
    trust = verify_bundle(folder, allow_unsigned)
    print(f"bundle: {shown or folder}: {trust.describe()}",
          file=log or (sys.stderr if trust.allowed_unsigned else sys.stdout))
    return trust


def run_keygen(args) -> int:
    from edge.bundles.signing import make_key_pair

    private, public = make_key_pair(args.folder)
    print(f"keygen: {private} (keep it secret: it signs bundles) and {public} (copy it into a board's "
          f"$EDGE_FACE_HOME/trusted_keys/ to trust bundles signed with the key)")
    return 0


def run_bundle(args) -> int:
    from edge.base.paths import bundles_dir
    from edge.bundles import installed as bundles

    if args.action == "sign":
        from edge.bundles.signing import sign_bundle
        from edge.runtime.manifest import read_manifest

        read_manifest(args.folder)                  # every file matches its manifest: sign nothing broken
        print(f"bundle: signed {args.folder} with key {sign_bundle(args.folder, args.key)}")
        return 0
    if args.action == "install":
        installed = install_checked(args.folder, args.allow_unsigned)
        print(f"bundle: installed {installed.name}; it is current (roll back with python -m edge bundle rollback)")
    elif args.action == "check":
        folder = args.folder or bundles.current_bundle()
        checked_signature(folder, args.allow_unsigned)
        checks = report_golden(folder, args.runtimes_here)
        return 0 if all(c.passed or c.skipped for c in checks) else 1
    elif args.action == "rollback":
        print(f"bundle: rolled back; current is {bundles.rollback().name}")
    else:
        root = bundles_dir()
        for name in (bundles.CURRENT, bundles.PREVIOUS):
            link = root / name
            print(f"{name}\t{link.resolve().name if link.exists() else '-'}")
    return 0


def install_checked(source: Path, allow_unsigned: bool = False) -> Path:
    """Installs ``source`` (edge.bundles.installed) once its copy is signed by a trusted key, its models load here
    and compute what they computed at compile time; the installed folder, now current."""
    from edge.bundles import installed as bundles

    def runs_here(folder: Path) -> None:      # refuse a bundle whose models do not load or compute here
        from edge.bundles.golden import GOLDEN_FILE
        from edge.faces.pipeline import open_pipeline

        # the copy, which is what will run, must be the signed one (checked once, not the original too)
        checked_signature(folder, allow_unsigned, shown=source)
        open_pipeline(folder).close()
        if (folder / GOLDEN_FILE).is_file():
            failed = [c for c in report_golden(folder) if not c.passed]
            if failed:
                raise UserError(f"refused: {len(failed)} file(s) do not compute here what they computed at "
                                f"compile time ({'; '.join(f'{c.file}: {c.reason}' for c in failed)})")
        else:
            print(f"bundle: no {GOLDEN_FILE} in it (compiled before golden outputs); its outputs are not checked")
    return bundles.install(source, runs_here)


def report_golden(folder: Path, runtimes_here: bool = False) -> list:
    """Runs the bundle's golden check here, one line per file (a log can hold it)."""
    from edge.bundles.golden import check_folder

    checks = check_folder(folder, runtimes_here=runtimes_here)
    for c in checks:
        state = "skip" if c.skipped else "ok  " if c.passed else "FAIL"
        print(f"bundle check: {state} {c.file} ({c.precision}, {c.backend}): {c.measure or c.reason}")
    checked = [c for c in checks if not c.skipped]
    skipped = (f"; {len(checks) - len(checked)} skipped (no runtime here runs them)"
               if len(checked) < len(checks) else "")
    print(f"bundle check: {sum(c.passed for c in checked)} of {len(checked)} files match their golden outputs{skipped}")
    return checks


def run_install_service(args) -> int:
    from edge.base.interrupts import check_file_target
    from edge.kiosk.systemd import SERVICE_USER, STATE_DIR, write_unit
    from edge.runtime.boards import load_board

    board = load_board(args.board)
    out = write_unit(check_file_target(args.out), board.name, args.bundle, args.source or board.camera, args.fleet)
    print(f"install-service: wrote {out}. Install it as root:\n"
          f"  sudo useradd --system --home-dir {STATE_DIR} --shell /usr/sbin/nologin {SERVICE_USER}\n"
          f"  sudo install -d -m 0700 -o {SERVICE_USER} -g {SERVICE_USER} {STATE_DIR}\n"
          f"  sudo -u {SERVICE_USER} EDGE_FACE_HOME={STATE_DIR} {sys.executable} -m edge gallery --create   "
          f"# or enrol someone\n"
          f"  sudo cp {out} /etc/systemd/system/edge-face.service && sudo systemctl daemon-reload\n"
          f"  sudo systemctl enable --now edge-face && journalctl -u edge-face -f")
    return 0
