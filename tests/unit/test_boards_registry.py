import pytest
import yaml

from edge.base.errors import UserError
from edge.base.registry import Registry
from edge.runtime.boards import Artifact, board_names, load_board, resolve_board_name

pytestmark = pytest.mark.unit


def test_registry_unknown_name_lists_valid_and_closest():
    registry = Registry("backend", {"onnxruntime": "x:y", "tflite": "x:z"})
    with pytest.raises(UserError, match=r"did you mean 'onnxruntime'.*valid: onnxruntime, tflite"):
        registry.get("onnxrutime")


def test_every_board_loads_and_aliases_resolve():
    assert {"host", "rpi4", "rpi5", "jetson-nano", "jetson-orin-nano"} <= set(board_names())
    for name in board_names():
        board = load_board(name)
        assert board.name == name
        assert board.artifact_list()
    assert resolve_board_name("jetson") == "jetson-orin-nano"
    assert load_board("rpi").name == "rpi4"


def test_nano_has_no_int8_and_orin_does():
    assert "int8" not in load_board("jetson-nano").supports["onnx"]
    assert "int8" in load_board("jetson-orin-nano").supports["onnx"]


def test_tensorrt_is_a_runtime_not_a_file_format(tmp_path):
    with pytest.raises(UserError, match="TensorRT is a runtime, not a file format"):
        Artifact.parse("tensorrt:fp16")
    with pytest.raises(UserError, match="unknown format 'tensorrt' .TensorRT is a runtime"):
        load_board(_write(tmp_path, supports={"onnx": ["fp32"], "tensorrt": ["fp16"]}))


def _write(tmp_path, **changes):
    raw = yaml.safe_load(open(load_board.__globals__["BOARD_DIR"] / "host.yaml"))
    raw.update(changes)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_unknown_key_names_key_and_valid_ones(tmp_path):
    with pytest.raises(UserError, match=r"unknown key 'thread'.*valid keys: name"):
        load_board(_write(tmp_path, thread=4))


def test_wrong_type_names_the_key(tmp_path):
    with pytest.raises(UserError, match=r"key 'threads' must be of type int"):
        load_board(_write(tmp_path, threads="four"))


def test_artifact_outside_capability_table_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"tflite:fp16 is not in the board's supports"):
        load_board(_write(tmp_path, supports={"onnx": ["fp32"], "tflite": ["fp32"]}, artifacts=["tflite:fp16"]))


def test_unknown_board_suggests(tmp_path):
    with pytest.raises(UserError, match="did you mean 'rpi4'"):
        load_board("rpi44")


def test_artifact_parse():
    assert Artifact.parse("onnx:int8") == Artifact("onnx", "int8")
    with pytest.raises(UserError):
        Artifact.parse("onnx")


def test_a_board_config_cannot_be_changed_by_whoever_holds_it():
    board = load_board("host")
    with pytest.raises(TypeError):
        board.supports["onnx"] = ("fp32",)
    with pytest.raises(TypeError):
        board.precision["verify"] = "fp32"


def test_a_tensorrt_board_running_int8_needs_signed_int8_activations(tmp_path):
    raw = yaml.safe_load(open(load_board.__globals__["BOARD_DIR"] / "jetson-orin-nano.yaml"))
    raw["int8_activations"] = "uint8"
    path = tmp_path / "orin.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError, match="needs int8_activations: int8, not 'uint8'"):
        load_board(path)


def test_a_measured_profile_must_keep_to_the_boards_supports_table():
    from edge.base.paths import profiles_dir
    from edge.runtime.board_profile import read_profile, write_profile

    write_profile(profiles_dir() / "jetson-nano.json", "jetson-nano",
                  {"verify": {"precision": "int8", "backend": "onnxruntime", "median_ms": 1.0}})   # no INT8 there
    board = load_board("jetson-nano")               # the config alone loads: the profile is read apart
    with pytest.raises(UserError, match="runs verify at int8 on onnxruntime, which board jetson-nano's supports"):
        read_profile(board)
