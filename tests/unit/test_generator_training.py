"""Generator training beyond the autoencoders: DCGAN and conditional GAN, resume, mixed precision, DDP."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edge.base.errors import UserError
from tests.unit.test_trainer import make_faces
from trainer.checkpoint import load_checkpoint
from trainer.cli import main
from trainer.face_pose import POSES, mirrored, nose_offset, pose_class
from trainer.models.dcgan import DCGANDiscriminator, DCGANGenerator
from trainer.precision import MixedPrecision

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]


def test_dcgan_shapes_range_and_the_conditional_label():
    generator, critic = DCGANGenerator(latent=16, width=8), DCGANDiscriminator(width=8)
    faces = generator(torch.randn(3, 16))
    assert faces.shape == (3, 3, 64, 64) and 0 <= faces.min() and faces.max() <= 1
    assert critic(faces).shape == (3,)
    conditional = DCGANGenerator(latent=16, width=8, classes=3)
    labels = torch.tensor([0, 1, 2])
    assert conditional(torch.randn(3, 16), labels).shape == (3, 3, 64, 64)
    assert DCGANDiscriminator(width=8, classes=3)(faces, labels).shape == (3,)
    with pytest.raises(ValueError, match="conditional"):
        conditional(torch.randn(3, 16))


def test_the_pose_label_is_read_from_the_nose_and_swaps_in_a_mirror():
    eyes = np.array([[40.0, 50.0], [72.0, 50.0]])
    def points(nose_x):
        return np.vstack([eyes, [[nose_x, 70.0]]])
    assert nose_offset(points(56.0)) == pytest.approx(0.0)
    assert [pose_class(nose_offset(points(x))) for x in (45.0, 56.0, 67.0)] == [0, 1, 2]
    assert list(mirrored(np.array([0, 1, 2, -1]))) == [2, 1, 0, -1]
    assert len(POSES) == 3


def test_a_dcgan_and_a_conditional_gan_train_and_write_a_generator_checkpoint(tmp_path, capsys):
    data = make_faces(tmp_path / "faces", identities=4, images=8)
    for family in ("dcgan", "cgan"):
        out = tmp_path / f"{family}.pt"
        assert main(["generator", "--config", family, "--data", str(data), "--out", str(out), "epochs=2",
                     "batch_size=8", "width=8", "latent=16", "condition=folder", "dedup_distance=0"]) == 0
        checkpoint = load_checkpoint(out)
        assert checkpoint.architecture == "dcgan_generator" and checkpoint.task == "generate"
        metrics = checkpoint.metrics
        assert metrics["family"] == family and 0 <= metrics["faces_detected"] <= 1
        assert metrics["images_per_second"] > 0 and metrics["mixed_precision"] == "off"
        assert (metrics["class_names"] == ["person0", "person1", "person2", "person3"]) == (family == "cgan")
        model = checkpoint.build_model()
        labels = torch.zeros(2, dtype=torch.int64) if family == "cgan" else None
        assert model(torch.randn(2, 16), labels).shape == (2, 3, 64, 64)
        for suffix in ("samples.png", "report.md", "log.csv", "last.pt"):
            assert (tmp_path / f"{family}_{suffix}").exists(), suffix
        assert len(list((tmp_path / f"{family}_epochs").glob("*.png"))) == 2
    assert "a face detected in" in capsys.readouterr().out
    # judged on its samples (it has no encoder), with a latent interpolation grid
    assert main(["eval-generator", "--ckpt", str(tmp_path / "cgan.pt"), "--real", str(data)]) == 0
    figures = json.loads((tmp_path / "cgan_eval.json").read_text())
    assert "psnr_db" not in figures and figures["judged_on"] == "faces sampled from the latent prior"
    assert figures["frechet_distance"] == figures["frechet_distance_samples"] >= 0
    assert (tmp_path / "cgan_eval_interpolation.png").exists()


def test_autoencoder_options_are_refused_for_a_gan(tmp_path, capsys):
    data = make_faces(tmp_path / "faces")
    assert main(["generator", "--config", "dcgan", "--data", str(data), "--out", str(tmp_path / "g.pt"),
                 "noise=mask:0.2"]) == 2
    assert "--noise is for the autoencoders, not dcgan" in capsys.readouterr().err
    for setting in ("stacked_epochs=2", "colour=grey", "channels=[8,16]"):
        assert main(["generator", "--config", "dcgan", "--data", str(data), "--out", str(tmp_path / "g.pt"),
                     setting]) == 2
        assert f"--{setting.split('=')[0]} is for the autoencoders, not dcgan" in capsys.readouterr().err


def _weights(path: Path) -> dict:
    return load_checkpoint(path).state_dict


def test_a_resumed_run_ends_with_the_weights_of_one_that_never_stopped(tmp_path, capsys, monkeypatch):
    from trainer.run_state import RunState

    data = make_faces(tmp_path / "faces", identities=4, images=6)
    common = ["generator", "--data", str(data), "--threads", "1", "batch_size=8", "dedup_distance=0", "epochs=3"]
    assert main([*common, "--out", str(tmp_path / "straight.pt")]) == 0
    save = RunState.save

    def ctrl_c_after_the_first_epoch(self, epoch, epochs, progress):
        save(self, epoch, epochs, progress)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(RunState, "save", ctrl_c_after_the_first_epoch)
        assert main([*common, "--out", str(tmp_path / "split.pt")]) == 0
    assert main([*common, "--out", str(tmp_path / "split.pt"), "--resume", str(tmp_path / "split_last.pt")]) == 0
    assert "resumed from" in capsys.readouterr().err
    straight, split = _weights(tmp_path / "straight.pt"), _weights(tmp_path / "split.pt")
    for name in straight:
        torch.testing.assert_close(split[name], straight[name], rtol=0, atol=1e-6)
    assert load_checkpoint(tmp_path / "split.pt").metrics["epochs_run"] == 2      # this process's share
    assert [row.split(",")[0] for row in (tmp_path / "split_log.csv").read_text().splitlines()[1:]] == ["1", "2", "3"]


def test_resume_refuses_another_architecture_a_finished_checkpoint_and_a_done_run(tmp_path, capsys):
    data = make_faces(tmp_path / "faces", identities=3, images=4)
    common = ["generator", "--data", str(data), "batch_size=4", "dedup_distance=0"]
    assert main([*common, "--config", "vae", "--out", str(tmp_path / "vae.pt"), "epochs=1"]) == 0
    capsys.readouterr()
    cases = [(["--resume", str(tmp_path / "vae_last.pt")], "another model's run (architecture conv_vae"),
             (["--resume", str(tmp_path / "vae.pt")], "finished checkpoint"),
             (["--config", "vae", "--resume", str(tmp_path / "vae_last.pt"), "epochs=1"], "finished all its 1 epochs"),
             (["--resume", str(tmp_path / "none.pt")], "does not exist")]
    for extra, message in cases:
        assert main([*common, "--out", str(tmp_path / "again.pt"), *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err


def test_mixed_precision_is_off_on_a_cpu_and_a_plain_step_still_trains():
    precision = MixedPrecision(torch.device("cpu"))
    assert precision.name == "off" and precision.state_dict() in ({}, None) or not precision.enabled
    layer = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1)
    before = layer.weight.detach().clone()
    with precision.autocast():
        loss = layer(torch.ones(1, 2)).sum()
    precision.step(loss, optimizer)
    assert not torch.equal(before, layer.weight)


def test_ddp_over_two_gloo_processes_matches_one_process_on_the_whole_batch(tmp_path):
    """torchrun at world size 2 on the CPU: each process takes half of every batch and DDP averages the gradients,
    so the weights equal those of a single process (same seed, same batches)."""
    data = make_faces(tmp_path / "faces", identities=6, images=6)         # 36 faces: 32 train, 4 held out
    common = ["generator", "--data", str(data), "--threads", "1", "batch_size=8", "epochs=2", "dedup_distance=0"]
    assert main([*common, "--out", str(tmp_path / "one.pt")]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "trainer", *common, "--out", str(tmp_path / "two.pt")],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "rank 1 of 2 done" in run.stdout
    two = load_checkpoint(tmp_path / "two.pt")
    assert two.metrics["processes"] == 2
    one = _weights(tmp_path / "one.pt")
    for name in one:
        torch.testing.assert_close(two.state_dict[name], one[name], rtol=0, atol=1e-4)


def test_a_gan_needs_a_batch_of_usable_faces(tmp_path):
    from trainer.train_gan import train_gan

    data = make_faces(tmp_path / "faces", identities=2, images=2)
    with pytest.raises(UserError, match="fewer than one batch"):
        train_gan(data, tmp_path / "g.pt", family="dcgan", epochs=1, batch_size=8, lr=2e-4, latent=8, width=8,
                  condition=None, dedup_distance=0)


def _two_people(root: Path) -> tuple[Path, Path]:
    """Two one-person folders of 20 crops each (flat, as edge align writes a video's frames)."""
    faces = make_faces(root / "all", identities=2, images=20)
    return faces / "person0", faces / "person1"


def test_a_face_swap_trains_on_two_people_and_scores_the_swap_with_the_verifier(tmp_path, capsys):
    a, b = _two_people(tmp_path)
    out = tmp_path / "swap.pt"
    assert main(["generator", "--config", "faceswap", "--data", str(a), "--swap_with", str(b), "--out", str(out),
                 "epochs=2", "batch_size=8", "latent=16", "dedup_distance=0", "--threads", "1"]) == 0
    assert "treat this run as a smoke test" in capsys.readouterr().err
    checkpoint = load_checkpoint(out)
    assert checkpoint.architecture == "faceswap_autoencoder" and checkpoint.config["swap_to"] == 1
    metrics = checkpoint.metrics
    assert metrics["faces"] == [20, 20] and metrics["psnr_a"] > 0 and metrics["psnr_b"] > 0
    assert 0 <= metrics["swap_a_to_b_nearer_b"] <= 1 and 0 <= metrics["real_a_nearer_own"] <= 1
    assert metrics["swap_features"].startswith("dlib's face descriptor")
    model = checkpoint.build_model()
    x = torch.rand(2, 3, 64, 64)
    torch.testing.assert_close(model(x), model.decode(model.encode(x), 1))        # the exported graph: A -> B
    assert (tmp_path / "swap_swaps.png").exists() and (tmp_path / "swap_last.pt").exists()
    assert main(["eval-generator", "--ckpt", str(out), "--real", str(a)]) == 2
    assert "give the second person's faces with --swap_with" in capsys.readouterr().err
    assert main(["eval-generator", "--ckpt", str(out), "--real", str(a), "--swap_with", str(b)]) == 0
    figures = json.loads((tmp_path / "swap_eval.json").read_text())
    assert 0 <= figures["swap_a_to_b_nearer_b"] <= 1 and "swap(A->B) nearer B in" in capsys.readouterr().out


def test_a_face_swap_without_a_second_person_or_with_the_same_one_is_refused_before_any_work(tmp_path, capsys):
    a, b = _two_people(tmp_path)
    common = ["generator", "--config", "faceswap", "--data", str(a), "--out", str(tmp_path / "s.pt")]
    for extra, message in (([], "a face swap needs two people"),
                           (["--swap_with", str(a)], "is --data itself"),
                           (["--swap_with", str(b), "--config", "vae"], "--swap_with is for the face swap")):
        assert main([*common, *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    few = make_faces(tmp_path / "few", identities=1, images=3) / "person0"
    assert main([*common, "--swap_with", str(few)]) == 2
    assert "needs at least 16 per person" in capsys.readouterr().err


def test_align_takes_a_video_and_writes_its_frames_as_one_persons_folder(tmp_path):
    import cv2
    from synthetic_faces import identities, render_face, sample_nuisance

    from edge.faces.dataprep import align_folder
    from edge.faces.packaged_detector import load_packaged_detector

    face, _ = render_face(identities(1)[0], sample_nuisance(np.random.default_rng(0)), size=160)
    video = tmp_path / "visitor.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for shift in range(4):
        frame = np.full((240, 320, 3), 120, np.uint8)
        frame[40:200, 60 + 10 * shift:220 + 10 * shift] = face
        writer.write(frame)
    writer.release()
    stats = align_folder(video, tmp_path / "people", load_packaged_detector(), progress=False)
    assert stats.images == 4 and stats.aligned == 4
    assert sorted(p.name for p in (tmp_path / "people" / "visitor").iterdir())[0] == "frame_000000.png"
    (tmp_path / "notes.txt").write_text("not a video")
    with pytest.raises(UserError, match="neither a folder of images nor a video"):
        align_folder(tmp_path / "notes.txt", tmp_path / "x", load_packaged_detector())


def test_a_stacked_grey_autoencoder_of_four_layers_pretrains_each_layer_then_trains_end_to_end(tmp_path, capsys):
    data = make_faces(tmp_path / "faces", identities=3, images=6)
    out = tmp_path / "stacked.pt"
    assert main(["generator", "--data", str(data), "--out", str(out), "--stacked_epochs", "1", "--colour", "grey",
                 "--channels", "8,16,32,64", "epochs=1", "batch_size=8", "dedup_distance=0", "--threads", "1"]) == 0
    checkpoint = load_checkpoint(out)
    assert checkpoint.config["channels"] == [8, 16, 32, 64] and checkpoint.config["in_channels"] == 1
    assert checkpoint.preprocessing.colour == "GREY" and checkpoint.preprocessing.shape == (1, 1, 64, 64)
    metrics = checkpoint.metrics
    assert metrics["variant"] == "stacked" and len(metrics["stacked_layer_losses"]) == 4
    model = checkpoint.build_model()
    assert model(torch.rand(2, 1, 64, 64)).shape == (2, 1, 64, 64)
    assert "stacked layer 4/4" in capsys.readouterr().err
    for bad, message in ((["channels=[16, -1]"], "setting channels must be a list of positive whole numbers"),
                         (["--channels", "8,16,32,64,128,256,512"], "a 64x64 face allows at most 6"),
                         (["colour=sepia"], "colour must be one of rgb, grey")):
        assert main(["generator", "--data", str(data), "--out", str(tmp_path / "x.pt"), *bad]) == 2
        assert message in capsys.readouterr().err


def test_grey_faces_are_one_channel_in_and_grey_in_all_three_out():
    from edge.runtime.preprocess import generator_input_spec, output_to_images, prepare_batch

    spec = generator_input_spec(colour="GREY")
    face = np.zeros((112, 112, 3), np.uint8)
    face[..., 2] = 255                                                  # pure red, BGR
    batch = prepare_batch([face], spec)
    assert batch.shape == (1, 1, 64, 64) and abs(float(batch.mean()) - 76 / 255) < 0.01   # BT.601 luma of red
    back = output_to_images(batch, spec)[0]
    assert back.shape == (64, 64, 3) and (back[..., 0] == back[..., 2]).all()


def test_the_frechet_distance_can_use_a_local_onnx_network_such_as_fids_inception(tmp_path, capsys):
    """Any ONNX image network stands in for the Inception v3 file a user may have: RGB in [-1, 1] at its input
    side (299 when dynamic), its first output flattened; the report names the file."""
    data = make_faces(tmp_path / "faces", identities=4, images=6)
    generator = tmp_path / "g.pt"
    assert main(["generator", "--data", str(data), "--out", str(generator), "epochs=1", "batch_size=8",
                 "dedup_distance=0", "--threads", "1"]) == 0
    pool = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, 2), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1))
    network = tmp_path / "inception_like.onnx"
    torch.onnx.export(pool.eval(), (torch.zeros(1, 3, 299, 299),), str(network), input_names=["images"],
                      dynamic_axes={"images": {0: "n"}}, dynamo=False)
    capsys.readouterr()
    assert main(["eval-generator", "--ckpt", str(generator), "--real", str(data), "--features", str(network)]) == 0
    figures = json.loads((tmp_path / "g_eval.json").read_text())
    assert figures["frechet_features"].startswith("inception_like.onnx (ONNX, sha256 ")
    assert "299 px RGB in [-1, 1]" in figures["frechet_features"] and figures["frechet_distance"] >= 0
    (tmp_path / "broken.onnx").write_bytes(b"not a network")
    assert main(["eval-generator", "--ckpt", str(generator), "--real", str(data), "--features",
                 str(tmp_path / "broken.onnx")]) == 2
    assert "is not an ONNX network onnxruntime can load" in capsys.readouterr().err


def test_a_face_swap_takes_a_persons_video_and_aligns_its_frames_itself(tmp_path):
    import cv2
    from synthetic_faces import identities, render_face, sample_nuisance

    person = identities(1, first_seed=5)[0]
    rng = np.random.default_rng(0)
    video = tmp_path / "alice.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for _ in range(20):
        face, _ = render_face(person, sample_nuisance(rng), size=160)
        frame = np.full((240, 320, 3), 110, np.uint8)
        frame[40:200, 80:240] = face
        writer.write(frame)
    writer.release()
    other = make_faces(tmp_path / "b", identities=1, images=20) / "person0"
    out = tmp_path / "swap.pt"
    assert main(["generator", "--config", "faceswap", "--data", str(video), "--swap_with", str(other),
                 "--out", str(out), "epochs=1", "batch_size=8", "latent=16", "dedup_distance=0", "--threads", "1"]) == 0
    metrics = load_checkpoint(out).metrics
    assert metrics["people"][0] == str(video) and metrics["faces"][0] == 20
