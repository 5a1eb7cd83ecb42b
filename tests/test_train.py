"""The training loops on tiny digits: teacher inits, resume, distillation against a saved teacher."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from dapt.pipeline import config
from dapt.core import records as runs
from dapt.data import imageset as D
from dapt.stages.distill import distill
from dapt.stages.teacher import build_teacher, train_teacher
from dapt.training.checkpoint import load_teacher
from dapt.core.errors import DaptError
from dapt.training import agreement as A
from dapt.training.loop import predict


@pytest.fixture(scope="module")
def digits():
    return D.load_dataset("digits", 16, train_subset=200, seed=0, validation=100)


def teacher_cfg(tmp_path, **values):
    base = {"dataset": "digits", "image_size": 16, "train_subset": 200, "epochs": 1, "batch_size": 50,
            "model": "resnet18", "init": "fr", "run_dir": str(tmp_path / "teacher")}
    return config.validate(config.TeacherConfig, {**base, **values})


def test_linear_probe_changes_only_the_head_and_keeps_bn_statistics(tmp_path, digits):
    cfg = teacher_cfg(tmp_path, model="efficientnet_lite0", init="lp", lr=0.01, optimizer="adamw")
    before = {k: v.clone() for k, v in build_teacher(cfg, digits.num_classes).state_dict().items()}
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg))
    after = train_teacher(cfg, digits, record).state_dict()
    body = [k for k in before if not k.startswith("head.")]
    assert any("running_mean" in k for k in body)
    assert all(torch.equal(before[k], after[k]) for k in body), "the probed body (and its BN stats) changed"
    assert not torch.equal(before["head.weight"], after["head.weight"])


def test_fine_tune_trains_head_at_ten_times_the_body_lr(tmp_path, digits, monkeypatch):
    seen = {}
    import dapt.training.trainer as T

    real = T.build_optimizer

    def spy(name, groups, lr, wd):
        optimizer = real(name, groups, lr, wd)
        seen["lrs"] = [g["lr"] for g in optimizer.param_groups]
        seen["sizes"] = [len(g["params"]) for g in optimizer.param_groups]
        return optimizer

    monkeypatch.setattr(T, "build_optimizer", spy)
    cfg = teacher_cfg(tmp_path, model="efficientnet_lite0", init="ft", lr=0.001, scheduler="none")
    train_teacher(cfg, digits, runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg)))
    assert seen["lrs"] == [0.001, pytest.approx(0.01)]
    assert seen["sizes"][1] == 2  # head weight and bias


@pytest.mark.slow  # trains models for seconds
def test_resume_continues_exactly_where_the_run_stopped(tmp_path, digits, monkeypatch):
    straight = teacher_cfg(tmp_path, epochs=2, run_dir=str(tmp_path / "straight"))
    full = train_teacher(straight, digits, runs.RunRecord.start(straight.run_dir, "teacher", config.as_dict(straight)))

    import dapt.training.trainer as T

    real_save = T.atomic_save

    def save_then_stop(obj, path):  # Ctrl-C right after the epoch-1 checkpoint
        real_save(obj, path)
        if str(path).endswith("last.pt") and obj["epoch"] == 1:
            raise KeyboardInterrupt

    cfg = teacher_cfg(tmp_path, epochs=2, run_dir=str(tmp_path / "split"))
    monkeypatch.setattr(T, "atomic_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(cfg, digits, runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg)))
    assert json.loads((tmp_path / "split" / "metrics.json").read_text())["status"] == "interrupted"
    monkeypatch.setattr(T, "atomic_save", real_save)

    resumed_cfg = teacher_cfg(tmp_path, epochs=2, resume=True, run_dir=cfg.run_dir)
    resumed = train_teacher(resumed_cfg, digits,
                            runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(resumed_cfg), resume=True))
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    history = json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in history] == [1, 2]


@pytest.mark.slow  # trains models for seconds
def test_resume_from_a_mid_epoch_checkpoint_matches_the_uninterrupted_run(tmp_path, digits, monkeypatch):
    """checkpoint_every: a run stopped after a mid-epoch checkpoint resumes at that very step: the
    epoch's remaining batches, its augmentation stream, dropout's global RNG, optimizer, scheduler and
    the epoch's running sums all continue, so weights and history equal a run never interrupted
    (which wrote no mid-epoch checkpoints: checkpointing itself changes nothing)."""
    import dapt.training.trainer as T

    def cfg(name, **values):  # MobileNetV2: dropout in the head; augment: the teacher's generator is used
        return teacher_cfg(tmp_path, model="mobilenet_v2", epochs=2, run_dir=str(tmp_path / name), **values)

    straight = cfg("straight")
    full = train_teacher(straight, digits, runs.RunRecord.start(straight.run_dir, "teacher", config.as_dict(straight)))
    real_save, saved = T.atomic_save, []

    def save_then_stop(obj, path):  # Ctrl-C right after the checkpoint at step 2 of epoch 2
        real_save(obj, path)
        saved.append((obj["epoch"], obj["step"]))
        if (obj["epoch"], obj["step"]) == (1, 2):
            raise KeyboardInterrupt

    split = cfg("split", checkpoint_every=3)
    monkeypatch.setattr(T, "atomic_save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_teacher(split, digits, runs.RunRecord.start(split.run_dir, "teacher", config.as_dict(split)))
    monkeypatch.setattr(T, "atomic_save", real_save)
    # 4 steps per epoch: global steps 3 and 6 are mid-epoch, 4 is an epoch end
    assert saved == [(0, 3), (1, 0), (1, 2)]
    assert len(json.loads((tmp_path / "split" / "metrics.json").read_text())["history"]) == 1

    again = cfg("split", checkpoint_every=3, resume=True)
    record = runs.RunRecord.start(again.run_dir, "teacher", config.as_dict(again), resume=True)
    resumed = train_teacher(again, digits, record)
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    straight_history = json.loads((tmp_path / "straight" / "metrics.json").read_text())["history"]
    assert json.loads((tmp_path / "split" / "metrics.json").read_text())["history"] == straight_history


@pytest.mark.slow  # trains models for seconds
def test_resume_refuses_a_checkpoint_of_another_epoch_length(tmp_path, digits):
    first = teacher_cfg(tmp_path, checkpoint_every=1)
    train_teacher(first, digits, runs.RunRecord.start(first.run_dir, "teacher", config.as_dict(first)))
    other = teacher_cfg(tmp_path, epochs=2, batch_size=40, resume=True)
    record = runs.RunRecord.start(other.run_dir, "teacher", config.as_dict(other), resume=True)
    with pytest.raises(DaptError, match="written with 4 steps per epoch, this run has 5: .*without resume"):
        train_teacher(other, digits, record)


@pytest.mark.slow  # trains models for seconds
def test_resume_refuses_a_checkpoint_whose_epochs_were_evaluated_on_test_images(tmp_path, digits):
    first = teacher_cfg(tmp_path)
    train_teacher(first, digits, runs.RunRecord.start(first.run_dir, "teacher", config.as_dict(first)))
    last = tmp_path / "teacher" / "last.pt"
    state = torch.load(last, weights_only=True)
    state["history"] = [{("test_acc" if k == "val_acc" else k): v for k, v in h.items()} for h in state["history"]]
    torch.save(state, last)  # as written before the validation set: its best is a test accuracy
    other = teacher_cfg(tmp_path, epochs=2, resume=True)
    record = runs.RunRecord.start(other.run_dir, "teacher", config.as_dict(other), resume=True)
    with pytest.raises(DaptError, match="written when the evaluated epochs read test images, .*without resume"):
        train_teacher(other, digits, record)


@pytest.mark.slow  # trains models for seconds
def test_distill_checks_the_teacher_and_leaves_it_untouched(tmp_path, digits):
    cfg = teacher_cfg(tmp_path)
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg))
    train_teacher(cfg, digits, record)
    with pytest.raises(DaptError, match="not done"):
        load_teacher(cfg.run_dir, digits)
    record.finish()
    teacher, meta = load_teacher(cfg.run_dir, digits)
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}

    other = D.load_dataset("digits", 16, train_subset=200, seed=0)
    other.name = "fashion_mnist"
    with pytest.raises(DaptError, match="trained on digits"):
        load_teacher(cfg.run_dir, other)

    dcfg = config.validate(config.DistillConfig, {
        "dataset": "digits", "image_size": 16, "train_subset": 200, "epochs": 1, "batch_size": 50,
        "student": "mobilenet_v2", "teacher": cfg.run_dir, "distiller": "srrl", "teacher_cache": "off",
        "run_dir": str(tmp_path / "student")})
    drecord = runs.RunRecord.start(dcfg.run_dir, "distill", config.as_dict(dcfg))
    model_file = Path(cfg.run_dir) / "model.pt"
    before = model_file.read_bytes()
    result = distill(dcfg, digits, drecord)
    assert model_file.read_bytes() == before, "distillation wrote to the teacher's checkpoint"
    after, _ = load_teacher(cfg.run_dir, digits)
    assert all(torch.equal(frozen[k], v) for k, v in after.state_dict().items())
    assert result.student_logits.shape == (len(digits.test_y), digits.num_classes)
    metrics = drecord.metrics
    assert 0.0 <= metrics["agreement"] <= 1.0 and metrics["cka"] is not None
    assert metrics["teacher_run_test_acc"] == pytest.approx(record.metrics["test_acc"], rel=1e-5)
    assert metrics["teacher_image_size"] == 16 and metrics["val_images"] == 100
    assert metrics["teacher_val_acc"] == pytest.approx(A.accuracy(predict(teacher, digits.val_x)[0], digits.val_y))
    assert all({"val_acc", "val_agreement", "val_kl"} <= set(h) and "test_acc" not in h for h in metrics["history"])

    model_file.unlink()  # a fresh clone holds the report of a teacher run, not its checkpoint
    with pytest.raises(DaptError, match="no model.pt .*train it first"):
        load_teacher(cfg.run_dir, digits)


def test_a_notebook_cell_is_five_calls_from_a_distillers_loss(tmp_path, digits, monkeypatch):
    """The distill notebook's cell calls ``distill.distill``; from that call to the distiller's ``losses`` is at most
    5 calls, counted on the real stack of a training step. torch's ``nn.Module.__call__`` frames are left out: they
    dispatch a module call to its ``forward``, they are not a function a reader follows. The distiller is called
    directly, not through a DDP wrapper, so several processes take the same path."""
    import sys

    from dapt.distillers.none import LabelsOnly
    from dapt.stages import distill as stage

    class Measured(Exception):
        pass

    chains, module_call = [], torch.nn.modules.module.__file__

    def losses(self, *args):  # stands for LabelsOnly.losses: its own frame is the chain's last
        frame, names = sys._getframe(), []
        while frame is not None and frame.f_code is not stage.distill.__code__:
            if frame.f_code.co_filename != module_call:
                names.append(frame.f_code.co_name)
            frame = frame.f_back
        chains.append(["distill", *reversed(names)] if frame is not None else names)
        raise Measured  # one step is enough

    monkeypatch.setattr(LabelsOnly, "losses", losses)
    cfg = config.validate(config.DistillConfig, {
        "dataset": "digits", "image_size": 16, "train_subset": 200, "epochs": 1, "batch_size": 50,
        "student": "resnet18", "distiller": "none", "run_dir": str(tmp_path / "student")})
    with pytest.raises(Measured):
        stage.distill(cfg, digits, runs.RunRecord.start(cfg.run_dir, "distill", config.as_dict(cfg)))
    chain = chains[0]
    assert chain[0] == "distill" and chain[-1] == "losses", f"losses was not reached from distill: {chain}"
    assert len(chain) <= 5, f"{len(chain)} calls from the notebook cell to the loss: " + " → ".join(chain)


def test_precise_bn_sets_the_plain_average_and_spares_frozen_layers():
    from torch import nn

    from dapt.training.loop import recalibrate_batchnorm

    class Probe(nn.Module):  # identity conv so that the BN sees the pixels themselves
        def __init__(self):
            super().__init__()
            self.trained, self.frozen = nn.BatchNorm2d(3), nn.BatchNorm2d(3)

        def features(self, x):
            return self.frozen(self.trained(x))

    model = Probe().train()
    model.frozen.eval()
    frozen_before = model.frozen.running_mean.clone()
    images = torch.randint(0, 256, (10, 3, 4, 4), dtype=torch.uint8)
    assert recalibrate_batchnorm(model, images, batch_size=5, channels_last=False) == 1
    x = images.double() / 255
    halves = x.split(5)
    expected_mean = torch.stack([h.mean(dim=(0, 2, 3)) for h in halves]).mean(0)
    expected_var = torch.stack([h.var(dim=(0, 2, 3), unbiased=True) for h in halves]).mean(0)
    torch.testing.assert_close(model.trained.running_mean.double(), expected_mean, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(model.trained.running_var.double(), expected_var, atol=1e-6, rtol=1e-5)
    assert model.trained.momentum == 0.1, "the layer's own momentum must come back"
    assert torch.equal(model.frozen.running_mean, frozen_before)


@pytest.mark.slow  # trains models for seconds
def test_eval_every_evaluates_every_nth_epoch_and_the_last_and_picks_best_among_them(tmp_path, digits):
    cfg = teacher_cfg(tmp_path, epochs=5, eval_every=2, eval_subset=100)
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg))
    model = train_teacher(cfg, digits, record)
    metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    history = metrics["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert [h["epoch"] for h in history if "val_acc" in h] == [2, 4, 5]
    assert all("train_loss" in h and "test_acc" not in h for h in history)
    evaluated = {h["epoch"]: h["val_acc"] for h in history if "val_acc" in h}
    assert metrics["best_epoch"] in evaluated and metrics["best_val_acc"] == max(evaluated.values())
    assert metrics["val_images"] == 100 and metrics["test_images"] == len(digits.test_y)
    logits, _ = predict(model, digits.test_x, channels_last=cfg.channels_last)
    assert metrics["test_acc"] == pytest.approx(A.accuracy(logits, digits.test_y), abs=1e-6)  # final: all images


@pytest.mark.parametrize("values, message", [
    ({"eval_subset": "half"}, "eval_subset='half' must be a whole number of validation images (at least 1), auto"),
    ({"eval_subset": 0}, "eval_subset=0 must be a whole number"),
    ({"eval_subset": True}, "eval_subset must be an integer or a string or null, got True"),
    ({"eval_every": 0}, "eval_every=0 must be"),
])
def test_bad_evaluation_settings_are_one_config_error(tmp_path, values, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        teacher_cfg(tmp_path, **values)


def test_evaluation_settings_accept_auto_null_and_numbers(tmp_path):
    assert teacher_cfg(tmp_path).eval_subset == "auto" and teacher_cfg(tmp_path).eval_every == 1
    assert teacher_cfg(tmp_path, eval_subset=None).eval_subset is None
    assert teacher_cfg(tmp_path, eval_subset=500.0, eval_every=3).eval_subset == 500


def test_subset_seed_keeps_one_training_subset_across_seeds(tmp_path):
    from dapt.training.loop import load_data

    def subset(**values):
        cfg = config.validate(config.DistillConfig, {"dataset": "digits", "image_size": 8, "train_subset": 100,
                                                     "data_root": str(tmp_path), "distiller": "none", **values})
        return load_data(cfg).train_x

    assert not torch.equal(subset(seed=0), subset(seed=1))  # by default the subset follows the seed
    assert torch.equal(subset(seed=1, subset_seed=0), subset(seed=0))
    assert torch.equal(subset(seed=2, subset_seed=0), subset(seed=0, subset_seed=0))
