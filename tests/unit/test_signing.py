"""Signed bundles: what the signature covers, which keys a board trusts, and every way a bundle is refused."""
import json
import shutil

import pytest

from edge.base.errors import UserError
from edge.base.paths import bundles_dir, trusted_keys_dir
from edge.bundles import signing
from edge.bundles.signing import SIGNATURE_FILE, make_key_pair, sign_bundle
from edge.commands.cli import main as edge_main

pytestmark = pytest.mark.unit


def copy_of(bundle, tmp_path, name="copy"):
    target = tmp_path / name
    shutil.copytree(bundle, target)
    return target


def test_a_key_pair_is_private_and_never_overwritten(tmp_path):
    private, public = make_key_pair(tmp_path / "keys")
    assert private.stat().st_mode & 0o777 == 0o600 and public.read_text().startswith("-----BEGIN PUBLIC KEY")
    with pytest.raises(UserError, match="a key pair is never overwritten"):
        make_key_pair(tmp_path / "keys")
    private.chmod(0o644)
    with pytest.raises(UserError, match="readable by other users; chmod 600"):
        sign_bundle(tmp_path, private)


def test_a_signed_bundle_from_a_trusted_key_verifies_and_the_engine_cache_is_not_part_of_it(verify_bundle):
    trust = signing.verify_bundle(verify_bundle)
    assert trust.signed_by == "signing.pub" and len(trust.fingerprint) == 16
    (verify_bundle / "engines").mkdir()                          # TensorRT's cache, written on the device
    (verify_bundle / "engines" / "x.engine").write_bytes(b"built here")
    assert signing.verify_bundle(verify_bundle) == trust


