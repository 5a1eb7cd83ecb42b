"""The ``holdout`` generator: real training images outside the run's ``train_subset``, as an ideal generator.

The draw (balanced, seeded, disjoint from the subset a teacher or distill run with the same
``train_subset`` and subset seed trains on, refused when a class has too few images outside it), the
generate stage writing it in the dapt-synthetic-v1 format, the distill side's overlap check, and a
study executed through papermill: teacher, holdout set judged by it, a distill run on it.
"""
from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dapt.core.errors import DaptError
from dapt.core.records import RunRecord
from dapt.data import imageset as D
from dapt.data.synthetic import check_outside_subset, load_synthetic
from dapt.pipeline import config
from dapt.stages import generate, holdout
from dapt.stages.distill import training_set, warn_if_the_teacher_may_know_them
from dapt.training import loop as train



@pytest.fixture(scope="module")
def full():
    return D.load_dataset("digits", 8)


def test_the_draw_is_balanced_seeded_and_outside_the_subset_a_run_trains_on(full):
    chosen = holdout.draw(full.train_y, 300, 0, 20, full.classes)
    assert [len(c) for c in chosen] == [20] * 10
    for label, indices in enumerate(chosen):
        assert (full.train_y[indices] == label).all() and len(set(indices.tolist())) == 20
    drawn = torch.cat(chosen)
    # the subset a teacher or distill run of train_subset 300 and subset seed 0 trains on
    distill = config.validate(config.DistillConfig, {"dataset": "digits", "image_size": 8, "train_subset": 300,
                                                     "seed": 4, "subset_seed": 0, "distiller": "none"})
    subset = train.load_data(distill).train_index
    assert len(subset) == 300 and torch.equal(subset, D.subset_of(full.train_y, 300, 0))
    assert not torch.isin(drawn, subset).any()
    # seeded: the same seed draws the same images, another seed others; more images keep the first ones
    assert all(torch.equal(a, b) for a, b in zip(chosen, holdout.draw(full.train_y, 300, 0, 20, full.classes)))
    other = torch.cat(holdout.draw(full.train_y, 300, 1, 20, full.classes))
    assert not torch.equal(other, drawn)
    assert not torch.isin(other, D.load_dataset("digits", 8, train_subset=300, seed=1).train_index).any()
    more = holdout.draw(full.train_y, 300, 0, 30, full.classes)
    assert all(torch.equal(m[:20], c) for m, c in zip(more, chosen))


def test_the_draw_refuses_a_class_with_too_few_images_outside_the_subset(full):
    counts = torch.bincount(full.train_y).tolist()
    assert counts == [142, 146, 142, 146, 145, 145, 145, 143, 139, 144]  # digits' training split: 1,437 images
    outside = [n - q for n, q in zip(counts, torch.bincount(full.train_y[D.subset_of(full.train_y, 300, 0)]))]
    assert min(outside) == 110
    holdout.draw(full.train_y, 300, 0, 110, full.classes, "digits")  # the most that fits
    with pytest.raises(DaptError, match=r"^generator holdout: class '8' of digits has 110 training images outside "
                                        r"the train_subset of 300 \(139 in the training split, 29 in the subset\), "
                                        r"fewer than images_per_class 111; set images_per_class to at most 110 "
                                        r"\(the fewest of any class\) or lower train_subset$"):
        holdout.draw(full.train_y, 300, 0, 111, full.classes, "digits")
    for everything in (None, 1437, 5000):
        with pytest.raises(DaptError, match=rf"train_subset {everything} holds all 1,437 training images of digits; "
                                            r"set train_subset below 1,437"):
            holdout.draw(full.train_y, everything, 0, 1, full.classes, "digits")


def test_generator_holdout_is_valid_offline_and_named_in_the_help():
    cfg = config.validate(config.GenerateConfig, {"generator": "holdout", "model": "no/such-model"})
    assert cfg.generator == "holdout"  # no Stable Diffusion weights are looked up
    (_, _, text, choices), = [p for p in config.param_help(config.GenerateConfig) if p[0] == "generator"]
    assert "holdout" in choices and "subset_seed" in text


def run_generate(folder: Path, **values) -> tuple[generate.Generated, dict]:
    cfg = config.validate(config.GenerateConfig, {**values, "run_dir": str(folder)})
    record = RunRecord.start(cfg.run_dir, "generate", config.as_dict(cfg))
    result = generate.generate(cfg, train.load_data(cfg), record)
    record.finish()
    return result, json.loads((folder / "metrics.json").read_text())


HOLDOUT = dict(dataset="digits", image_size=8, train_subset=300, seed=0, generator="holdout", images_per_class=4)


@pytest.fixture(scope="module")
def holdout_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("holdout") / "run"
    result, metrics = run_generate(folder, **HOLDOUT)
    return folder, result, metrics


