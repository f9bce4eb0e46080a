"""``python -m trainer distill``: a student trained on a teacher's embeddings, at tiny sizes."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from edge.base.errors import UserError
from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.distill_data import Teacher, load_crops

pytestmark = pytest.mark.unit

from tests.unit.test_trainer import make_faces  # noqa: E402  (the trainer tests' coloured faces)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher")
    faces = make_faces(root / "faces", identities=8, images=10)
    out = root / "teacher.pt"
    assert main(["verifier", "--data", str(faces), "--out", str(out), "--epochs", "1", "--batch_size", "16",
                 "--width", "0.25", "--embedding", "16", "--threads", "1"]) == 0
    return out, faces


def test_a_student_learns_the_teachers_embeddings_and_scores_a_curve(teacher, tmp_path, capsys, monkeypatch):
    checkpoint, faces = teacher
    out = tmp_path / "runs" / "student.pt"
    args = ["distill", "--teacher", str(checkpoint), "--data", str(faces), "--out", str(out), "--images", "96",
            "--checkpoint_every", "48", "--batch_size", "16", "--width", "0.25", "--input_size", "64",
            "--threads", "1"]
    assert main([*args, "--eval_data", str(faces)]) == 0
    printed = capsys.readouterr().out
    assert "distill: images_seen 48" in printed and "against the teacher's" in printed
    student = load_checkpoint(out)
    assert student.architecture == "mobilefacenet_s" and student.task == "verify"
    assert student.config == {"width": 0.25, "embedding": 16, "input_size": 64}
    assert student.preprocessing.shape == (1, 3, 64, 64)
    assert student.preprocessing.crop == load_checkpoint(checkpoint).preprocessing.crop
    curve = json.loads((tmp_path / "runs" / "student_curve.json").read_text())
    assert [r["images_seen"] for r in curve["curve"]] == [48, 96]
    assert all(0 <= r["accuracy"] <= 1 for r in curve["curve"]) and curve["teacher"]["accuracy"] > 0.5
    assert (tmp_path / "runs" / "student_at0000048.pt").is_file()
    assert "| teacher |" in (tmp_path / "runs" / "student_report.md").read_text()
    # the teacher's targets are cached: a second run over the same faces never asks the teacher again
    monkeypatch.setattr(Teacher, "embed", lambda *a, **k: pytest.fail("targets recomputed"))
    assert main(args) == 2                              # the first student is not written over unasked
    assert "exists (another model's checkpoint?)" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0


def test_targets_from_the_teachers_compiled_file_match_pytorchs(teacher, tmp_path):
    from compile.cli import main as compile_main

    checkpoint, faces = teacher
    assert compile_main(["--target", "host", "--checkpoints", str(checkpoint), "--calibration", str(faces),
                         "--calibration_images", "16", "--artifacts", "onnx:fp32", "--out", str(tmp_path)]) == 0
    crops = load_crops([faces], 112).images[:12]
    compiled = Teacher(load_checkpoint(checkpoint), tmp_path / "host")
    assert "teacher.fp32.onnx (fp32, onnxruntime)" in compiled.source
    from_file = compiled.embed(crops)
    compiled.close()
    from_torch = Teacher(load_checkpoint(checkpoint)).embed(crops)
    assert np.allclose(np.linalg.norm(from_file, axis=1), 1, atol=1e-5)
    assert np.min(np.sum(from_file * from_torch, axis=1)) > 0.9999


def test_bad_teachers_and_too_little_data_are_refused_in_one_line(teacher, tmp_path, capsys):
    checkpoint, faces = teacher
    few = make_faces(tmp_path / "few", identities=2, images=5)
    assert main(["distill", "--teacher", str(checkpoint), "--data", str(few), "--out", str(tmp_path / "s.pt")]) == 2
    assert "found 10 readable face crops" in capsys.readouterr().err
    with pytest.raises(UserError, match="holds no file compiled from this teacher"):
        Teacher(load_checkpoint(checkpoint), _empty_bundle(tmp_path))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    assert main(["distill", "--teacher", str(garbage), "--data", str(faces), "--out", str(tmp_path / "s.pt")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def _empty_bundle(tmp_path):
    from edge.runtime.manifest import Manifest, write_manifest

    folder = tmp_path / "bundle"
    folder.mkdir()
    write_manifest(folder, Manifest(board="host", created="2026-01-01T00:00:00Z", tools={}, models=()))
    torch.manual_seed(0)
    return folder
