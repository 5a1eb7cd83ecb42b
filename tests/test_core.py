"""Stage configs, run folders, teacher targets, resume: the pieces between the notebooks and the losses."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from dapt.pipeline import config
from dapt.core import records as runs
from dapt.core import files
from dapt.training.checkpoint import load_model, save_model
from dapt.core.errors import DaptError
from dapt.models.nets import create_model
from dapt.training.optim import build_optimizer, build_scheduler
from dapt.data.augment import make_views
from dapt.training.teacher_cache import TeacherTargets


def test_from_namespace_validates_notebook_values():
    namespace = {f.name: f.default for f in dataclasses.fields(config.TeacherConfig)}
    namespace["init"] = "pretrain"
    with pytest.raises(config.ConfigError, match="init: 'pretrain' is not one of: fr, lp, ft"):
        config.from_namespace(config.TeacherConfig, namespace)
    del namespace["init"]
    with pytest.raises(config.ConfigError, match="lacks init"):
        config.from_namespace(config.TeacherConfig, namespace)


def test_distiller_settings_are_checked_with_the_file_named():
    with pytest.raises(config.ConfigError, match="f.yaml: .*kd_T"):
        config.validate(config.DistillConfig, {"kd_T": -1.0}, "f.yaml")
    with pytest.raises(config.ConfigError, match="projector: 'mlp9' is not one of: mocov2, simclr"):
        config.validate(config.DistillConfig, {"projector": "mlp9"}, "f.yaml")


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a b", "x..y"])
def test_run_names_cannot_escape_runs(name):
    with pytest.raises(DaptError):
        runs.run_dir("study", name)


def test_atomic_write_leaves_no_temp_and_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "m.json"
    files.atomic_write_json(target, {"a": 1})
    with pytest.raises(ValueError):
        files.atomic_write_json(target, {"a": float("nan")})  # not valid JSON: refused, old file intact
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]


def test_run_record_status_moves_to_failed_with_the_error(tmp_path):
    record = runs.RunRecord.start(tmp_path / "r", "teacher", {"x": 1})
    assert json.loads((tmp_path / "r/metrics.json").read_text())["status"] == "running"
    with pytest.raises(RuntimeError):
        with record.recording():
            raise RuntimeError("boom")
    metrics = json.loads((tmp_path / "r/metrics.json").read_text())
    assert metrics["status"] == "failed" and metrics["error"] == "RuntimeError: boom"


def test_model_file_round_trip_and_corrupt_file(tmp_path):
    model = create_model("resnet18", 4)
    save_model(tmp_path / "model.pt", model, {"model": "resnet18", "num_classes": 4, "image_size": 16})
    loaded, meta = load_model(tmp_path / "model.pt")
    assert meta["num_classes"] == 4
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
        assert torch.equal(a, b)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DaptError, match="corrupt"):
        load_model(tmp_path / "bad.pt")


def test_schedulers_shape_the_learning_rate():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = build_optimizer("sgd", [{"params": [p]}], lr=1.0, weight_decay=0.0)
    cosine = build_scheduler("cosine", opt, steps_per_epoch=10, epochs=2)
    lrs = []
    for _ in range(20):
        opt.step()
        cosine.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs[9] == pytest.approx(0.5) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    opt = build_optimizer("adamw", [{"params": [p]}], lr=0.3, weight_decay=0.2)
    assert opt.param_groups[0]["lr"] == 0.3 and opt.param_groups[0]["weight_decay"] == 0.2
    step = build_scheduler("step", opt, steps_per_epoch=5, epochs=9, step_size=3, step_gamma=0.1)
    for _ in range(15):
        opt.step()
        step.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.3 * 0.1)


def test_cached_teacher_targets_equal_live_ones_and_are_reused(tmp_path):
    torch.manual_seed(0)
    teacher = create_model("resnet18", 10).eval()
    x = torch.randint(0, 256, (12, 3, 16, 16), dtype=torch.uint8)
    views = make_views(12, 16, 3, seed=5, augment=True)
    key = ("teacher-digest", "toy", 16, 5)
    cached = TeacherTargets(teacher, 24, x, views, cache_dir=tmp_path, key_parts=key, channels_last=False)
    live = TeacherTargets(teacher, 24, x, views, cache_dir=None, key_parts=(), channels_last=False)
    assert cached.cache_dir is not None and any(tmp_path.iterdir())  # the cached one wrote its views
    index = torch.tensor([7, 0, 3])
    for view in range(3):
        (zc, fc), (zl, fl) = cached.get(view, index), live.get(view, index)
        torch.testing.assert_close(zc, zl, atol=2e-2, rtol=1e-2)  # fp16 logits
        torch.testing.assert_close(fc, fl, atol=2e-2 * float(fl.abs().max()), rtol=0)  # int8 features
    assert not torch.equal(cached.get(0, index)[0], cached.get(1, index)[0]), "views must differ"
    assert len(list(tmp_path.glob("logits-*.f16"))) == len(list(tmp_path.glob("features-*.i8"))) == 3
    everything = torch.arange(12)
    again = TeacherTargets(teacher, 24, x, views, cache_dir=tmp_path, key_parts=key, channels_last=False)
    assert torch.equal(again.get(2, everything)[1], cached.get(2, everything)[1])
    other = TeacherTargets(teacher, 24, x, make_views(12, 16, 3, seed=6, augment=True), cache_dir=tmp_path,
                           key_parts=key, channels_last=False)
    assert not torch.equal(other.get(0, everything)[0], cached.get(0, everything)[0])
    assert len(list(tmp_path.glob("logits-*.f16"))) == 6


def test_wandb_offline_logs_inside_the_run_folder_and_disabled_writes_nothing(tmp_path):
    from dapt.core.tracking import Tracker

    quiet = Tracker("disabled", tmp_path / "off", "r", {})
    quiet.log({"test_acc": 0.5}, step=1)
    quiet.finish()
    assert not (tmp_path / "off").exists()

    tracker = Tracker("offline", tmp_path / "on", "r", {"lr": 0.1})
    tracker.log({"test_acc": 0.5, "note": "skipped: not a number"}, step=1)
    tracker.finish()
    [run] = (tmp_path / "on" / "wandb").glob("offline-run-*")
    assert list(run.glob("run-*.wandb")), "wandb wrote no offline record"


def test_a_teacher_whose_outputs_overflow_the_fp16_cache_is_refused(tmp_path):
    teacher = create_model("resnet18", 10).eval()
    with torch.no_grad():
        teacher.head.weight.mul_(1e7)  # a diverged teacher: logits far beyond fp16's 65504
    x = torch.randint(0, 256, (6, 3, 16, 16), dtype=torch.uint8)
    with pytest.raises(DaptError, match="teacher run is broken"):
        TeacherTargets(teacher, 16, x, make_views(6, 16, 1, seed=0, augment=True), cache_dir=tmp_path,
                       key_parts=("k",), channels_last=False)
    assert not list(tmp_path.iterdir()), "a broken cache must not be written, nor its temp file left"
