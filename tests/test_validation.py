"""The validation images (``dapt.data.imageset.validation_index``): drawn from the training split, never the test
set; outside the training subset when it leaves images outside, disjoint from a holdout draw of the same subset and
seed, stratified, sized by ``eval_subset``; a stratified split that shrinks the training images when it leaves
none; the same images for the same subset and seed; and a training run that reads them every evaluated epoch,
keeps best.pt on them and reads the test set once."""
from __future__ import annotations

import json

import pytest
import torch

from dapt.core import records as runs
from dapt.data import imageset as D
from dapt.pipeline import config
from dapt.stages import holdout
from dapt.stages.teacher import train_teacher
from dapt.training import agreement as A
from dapt.training.checkpoint import load_model
from dapt.training.loop import load_data, predict


@pytest.fixture(scope="module")
def full():
    return D.load_dataset("digits", 8)  # 1,437 training images, 10 classes of 139 to 146


def test_outside_the_subset_the_validation_images_are_stratified_and_leave_the_training_images_alone(full):
    ds = D.load_dataset("digits", 8, train_subset=300, seed=0, validation=200)
    plain = D.load_dataset("digits", 8, train_subset=300, seed=0)
    assert torch.equal(ds.train_index, plain.train_index) and torch.equal(ds.train_x, plain.train_x)
    assert ds.val_source == D.VALIDATION_OUTSIDE == "training images outside train_subset"
    assert len(ds.val_y) == 200 and not torch.isin(ds.val_index, ds.train_index).any()
    assert torch.equal(ds.val_x, full.train_x[ds.val_index]) and torch.equal(ds.val_y, full.train_y[ds.val_index])
    assert ds.val_x.dtype == torch.uint8 and ds.val_y.dtype == torch.int64
    # per class in proportion to the images outside the subset: 200 of 1,137, each class 19 or 20
    outside = torch.bincount(full.train_y, minlength=10) - torch.bincount(ds.train_y, minlength=10)
    per_class = torch.bincount(ds.val_y, minlength=10)
    assert int(per_class.sum()) == 200 and ((per_class - outside * 200 / 1137).abs() < 1).all()
    # never the test set: the test images are the loader's own, all of them
    assert torch.equal(ds.test_x, full.test_x) and torch.equal(ds.test_y, full.test_y)


def test_validation_and_holdout_draws_of_one_subset_and_seed_never_meet(full):
    for seed in (0, 3):
        ds = D.load_dataset("digits", 8, train_subset=300, seed=seed, validation="auto")
        assert len(ds.val_y) == 1000  # auto: max(1,000, 300 training images), of the 1,137 outside
        drawn = torch.cat(holdout.draw(full.train_y, 300, seed, 10, full.classes))
        assert not torch.isin(drawn, ds.val_index).any(), "holdout takes each class's first images, validation its last"
        assert not torch.isin(drawn, ds.train_index).any()
        # the validation set is the back of the very order whose front holdout takes
        order = D.outside_order(full.train_y, ds.train_index, seed, 10)
        for c, members in enumerate(order):
            mine = ds.val_index[ds.val_y == c]
            assert torch.equal(members[len(members) - len(mine):].sort().values, mine)


def test_sizes_follow_eval_subset_and_the_draw_is_deterministic(full):
    sizes = {e: len(D.load_dataset("digits", 8, train_subset=300, validation=e).val_y) for e in (50, "auto", None)}
    assert sizes == {50: 50, "auto": 1000, None: 1137}  # null: every training image outside the subset
    assert D.validation_size("auto", 54_000, 6000) == 6000  # as many as the training images: <= 1/3 of an epoch
    assert D.validation_size("auto", 59_400, 600) == 1000  # the floor: a standard error near 1.3 points
    assert D.validation_size("auto", 300, 50) == 300 and D.validation_size(None, 300, 50) == 300
    one, again = (D.load_dataset("digits", 8, train_subset=300, seed=2, validation=100) for _ in range(2))
    assert torch.equal(one.val_index, again.val_index)
    other = D.load_dataset("digits", 8, train_subset=300, seed=1, validation=100)
    assert not torch.equal(one.val_index, other.val_index)  # the subset seed draws it


def test_without_images_outside_the_subset_a_stratified_split_leaves_training(full):
    for train_subset in (None, 1437, 5000):
        ds = D.load_dataset("digits", 8, train_subset=train_subset, seed=0, validation="auto")
        assert ds.val_source == D.VALIDATION_SPLIT and len(ds.val_y) == 144  # 10% of 1,437
        assert len(ds.train_y) == 1437 - 144 and not torch.isin(ds.val_index, ds.train_index).any()
        assert torch.equal(torch.cat([ds.train_index, ds.val_index]).sort().values, torch.arange(1437))
        assert torch.equal(ds.train_x, full.train_x[ds.train_index])
        assert torch.bincount(ds.val_y, minlength=10).tolist() == [14, 15, 14, 15, 15, 15, 14, 14, 14, 14]
    assert len(D.load_dataset("digits", 8, validation=None).val_y) == 144  # null: 10% too
    split = D.load_dataset("digits", 8, validation=30, seed=4)
    assert len(split.val_y) == 30 and len(split.train_y) == 1407
    assert torch.equal(split.val_index, D.load_dataset("digits", 8, validation=30, seed=4).val_index)


def test_a_generate_run_draws_no_validation_set():
    cfg = config.validate(config.GenerateConfig, {"dataset": "digits", "image_size": 8, "train_subset": None})
    ds = load_data(cfg)
    assert ds.val_x is None and ds.val_source is None and len(ds.train_y) == 1437  # the ddpm learns from all


@pytest.mark.slow  # trains a teacher
def test_a_teacher_run_selects_on_validation_images_and_reads_the_test_set_once(tmp_path, monkeypatch):
    import dapt.stages.teacher as T

    cfg = config.validate(config.TeacherConfig, {
        "dataset": "digits", "image_size": 16, "train_subset": 200, "epochs": 4, "eval_every": 1,
        "eval_subset": 100, "batch_size": 50, "model": "resnet18", "init": "fr", "optimizer": "sgd", "lr": 0.05,
        "run_dir": str(tmp_path / "teacher")})
    ds = load_data(cfg)
    reads = []

    def counting_predict(model, x, **kwargs):
        reads.append("test" if x is ds.test_x else "validation" if x is ds.val_x else "other")
        return predict(model, x, **kwargs)

    monkeypatch.setattr(T, "predict", counting_predict)
    record = runs.RunRecord.start(cfg.run_dir, "teacher", config.as_dict(cfg))
    train_teacher(cfg, ds, record)
    record.finish()
    assert reads == ["validation"] * 4 + ["test"], "the test set is read once, after the last epoch"
    metrics = json.loads((tmp_path / "teacher" / "metrics.json").read_text())
    history = metrics["history"]
    assert not any("test_acc" in h for h in history) and all("val_acc" in h for h in history)
    assert (metrics["val_images"], metrics["val_source"]) == (100, D.VALIDATION_OUTSIDE)
    assert "eval_images" not in metrics and "best_eval_acc" not in metrics
    accs = [h["val_acc"] for h in history]
    assert metrics["best_val_acc"] == max(accs) and metrics["best_epoch"] == accs.index(max(accs)) + 1
    # best.pt is the model of that epoch: its validation accuracy is the best one
    best, _ = load_model(tmp_path / "teacher" / "best.pt")
    logits, _ = predict(best, ds.val_x, channels_last=cfg.channels_last)
    assert A.accuracy(logits, ds.val_y) == pytest.approx(metrics["best_val_acc"], abs=1e-6)