def test_the_stage_writes_the_drawn_real_images_in_the_synthetic_format(holdout_run, full):
    folder, result, metrics = holdout_run
    index = json.loads((folder / "images" / "index.json").read_text())
    assert index["format"] == "dapt-synthetic-v1" and index["generator"] == "holdout" and index["image_size"] == 8
    assert index["settings"] == {"train_subset": 300, "subset_seed": 0, "seed": 0, "image_size": 8}
    assert metrics["n_images"] == 40 == len(index["images"]) and result.added == 40
    assert metrics["holdout"] == {"n_train": 1437, "excluded_subset": {"train_subset": 300, "subset_seed": 0,
                                                                         "n_images": 300}}
    chosen = holdout.draw(full.train_y, 300, 0, 4, full.classes)
    for entry in index["images"]:
        label, i = entry["label"], int(Path(entry["file"]).stem)
        assert entry["file"] == f"{label:03d}_{label}/{i:05d}.png" and entry["seed"] is None
        assert entry["train_index"] == int(chosen[label][i])
        with Image.open(folder / "images" / entry["file"]) as image:
            assert image.mode == "L"
            assert torch.equal(torch.from_numpy(np.array(image)), full.train_x[entry["train_index"], 0])
    assert torch.equal(result.images, full.train_x[[e["train_index"] for e in index["images"]]])


def test_a_rerun_with_more_images_keeps_the_drawn_ones(holdout_run, tmp_path):
    folder, _, _ = holdout_run
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    before = json.loads((copy / "images" / "index.json").read_text())["images"]
    result, metrics = run_generate(copy, **{**HOLDOUT, "images_per_class": 6})
    after = json.loads((copy / "images" / "index.json").read_text())["images"]
    assert result.added == 20 and metrics["n_images"] == 60
    assert [e for e in after if int(Path(e["file"]).stem) < 4] == before
    with pytest.raises(DaptError, match=r"fewer than images_per_class 120; set images_per_class to at most 110 "):
        run_generate(tmp_path / "too_many", **{**HOLDOUT, "images_per_class": 120})
    assert not (tmp_path / "too_many" / "images").exists(), "a refused draw must write no image"


def distill_cfg(synthetic: Path, **values):
    return config.validate(config.DistillConfig, {"dataset": "digits", "image_size": 8, "train_subset": 300,
                                                  "distiller": "none", "synthetic": str(synthetic), **values})


def test_a_distill_run_on_the_holdout_must_train_on_the_subset_it_excludes(holdout_run, tmp_path):
    folder, _, _ = holdout_run
    # seed 3 with subset_seed 0 and the generate run's train_subset: the subset the holdout excludes, so the
    # sample joins the real images, and the validation images (the back of the orders whose front the holdout
    # took) are none of them
    small, _ = run_generate(tmp_path / "small", **{**HOLDOUT, "train_subset": 30})
    cfg = distill_cfg(tmp_path / "small", seed=3, subset_seed=0, train_subset=30)
    mixed = training_set(cfg, train.load_data(cfg))
    assert (mixed.n_real, mixed.n_synthetic) == (30, 30) and len(mixed.val_y) == 1000
    drawn = torch.tensor([e["train_index"] for e in small.entries])
    assert not torch.isin(drawn, mixed.val_index).any() and not torch.isin(drawn, mixed.train_index).any()
    # a subset inside the excluded one (30 of the 300 drawn with seed 0): outside it too, but its validation
    # images are the back of other orders, which hold some of the held-out images: refused in one line
    cfg = distill_cfg(folder, seed=3, subset_seed=0, train_subset=30)
    with pytest.raises(DaptError, match=r"^synthetic run .*run holds \d+ of this run's 1,000 validation images "
                                        r"\(eval_subset auto\): its images and the validation set are disjoint when "
                                        r"this run trains on the subset it excludes \(train_subset 300, subset seed "
                                        r"0; here 30 and 0\) and both fit in each class outside it; train on that "
                                        r"subset, or lower eval_subset or that run's images_per_class$"):
        training_set(cfg, train.load_data(cfg))
    # seed 3 alone draws another subset, which holds some of the held-out images: refused in one line
    cfg = distill_cfg(folder, seed=3)
    with pytest.raises(DaptError, match=r"^synthetic run .*run holds real training images outside the subset of "
                                        r"train_subset 300 and subset_seed 0, but \d+ of its 40 images are among "
                                        r"this run's 300 training images; draw that subset here: set train_subset "
                                        r"300 and subset_seed 0 on this run \(or seed 0 with subset_seed null\)$"):
        training_set(cfg, train.load_data(cfg))
    # the excluded subset itself passes; training images of unknown origin cannot be checked and are refused;
    # a set of another generator (no training-split indices) is not checked
    synthetic = load_synthetic(folder, "digits", [str(d) for d in range(10)], 8)
    assert synthetic.train_index is not None and len(synthetic.train_index) == 40
    check_outside_subset(synthetic, D.load_dataset("digits", 8, train_subset=300, seed=0))
    unknown = replace(D.load_dataset("digits", 8, train_subset=300, seed=0), train_index=None)
    with pytest.raises(DaptError, match="do not say which they are"):
        check_outside_subset(synthetic, unknown)
    check_outside_subset(replace(synthetic, train_index=None), unknown)



