"""The thin trainer: model shapes, the ArcFace loss, and tiny end-to-end runs of both CLIs."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from edge.base.errors import UserError
from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.data import augment, load_faces, split_identities
from trainer.device import pick_device
from trainer.losses import ArcFaceHead
from trainer.models.autoencoder import ConvAutoencoder
from trainer.models.mobilefacenet import MobileFaceNetS

pytestmark = pytest.mark.unit


def make_faces(root: Path, identities: int = 6, images: int = 5) -> Path:
    """Distinct coloured 'faces' per identity (a blob at an identity-specific place), noisy per image."""
    rng = np.random.default_rng(0)
    for i in range(identities):
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        centre = (int(rng.integers(30, 82)), int(rng.integers(30, 82)))
        folder = root / f"person{i}"
        folder.mkdir(parents=True)
        for j in range(images):
            image = np.full((112, 112, 3), 90, np.uint8)
            cv2.ellipse(image, centre, (25, 35), 0, 0, 360, colour, -1)
            noise = rng.normal(0, 8, image.shape)
            cv2.imwrite(str(folder / f"{j}.png"), np.clip(image + noise, 0, 255).astype(np.uint8))
    return root


def test_autoencoder_has_the_specified_layers():
    model = ConvAutoencoder()
    convs = [m for m in model.encoder if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.stride) for c in convs] == [(16, (2, 2)), (32, (2, 2)), (64, (2, 2))]
    assert model.encoder[-1].out_features == 32
    assert len([m for m in model.decoder if isinstance(m, nn.ConvTranspose2d)]) == 3
    assert isinstance(model.decoder[-1], nn.Sigmoid)
    with torch.no_grad():
        y = model(torch.rand(2, 3, 64, 64))
    assert y.shape == (2, 3, 64, 64) and 0 <= float(y.min()) and float(y.max()) <= 1


def test_mobilefacenet_shape_and_plain_ops():
    model = MobileFaceNetS(width=0.25, embedding=16).eval()
    assert model(torch.randn(2, 3, 112, 112)).shape == (2, 16)
    allowed = (nn.Sequential, nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Flatten, nn.Linear, nn.BatchNorm1d)
    leaves = [m for m in model.modules() if not list(m.children())]
    assert all(isinstance(m, allowed) for m in leaves)   # quantizable: no PReLU or exotic ops


def test_arcface_loss_decreases_on_a_toy_batch():
    torch.manual_seed(0)
    embeddings = nn.Parameter(torch.randn(16, 8))
    labels = torch.arange(4).repeat(4)
    head = ArcFaceHead(8, 4, scale=30.0, margin=0.4)
    optimizer = torch.optim.Adam([embeddings, *head.parameters()], lr=0.05)
    losses = []
    for _ in range(30):
        loss = head(embeddings, labels)
        assert torch.isfinite(loss)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_identity_split_is_disjoint_and_augment_keeps_images(tmp_path):
    faces = load_faces(make_faces(tmp_path / "faces"))
    train, held = split_identities(faces, 0.25, np.random.default_rng(0))
    assert not set(train.labels) & set(held.labels) and len(set(held.labels)) == 2
    out = augment(faces.images[:4], np.random.default_rng(0))
    assert out.shape == faces.images[:4].shape and out.dtype == np.uint8
    with pytest.raises(UserError):
        split_identities(faces.subset(np.nonzero(faces.labels < 3)[0]), 0.25, np.random.default_rng(0))


def test_generator_cli_end_to_end(tmp_path):
    data = make_faces(tmp_path / "faces")
    (data / "person0" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "runs" / "generator.pt"
    code = main(["generator", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch_size", "8",
                 "--threads", "1"])
    assert code == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.task == "generate" and checkpoint.architecture == "conv_autoencoder"
    assert checkpoint.preprocessing.shape == (1, 3, 64, 64)
    assert checkpoint.metrics["skipped_images"] == 1 and np.isfinite(checkpoint.metrics["psnr"])
    assert checkpoint.build_model()(torch.rand(1, 3, 64, 64)).shape == (1, 3, 64, 64)
    assert (tmp_path / "runs" / "generator_samples.png").exists()
    assert "PSNR" in (tmp_path / "runs" / "generator_report.md").read_text()


def test_max_seconds_stops_early_and_says_so(tmp_path, capsys):
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--epochs", "50", "--batch_size", "8",
                 "--max_seconds", "0.01", "--threads", "1"]) == 0
    assert "stopped after" in capsys.readouterr().err
    assert load_checkpoint(out).metrics["stopped_early"] is True


def test_verifier_cli_end_to_end(tmp_path, capsys):
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "runs" / "verifier.pt"
    code = main(["verifier", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch_size", "8",
                 "--width", "0.25", "--embedding", "16", "--threads", "1"])
    assert code == 0
    assert capsys.readouterr().out.startswith("verifier: held-out accuracy")
    checkpoint = load_checkpoint(out)
    assert checkpoint.task == "verify" and checkpoint.config == {"width": 0.25, "embedding": 16, "input_size": 112}
    assert checkpoint.threshold == checkpoint.metrics["threshold"]
    for key in ("accuracy", "auc", "eer", "tar_at_far", "target_far"):
        assert key in checkpoint.metrics
    assert checkpoint.build_model()(torch.zeros(1, 3, 112, 112)).shape == (1, 16)
    assert (tmp_path / "runs" / "verifier_report.md").exists()


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["generator", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "g.pt")]) == 2
    assert capsys.readouterr().err.startswith("error: ")
    data = make_faces(tmp_path / "faces", identities=3)
    assert main(["verifier", "--data", str(data), "--out", str(tmp_path / "v.pt"), "--width", "0.25"]) == 2
    assert "too few" in capsys.readouterr().err


@pytest.mark.unit
def test_device_choice_is_checked():
    assert pick_device("cpu").type == "cpu"
    assert pick_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="valid: auto, cpu, cuda"):
        pick_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            pick_device("cuda")


def test_a_garbage_or_foreign_checkpoint_is_refused_in_one_line(tmp_path):
    for number, junk in enumerate((b"\x80\x04 not a pickle at all", b"junk\n", b"abc")):
        garbage = tmp_path / f"garbage{number}.pt"
        garbage.write_bytes(junk)
        with pytest.raises(UserError, match="is not a checkpoint written by python -m trainer") as refused:
            load_checkpoint(garbage)
        assert "\n" not in str(refused.value)
    foreign = tmp_path / "foreign.pt"
    torch.save({"checkpoint_version": 1, "state_dict": {}}, foreign)
    with pytest.raises(UserError, match="lacks architecture, config"):
        load_checkpoint(foreign)


def test_a_checkpoint_saved_on_a_gpu_loads_on_a_cpu_machine(tmp_path, monkeypatch):
    import torch.serialization

    from edge.runtime.preprocess import verifier_input_spec
    from trainer.checkpoint import save_checkpoint

    model = MobileFaceNetS(width=0.25, embedding=16).eval()
    # what torch writes for tensors that lived on a GPU: each storage tagged "cuda:0"
    monkeypatch.setattr(torch.serialization, "location_tag", lambda storage: "cuda:0")
    save_checkpoint(tmp_path / "gpu.pt", architecture="mobilefacenet_s", config={"width": 0.25, "embedding": 16},
                    task="verify", model=model, preprocessing=verifier_input_spec(), metrics={})
    monkeypatch.undo()
    assert b"cuda:0" in (tmp_path / "gpu.pt").read_bytes()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError):
            torch.load(tmp_path / "gpu.pt", weights_only=True)         # without map_location it cannot load here
    rebuilt = load_checkpoint(tmp_path / "gpu.pt").build_model()
    x = torch.randn(2, 3, 112, 112)
    assert torch.allclose(rebuilt(x), model(x))


def test_ctrl_c_stops_training_and_the_model_is_still_evaluated_and_saved(tmp_path, monkeypatch, capsys):
    import trainer.loop

    real = trainer.loop.optimise
    calls = []

    def interrupted_on_the_third_step(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(trainer.loop, "optimise", interrupted_on_the_third_step)
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "v.pt"
    assert main(["verifier", "--data", str(data), "--out", str(out), "--epochs", "3", "--batch_size", "8",
                 "--width", "0.25", "--embedding", "16", "--threads", "1"]) == 0
    assert "verifier: interrupted (Ctrl+C or SIGTERM) with 1 of 3 epochs done" in capsys.readouterr().err
    metrics = load_checkpoint(out).metrics
    assert metrics["stopped_early"] is True and metrics["stopped_because"] == "interrupted (Ctrl+C or SIGTERM)"
    assert "| stopped_because | interrupted (Ctrl+C or SIGTERM) |" in out.with_name("v_report.md").read_text()


def test_eval_generator_reports_psnr_ssim_a_named_frechet_distance_and_the_detectors_hit_rate(tmp_path, capsys):
    import json

    data = make_faces(tmp_path / "faces", identities=4, images=6)
    generator = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(generator), "--epochs", "1", "--batch_size", "8",
                 "--threads", "1"]) == 0
    verifier = tmp_path / "v.pt"
    assert main(["verifier", "--data", str(data), "--out", str(verifier), "--epochs", "1", "--batch_size", "8",
                 "--width", "0.25", "--embedding", "16", "--threads", "1"]) == 0
    capsys.readouterr()
    assert main(["eval-generator", "--ckpt", str(generator), "--real", str(data), "--features", str(verifier)]) == 0
    assert capsys.readouterr().out.startswith("eval-generator: 24 real faces, PSNR")
    figures = json.loads((tmp_path / "g_eval.json").read_text())
    assert 0 < figures["ssim"] <= 1 and figures["psnr_db"] > 0 and figures["frechet_distance"] >= 0
    assert figures["frechet_features"].startswith("mobilefacenet_s (v.pt") and 0 <= figures["faces_detected"] <= 1
    # the autoencoder both reconstructs and samples (from the Gaussian fitted to its codes): both are judged
    assert figures["frechet_distance_reconstructions"] >= 0 and 0 <= figures["faces_detected_samples"] <= 1
    report = (tmp_path / "g_eval.md").read_text()
    assert "not comparable with Inception FID" in report and (tmp_path / "g_eval.png").is_file()
    assert main(["eval-generator", "--ckpt", str(verifier), "--real", str(data)]) == 2
    assert "eval-generator judges generators" in capsys.readouterr().err


@pytest.mark.parametrize("extra, variant", [(["--noise", "gaussian:0.2"], "denoising"),
                                            (["--noise", "mask:0.3", "--sparsity", "0.01"], "denoising + sparse")])
def test_denoising_and_sparse_autoencoders_train_and_say_what_they_are(tmp_path, extra, variant):
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch_size", "8",
                 "--threads", "1", *extra]) == 0
    metrics = load_checkpoint(out).metrics
    assert metrics["variant"] == variant and metrics["noise"] == extra[1] and metrics["code_mean_abs"] > 0
    assert f"| variant | {variant} |" in (tmp_path / "g_report.md").read_text()


def test_a_malformed_noise_is_refused_in_one_line(tmp_path, capsys):
    data = make_faces(tmp_path / "faces")
    assert main(["generator", "--data", str(data), "--out", str(tmp_path / "g.pt"), "--noise", "salt:0.1"]) == 2
    assert "--noise takes KIND:AMOUNT" in capsys.readouterr().err


def test_a_vae_trains_samples_its_prior_rebuilds_and_reconstructs_deterministically(tmp_path):
    from trainer.models.autoencoder import ConvVAE, kl_divergence

    data = make_faces(tmp_path / "faces")
    out = tmp_path / "vae.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--epochs", "2", "--batch_size", "8",
                 "--threads", "1", "--family", "vae", "--beta", "0.5"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.architecture == "conv_vae" and checkpoint.metrics["family"] == "vae"
    assert checkpoint.metrics["beta"] == 0.5 and checkpoint.metrics["psnr"] > 0
    model = checkpoint.build_model()
    assert isinstance(model, ConvVAE)
    x = torch.rand(2, 3, 64, 64)
    assert torch.equal(model(x), model(x))                          # eval mode decodes the mean
    mean, log_var = model.statistics(x)
    assert mean.shape == log_var.shape == (2, 32) and kl_divergence(mean, log_var) >= 0
    assert (tmp_path / "vae_samples.png").is_file()
    from compile.cli import main as compile_main              # its reconstructing graph compiles like the seed's
    assert compile_main(["--target", "host", "--checkpoints", str(out), "--artifacts", "onnx:fp32,onnx:int8",
                         "--calibration", str(data), "--calibration_images", "16", "--holdout_images", "8",
                         "--out", str(tmp_path / "bundles")]) == 0


def test_the_training_ssim_is_the_reported_ssim_and_the_generator_trains_with_it(tmp_path):
    import cv2

    from edge.base.metrics import ssim as numpy_ssim
    from trainer.image_losses import ssim as torch_ssim

    rng = np.random.default_rng(0)
    a = np.stack([cv2.GaussianBlur(rng.random((64, 64, 3)), (0, 0), 2) for _ in range(2)])
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    expected = np.mean([numpy_ssim(x, y) for x, y in zip(a, b)])
    as_tensor = [torch.from_numpy(v.transpose(0, 3, 1, 2).astype(np.float32)) for v in (a, b)]
    assert float(torch_ssim(*as_tensor)) == pytest.approx(expected, abs=1e-3)
    data = make_faces(tmp_path / "faces")
    assert main(["generator", "--data", str(data), "--out", str(tmp_path / "g.pt"), "--epochs", "1",
                 "--batch_size", "8", "--threads", "1", "--ssim_weight", "0.5"]) == 0
    assert load_checkpoint(tmp_path / "g.pt").metrics["ssim_weight"] == 0.5


def test_near_duplicate_faces_are_dropped_before_training_and_listed(tmp_path):
    from synthetic_faces import identities, render_face, sample_nuisance

    data = make_faces(tmp_path / "faces")
    person = identities(1, 7)[0]
    image, _ = render_face(person, sample_nuisance(np.random.default_rng(7)), 112)           # a face-like photo
    cv2.imwrite(str(data / "person0" / "a_face.png"), image)
    cv2.imwrite(str(data / "person0" / "copy.jpg"), image, [cv2.IMWRITE_JPEG_QUALITY, 70])   # re-encoded
    cv2.imwrite(str(data / "person1" / "moved.png"), image)                                 # filed twice
    out = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch_size", "8",
                 "--threads", "1"]) == 0
    metrics = load_checkpoint(out).metrics
    assert metrics["near_duplicates_removed"] == 2 and metrics["train_images"] + metrics["holdout_images"] == 33 - 2
    listed = (tmp_path / "g_duplicates.txt").read_text()
    assert "person0/copy.jpg\tlike person0/a_face.png" in listed
    assert "person1/moved.png\tlike person0/a_face.png" in listed


def test_early_stopping_keeps_the_best_epochs_weights_and_logs_every_epoch(tmp_path, capsys):
    from trainer.loop import Validation, train_epochs
    from trainer.report import Clock

    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    losses, weights = iter([3.0, 2.0, 2.5, 2.6, 1.0]), []

    def validation_loss():
        weights.append(model.weight.detach().clone())
        return next(losses)

    run = train_epochs("toy", model, epochs=5, steps_per_epoch=1, images_per_epoch=1,
                       batches=lambda: iter([np.array([0])]), step=lambda i, s: (model(torch.ones(1, 2)).sum(), {}),
                       optimizer=optimizer, schedule=schedule, clock=Clock(None),
                       validation=Validation(validation_loss, patience=2, log=tmp_path / "log.csv"))
    assert run.stopped and run.best_epoch == 2 and len(run.history) == 4            # epoch 5 never ran
    assert torch.equal(model.weight, weights[1])                                    # epoch 2's weights restored
    assert "stopped early after epoch 4" in capsys.readouterr().err
    assert (tmp_path / "log.csv").read_text().splitlines()[0] == "epoch,train_loss,validation_loss,seconds"
    data = make_faces(tmp_path / "faces")
    assert main(["generator", "--data", str(data), "--out", str(tmp_path / "g.pt"), "--epochs", "2",
                 "--batch_size", "8", "--threads", "1", "--patience", "1"]) == 0
    assert load_checkpoint(tmp_path / "g.pt").metrics["best_epoch"] in (1, 2)
    assert len((tmp_path / "g_log.csv").read_text().splitlines()) == 3
    assert sorted(p.name for p in (tmp_path / "g_epochs").iterdir()) == ["epoch_001.png", "epoch_002.png"]


def test_a_recipe_then_flags_then_key_value_overrides_set_the_generators_training(tmp_path, capsys):
    from trainer.configs import config_names, resolve

    assert config_names() == ["autoencoder", "cgan", "dcgan", "denoising", "faceswap", "sparse", "vae"]
    name, settings = resolve("denoising", {"epochs": 3, "lr": None}, ["noise=mask:0.25", "patience=1"])
    assert name == "denoising" and settings["epochs"] == 3 and settings["lr"] == 0.002
    assert settings["noise"] == "mask:0.25" and settings["patience"] == 1 and settings["family"] == "autoencoder"
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--config", "vae", "--batch_size", "8",
                 "--threads", "1", "epochs=1", "beta=0.5"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.architecture == "conv_vae" and checkpoint.metrics["recipe"] == "vae"
    metrics = checkpoint.metrics
    assert metrics["beta"] == 0.5 and metrics["ssim_weight"] == 0.5 and metrics["epochs"] == 1
    for bad, message in ((["epochs=five"], "setting epochs must be a whole number, got 'five'"),
                         (["epoch=1"], "unknown setting 'epoch' (did you mean 'epochs'?)"),
                         (["--config", "gan"], "unknown generator config 'gan'")):
        assert main(["generator", "--data", str(data), "--out", str(tmp_path / "x.pt"), *bad]) == 2
        assert message in capsys.readouterr().err


def test_a_checkpoint_is_not_written_over_unless_asked(tmp_path, capsys):
    data = make_faces(tmp_path / "faces")
    out = tmp_path / "v.pt"
    out.write_bytes(b"another model")
    train = ["verifier", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch_size", "8",
             "--width", "0.25", "--embedding", "16", "--threads", "1"]
    assert main(train) == 2
    assert "exists (another model's checkpoint?)" in capsys.readouterr().err and out.read_bytes() == b"another model"
    assert main([*train, "--overwrite"]) == 0
    assert load_checkpoint(out).task == "verify"