@pytest.mark.parametrize("tamper, message", [
    ("threshold", "manifest.json was changed after signing"),
    ("model_and_sha", "manifest.json was changed after signing"),
    ("extra_file", "extra.onnx is not covered by the signature"),
    ("missing_file", "is signed but missing"),
    ("signature_list", "the signature does not verify"),
    ("unsigned", "is not signed (no signature.json)"),
])
def test_a_tampered_or_unsigned_bundle_is_refused_in_one_line(verify_bundle, tmp_path, tamper, message):
    bundle = copy_of(verify_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    verifier = next(m for m in manifest["models"] if m["task"] == "verify")
    if tamper == "threshold":                                     # a stranger would then be named
        verifier["threshold"] = -1.0
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    elif tamper == "model_and_sha":                               # the model swapped, its checksum updated too
        (bundle / verifier["file"]).write_bytes(b"another model")
        import hashlib
        for model in manifest["models"]:
            if model["file"] == verifier["file"]:
                model["sha256"] = hashlib.sha256(b"another model").hexdigest()
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    elif tamper == "extra_file":
        (bundle / "extra.onnx").write_bytes(b"x")
    elif tamper == "missing_file":
        (bundle / "golden.npz").unlink() if (bundle / "golden.npz").exists() else (bundle / verifier["file"]).unlink()
    elif tamper == "signature_list":
        signed = json.loads((bundle / SIGNATURE_FILE).read_text())
        signed["files"]["manifest.json"] = "0" * 64
        (bundle / SIGNATURE_FILE).write_text(json.dumps(signed))
    else:
        (bundle / SIGNATURE_FILE).unlink()
    with pytest.raises(UserError) as refused:
        signing.verify_bundle(bundle)
    assert message in str(refused.value) and "\n" not in str(refused.value)
    assert signing.verify_bundle(bundle, allow_unsigned=True).allowed_unsigned


def test_a_bundle_signed_by_a_key_the_board_does_not_trust_is_refused_naming_the_fix(verify_bundle, tmp_path):
    bundle = copy_of(verify_bundle, tmp_path)
    stranger_key, _ = make_key_pair(tmp_path / "stranger")
    sign_bundle(bundle, stranger_key)
    with pytest.raises(UserError, match=r"which this board does not trust \(trusted: signing.pub .*copying its "
                                        r"signing.pub into"):
        signing.verify_bundle(bundle)


def test_reading_trust_never_creates_the_trusted_keys_folder(verify_bundle, tmp_path):
    shutil.rmtree(trusted_keys_dir())
    with pytest.raises(UserError, match=r"\(trusted: none\)"):
        signing.verify_bundle(verify_bundle)
    assert not trusted_keys_dir().exists()


def test_install_and_check_refuse_an_unsigned_bundle_unless_allowed_and_say_so(verify_bundle, tmp_path, capsys):
    bundle = copy_of(verify_bundle, tmp_path)
    (bundle / SIGNATURE_FILE).unlink()
    for action in ("install", "check"):
        assert edge_main(["bundle", action, str(bundle)]) == 2
        err = capsys.readouterr().err.strip()
        assert "is not signed" in err and "--allow_unsigned" in err and len(err.splitlines()) == 1
    assert not bundles_dir().exists() or not (bundles_dir() / "current").exists()
    assert edge_main(["bundle", "install", "--allow_unsigned", str(bundle)]) == 0
    assert "UNSIGNED: its files are not authenticated (--allow_unsigned)" in capsys.readouterr().err
    assert edge_main(["bundle", "install", str(verify_bundle)]) == 0
    assert "signed by signing.pub" in capsys.readouterr().out


@pytest.mark.parametrize("field, value", [("board", "/tmp/x/evil/host.yaml"), ("board", "../host"),
                                          ("file", "/etc/passwd"), ("file", "../../outside.onnx"),
                                          ("file", "sub/model.onnx"), ("board", "..")])
def test_names_in_a_manifest_are_names_not_paths_even_when_signed(verify_bundle, tmp_path, signer, capsys,
                                                                  field, value):
    bundle = copy_of(verify_bundle, tmp_path)
    manifest = json.loads((bundle / "manifest.json").read_text())
    if field == "board":
        manifest["board"] = value
    else:
        manifest["models"][-1]["file"] = value
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    signer(bundle)                                        # a trusted key signed it: still refused
    assert edge_main(["bundle", "install", str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{value!r} is not a plain name" in err and len(err.splitlines()) == 1
    assert not (bundles_dir() / "current").exists()
    assert not bundles_dir().exists() or not any(bundles_dir().iterdir())


def test_serve_refuses_an_unsigned_bundle_and_an_allowed_one_says_so_on_the_page_and_in_metrics(verify_bundle,
                                                                                                 tmp_path, capsys):
    testclient = pytest.importorskip("fastapi.testclient")
    from edge.faces.pipeline import open_pipeline
    from edge.kiosk.service import KioskService
    from edge.kiosk.tokens import load_or_create
    from edge.kiosk.web import create_app

    bundle = copy_of(verify_bundle, tmp_path)
    (bundle / SIGNATURE_FILE).unlink()
    assert edge_main(["serve", "--bundle", str(bundle)]) == 2
    err = capsys.readouterr().err.strip()
    assert "is not signed" in err and len(err.splitlines()) == 1
    tokens = load_or_create(tmp_path / "tokens.json")
    for folder, signed in ((bundle, False), (verify_bundle, True)):
        pipeline = open_pipeline(folder)
        service = KioskService(pipeline, "unused://", trust=signing.verify_bundle(folder, allow_unsigned=True))
        client = testclient.TestClient(create_app(service, tokens, tmp_path / "gallery.db"))
        auth = {"Authorization": f"Bearer {tokens['read']}"}
        status = client.get("/api/status", headers=auth).json()["bundle"]
        assert status["signed"] is signed and ("UNSIGNED" in status["trust"]) is not signed
        assert f"edge_face_bundle_signed {float(signed)}" in client.get("/metrics", headers=auth).text
        pipeline.close()


def test_edge_run_drives_a_door_only_on_a_bundle_this_board_trusts(verify_bundle, tmp_path, capsys):
    """edge run with door actions checks the bundle's signature as serve does (its one line on stderr: stdout holds
    the decisions); without door actions any bundle runs."""
    unsigned = copy_of(verify_bundle, tmp_path)
    (unsigned / SIGNATURE_FILE).unlink()
    gallery = tmp_path / "gallery.db"
    assert edge_main(["gallery", "--create", "--gallery", str(gallery)]) == 0
    secret = tmp_path / "door.secret"
    secret.write_text("a door's secret, 32 bytes or more, kept private")
    secret.chmod(0o600)
    door = ["--webhook", "https://door.invalid/open", "--webhook_secret_file", str(secret)]

    def run(bundle, *more):
        capsys.readouterr()
        code = edge_main(["run", "--bundle", str(bundle), "--gallery", str(gallery), "--source",
                          "synthetic://kiosk?seeds=500&frames_per_person=10&gap_frames=0", *more])
        return (code, *capsys.readouterr())

    code, out, err = run(unsigned, *door)
    assert code == 2 and out == "" and "is not signed" in err and "--allow_unsigned" in err
    assert len(err.strip().splitlines()) == 1
    for bundle, more, said in ((unsigned, ["--allow_unsigned"], "UNSIGNED"), (verify_bundle, [], "signed by")):
        code, out, err = run(bundle, *door, *more)
        assert code == 0 and said in err and all(line.startswith("{") for line in out.splitlines())
    code, out, err = run(unsigned)
    assert code == 0 and "bundle: " not in err
