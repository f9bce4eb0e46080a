"""Installing bundles on a board: checked before the atomic switch, and rolled back on request."""
import json
import shutil

import pytest

from edge.base.errors import UserError
from edge.base.paths import bundles_dir
from edge.bundles import installed as bundles
from edge.commands.cli import main as edge_main

pytestmark = pytest.mark.unit


def test_install_switches_atomically_keeps_the_previous_and_rolls_back(verify_bundle, capsys):
    assert edge_main(["bundle", "install", str(verify_bundle)]) == 0
    first = bundles.current_bundle().resolve()
    assert edge_main(["bundle", "install", str(verify_bundle)]) == 0
    second = bundles.current_bundle().resolve()
    assert second != first and (bundles_dir() / "previous").resolve() == first
    assert (second / "manifest.json").is_file()
    assert edge_main(["bundle", "rollback"]) == 0
    assert bundles.current_bundle().resolve() == first and (bundles_dir() / "previous").resolve() == second
    capsys.readouterr()
    assert edge_main(["bundle", "show"]) == 0
    assert f"current\t{first.name}" in capsys.readouterr().out


def test_a_bundle_that_does_not_check_out_is_refused_and_nothing_switches(verify_bundle, tmp_path, signer, capsys):
    assert edge_main(["bundle", "install", str(verify_bundle)]) == 0
    good = bundles.current_bundle().resolve()
    broken = tmp_path / "broken"
    shutil.copytree(verify_bundle, broken)
    manifest = json.loads((broken / "manifest.json").read_text())
    (broken / manifest["models"][-1]["file"]).write_bytes(b"not the model")       # checksum no longer matches
    signer(broken)                                  # signed as it is by a trusted key: still refused, by its manifest
    assert edge_main(["bundle", "install", str(broken)]) == 2
    assert "fails its checksum" in capsys.readouterr().err
    assert bundles.current_bundle().resolve() == good
    assert not [p for p in bundles_dir().iterdir() if p.name.startswith(".staging")]
    with pytest.raises(UserError, match="refused by the check"):
        bundles.install(verify_bundle, lambda folder: (_ for _ in ()).throw(UserError("refused by the check")))
    assert bundles.current_bundle().resolve() == good


def test_no_bundle_installed_and_nothing_to_roll_back_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_FACE_HOME", str(tmp_path / "home"))
    with pytest.raises(UserError, match="no bundle installed"):
        bundles.current_bundle()
    with pytest.raises(UserError, match="no previous bundle"):
        bundles.rollback()