def test_a_teacher_trained_on_another_subset_than_the_student_is_warned_of(holdout_run, tmp_path, capsys):
    folder, _, _ = holdout_run
    synthetic = load_synthetic(folder, "digits", [str(d) for d in range(10)], 8)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "metrics.json").write_text(json.dumps({"params": {"dataset": "digits", "train_subset": 300, "seed": 0}}))
    student = dict(teacher=str(teacher), dataset="digits", train_subset=300, subset_seed=None, seed=0)
    warn_if_the_teacher_may_know_them(synthetic, SimpleNamespace(**student))  # the subset the holdout excludes
    warn_if_the_teacher_may_know_them(synthetic, SimpleNamespace(**{**student, "seed": 2, "subset_seed": 0}))
    assert capsys.readouterr().err == ""
    warn_if_the_teacher_may_know_them(synthetic, SimpleNamespace(**{**student, "train_subset": 100}))
    warning = capsys.readouterr().err
    assert warning.startswith(f"warning: teacher {teacher.as_posix()} trained on train_subset 300 drawn with seed 0, "
                              f"this run on 100 with 0: it may have trained on some of the held-out images")
    assert warning.count("\n") == 1

STUDY = """
study: holdout
# the teacher: the session's (conftest.SHARED_TEACHER: these defaults, 2 epochs), a teacher of another study
defaults: {dataset: digits, image_size: 16, train_subset: 300, seed: 0}
runs:
  # the students' subset: their validation images are then the back of the orders whose front it takes
  - {stage: generate, name: holdout, generator: holdout, teacher: runs/shared/teacher, images_per_class: 10, train_subset: 100}
  # seed 1 draws its own subset unless subset_seed names the generate run's seed
  - {stage: distill, name: dkd_holdout, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: dkd, seed: 1,
     subset_seed: 0, train_subset: 100, batch_size: 50, epochs: 1, synthetic: holdout, synset_size: 1x}
  # the same teacher serves the DIST student too (one papermill study for both tests' subjects)
  - {stage: distill, name: dist, student: mobilenet_v2, teacher: runs/shared/teacher, distiller: dist, train_subset: 200,
     batch_size: 50, epochs: 1}
"""


@pytest.mark.slow
def test_a_study_distils_with_dkd_on_a_holdout_set_and_with_dist_through_papermill(tmp_path, shared_teacher_into):
    from projects import new_project, working_in
    from dapt.cli import main

    new_project(tmp_path, {"holdout": STUDY})
    shared_teacher_into(tmp_path)
    for _ in working_in(tmp_path):
        assert main(["run", "params/holdout.yaml", "--quiet"]) == 0
    folder = tmp_path / "runs" / "holdout" / "holdout"
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["status"] == "done" and metrics["generator"] == "holdout" and metrics["n_images"] == 100
    assert 0 <= metrics["teacher_acc_on_synthetic"] <= 1 and metrics["teacher_run"] == "runs/shared/teacher"
    index = json.loads((folder / "images" / "index.json").read_text())
    drawn = torch.tensor([e["train_index"] for e in index["images"]])
    subset = D.load_dataset("digits", 16, train_subset=100, seed=0, validation="auto")
    assert len(set(drawn.tolist())) == 100 and not torch.isin(drawn, subset.train_index).any()
    assert not torch.isin(drawn, subset.val_index).any()
    assert (folder / "figures" / "samples.png").is_file() and (folder / "figures" / "teacher_per_class.png").is_file()
    student = json.loads((tmp_path / "runs/holdout/dkd_holdout/metrics.json").read_text())
    assert student["status"] == "done" and (student["n_real"], student["n_synthetic"]) == (100, 100)
    for name, terms in (("dkd_holdout", {"ce": 1.0, "tckd": 1.0, "nckd": 8.0}),
                        ("dist", {"ce": 1.0, "inter": 2.0, "intra": 2.0})):
        metrics = json.loads((tmp_path / "runs/holdout" / name / "metrics.json").read_text())
        assert metrics["status"] == "done", (name, metrics.get("error"))
        assert metrics["distiller"] == name.split("_")[0] and metrics["weights"] == terms
        assert all(math.isfinite(metrics["history"][0][f"loss_{term}"]) for term in terms), name
        assert isinstance(metrics["agreement"], float)
    assert student["synthetic_run"] == "runs/holdout/holdout"
