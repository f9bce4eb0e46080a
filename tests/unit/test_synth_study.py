"""Generated identities for the verifier (trainer synth), the triplet and CosFace losses, and the study that
compares training on real, generated and both."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.unit.test_trainer import make_faces
from trainer.cli import main
from trainer.data_study import macro_f1
from trainer.losses import BatchHardTripletLoss, CosFaceHead

pytestmark = pytest.mark.unit


class _Detection:
    def __init__(self, score):
        self.score = score


class _BrightFaceDetector:
    """A stand-in at the detector's boundary (the real one is tested on real and rendered faces): a 'face' in every
    picture, scoring under 0.5 where its left half is darker than its right."""

    def detect(self, image):
        left, right = image[:, : image.shape[1] // 2].mean(), image[:, image.shape[1] // 2:].mean()
        return [_Detection(0.9 if left >= right else 0.3)]


@pytest.fixture
def generator(tmp_path) -> Path:
    """An untrained VAE: its decoder draws varied patterns from varied latents (one trained for seconds on a few
    blobs draws the same grey for every latent, which de-duplication rightly drops)."""
    from edge.runtime.preprocess import generator_input_spec
    from trainer.checkpoint import save_checkpoint
    from trainer.models.autoencoder import ConvVAE

    torch.manual_seed(0)
    config = {"channels": [16, 32, 64], "latent": 32, "input_size": 64}
    out = tmp_path / "vae.pt"
    save_checkpoint(out, architecture="conv_vae", config=config, task="generate", model=ConvVAE(**config).eval(),
                    preprocessing=generator_input_spec(), metrics={})
    return out


def test_synth_writes_balanced_identity_folders_and_reports_what_it_dropped(generator, tmp_path, monkeypatch,
                                                                           capsys):
    import edge.faces.packaged_detector

    monkeypatch.setattr(edge.faces.packaged_detector, "load_packaged_detector", lambda *a, **k: _BrightFaceDetector())
    out = tmp_path / "synth"
    assert main(["synth", "--generator", str(generator), "--identities", "6", "--per_identity", "3",
                 "--out", str(out), "--spread", "0.5", "--dedup_distance", "0"]) == 0
    folders = sorted(p for p in out.iterdir())
    assert folders and all(len(list(f.iterdir())) == 3 for f in folders)          # balanced
    assert all(np.array(__import__("cv2").imread(str(next(f.iterdir())))).shape == (112, 112, 3) for f in folders)
    report = (tmp_path / "synth_report.md").read_text()
    assert "low_score" in report and "identities_kept" in report and (tmp_path / "synth_samples.png").exists()
    assert f"synth: {len(folders)} of 6 identities" in capsys.readouterr().out
    # a second run into the same folder would mix two sets: refused
    assert main(["synth", "--generator", str(generator), "--out", str(out)]) == 2
    assert "is not empty" in capsys.readouterr().err


def test_synth_refuses_a_generator_that_does_not_sample(tmp_path, capsys):
    a = make_faces(tmp_path / "a", identities=1, images=20) / "person0"
    b = make_faces(tmp_path / "b", identities=1, images=20) / "person0"
    swap = tmp_path / "swap.pt"
    assert main(["generator", "--config", "faceswap", "--data", str(a), "--swap_with", str(b), "--out", str(swap),
                 "epochs=1", "batch_size=8", "latent=8", "dedup_distance=0"]) == 0
    capsys.readouterr()
    assert main(["synth", "--generator", str(swap), "--out", str(tmp_path / "s")]) == 2
    assert "does not sample new faces" in capsys.readouterr().err


def test_cosface_and_the_batch_hard_triplet_loss():
    embeddings = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    labels = torch.tensor([0, 0, 1, 1])
    # well separated: no triplet violates the margin; swapped labels: every one does
    assert BatchHardTripletLoss(0.3)(embeddings, labels).item() == pytest.approx(0.0)
    assert BatchHardTripletLoss(0.3)(embeddings, torch.tensor([0, 1, 0, 1])).item() > 1.0
    head = CosFaceHead(2, 2, scale=10.0, margin=0.35)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0]]))
    logits = head.logits(embeddings[:1], labels[:1])
    assert logits[0, 0].item() == pytest.approx(10 * (1 - 0.35))


def test_macro_f1_from_a_confusion_matrix():
    assert macro_f1(np.eye(3, dtype=int) * 4) == pytest.approx(1.0)
    confusion = np.array([[2, 0], [2, 0]])            # everything called identity 0
    assert macro_f1(confusion) == pytest.approx((2 * 0.5 * 1 / 1.5 + 0) / 2)


@pytest.mark.parametrize("loss", ["cosface", "triplet"])
def test_the_data_study_trains_three_arms_with_the_same_steps_and_scores_each_on_the_real_faces(tmp_path, loss,
                                                                                                capsys):
    real = make_faces(tmp_path / "real", identities=6, images=6)
    generated = make_faces(tmp_path / "generated", identities=6, images=6)
    held = make_faces(tmp_path / "held", identities=4, images=5)
    out = tmp_path / "study"
    assert main(["data-study", "--real", str(real), "--generated", str(generated), "--eval", str(held),
                 "--out", str(out), "--steps", "3", "--batch_size", "8", "--width", "0.25", "--loss", loss,
                 "--threads", "1"]) == 0
    rows = json.loads((out / "study.json").read_text())
    assert [r["arm"] for r in rows] == ["real", "generated", "both"]
    assert rows[2]["train_identities"] > rows[0]["train_identities"]
    for row in rows:
        assert 0 <= row["auc"] <= 1 and 0 <= row["top1"] <= 1 and row["probes"] == 16
        assert np.asarray(row["confusion"]).sum() == 16
    for arm in ("real", "generated", "both"):
        assert load_steps(out / f"{arm}.pt") == 3
    assert (out / "roc.png").exists() and (out / "confusion.png").exists()
    assert "best ROC AUC by training data" in capsys.readouterr().out


def load_steps(path: Path) -> int:
    from trainer.checkpoint import load_checkpoint

    return load_checkpoint(path).metrics["steps"]


def test_ctrl_c_during_an_arm_stops_the_whole_study_and_writes_no_report(tmp_path, monkeypatch, capsys):
    import trainer.loop

    real = make_faces(tmp_path / "real", identities=6, images=6)
    generated = make_faces(tmp_path / "generated", identities=6, images=6)
    held = make_faces(tmp_path / "held", identities=4, images=5)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.loop, "optimise", interrupted)
    out = tmp_path / "study"
    assert main(["data-study", "--real", str(real), "--generated", str(generated), "--eval", str(held),
                 "--out", str(out), "--steps", "3", "--batch_size", "8", "--width", "0.25", "--threads", "1"]) == 130
    assert "interrupted" in capsys.readouterr().err
    assert not (out / "study.md").exists() and not (out / "generated.pt").exists()
