import json

import pytest

from edge.base.errors import UserError
from edge.faces.packaged_detector import detector_entry
from edge.runtime.manifest import Manifest, read_manifest, sha256_file, write_manifest

pytestmark = pytest.mark.unit


def _bundle(tmp_path):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"model bytes")
    entry = detector_entry("blazeface_short", "m.tflite", model)
    write_manifest(tmp_path, Manifest(board="host", created="now", tools={"x": "1"}, models=(entry,)))
    return model


def test_round_trip(tmp_path):
    model = _bundle(tmp_path)
    manifest = read_manifest(tmp_path)
    entry = manifest.find("detect")
    assert entry.sha256 == sha256_file(model)
    assert entry.input.size == (128, 128) and entry.input.layout == "NHWC"
    assert entry.decode.strides == (8, 16, 16, 16) and entry.decode.keypoints[:2] == ("eye_image_left",
                                                                                   "eye_image_right")
    assert [o.name for o in entry.outputs] == ["regressors", "classificators"]


def test_checksum_mismatch_names_the_file(tmp_path):
    model = _bundle(tmp_path)
    model.write_bytes(b"tampered")
    with pytest.raises(UserError, match="m.tflite .*fails its checksum"):
        read_manifest(tmp_path)


def test_unknown_schema_version_refused(tmp_path):
    _bundle(tmp_path)
    path = tmp_path / "manifest.json"
    raw = json.loads(path.read_text())
    raw["schema_version"] = 99
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="unknown schema_version 99"):
        read_manifest(tmp_path)
    raw["schema_version"] = 1
    path.write_text(json.dumps(raw))
    with pytest.raises(UserError, match="older schema_version 1.*recompile the bundle"):
        read_manifest(tmp_path)


def test_missing_manifest_and_missing_task(tmp_path):
    with pytest.raises(UserError, match="manifest.json is missing"):
        read_manifest(tmp_path)
    _bundle(tmp_path)
    with pytest.raises(UserError, match="no verify model"):
        read_manifest(tmp_path).find("verify")


@pytest.mark.parametrize("field, value, message", [
    ("threshold", "high", "detector.blazeface_short.threshold must be a number, got 'high'"),
    ("precision", 32, "detector.blazeface_short.precision must be str, got 32"),
])
def test_a_field_of_the_wrong_type_is_refused_when_the_bundle_is_read(tmp_path, field, value, message):
    _bundle(tmp_path)
    raw = json.loads((tmp_path / "manifest.json").read_text())
    raw["models"][0][field] = value
    (tmp_path / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(UserError, match="malformed manifest") as caught:
        read_manifest(tmp_path)
    assert message in str(caught.value)
