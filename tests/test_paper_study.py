"""params/cifar100_paper.yaml, the paper's CIFAR-100 setting: `dapt run --dry-run` plans all of it on a
machine without CIFAR-100, without ImageNet weights and without the network, and creates nothing."""
from __future__ import annotations

import shutil
from pathlib import Path

from dapt.cli import main
from dapt.pipeline.study import load_study

PAPER = Path(__file__).resolve().parents[1] / "params" / "cifar100_paper.yaml"
TEACHERS = [f"{arch}_{init}" for arch in ("r50", "vit") for init in ("fr", "lp", "ft")]
DISTILLERS = ["kd", "crd", "srrl", "align_uniform"]


def test_the_paper_study_dry_runs_without_data_weights_or_network(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # where torchvision would put ImageNet weights
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params").mkdir()
    shutil.copy(PAPER, tmp_path / "params" / PAPER.name)

    assert main(["run", "params/cifar100_paper.yaml", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("study cifar100_paper (params/cifar100_paper.yaml): 59 runs, nothing executed")
    plan = [line.split() for line in lines[1::2]]  # each run's line; the next one lists its values
    assert all(row[2:] == ["new", "run"] for row in plan), plan
    order = [row[0] for row in plan]
    students = {(s, t, d): f"{s}_{t}_{d}" for s in ("mnv2", "r18") for t in TEACHERS for d in DISTILLERS}
    assert sorted(order) == sorted([*TEACHERS, "mnv2_pretrained_ft", "r18_pretrained_ft", "mobilenet_v2_none",
                                    "resnet18_none", *students.values(), "report"])
    for (_, teacher, _), student in students.items():  # every teacher is trained before its students
        assert order.index(teacher) < order.index(student), student
    assert order[-1] == "report"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params"]  # no runs/, no data/, no torch/ (no download)


def test_the_paper_study_uses_the_reference_hyper_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    study = load_study(PAPER, check_data=False)
    for spec in study.runs[:-1]:
        cfg = spec.cfg
        assert (cfg.dataset, cfg.image_size, cfg.train_subset, cfg.epochs, cfg.batch_size) == ("cifar100", 224, None,
                                                                                               250, 64)
        assert (cfg.optimizer, cfg.scheduler, cfg.download, cfg.device) == ("adamw", "none", True, "auto")
        fine_tuned = spec.stage == "teacher" and cfg.init == "ft"
        assert (cfg.lr, cfg.weight_decay) == ((1.0e-4, 5.0e-4) if fine_tuned else (1.0e-3, 0.01)), spec.name
    kd = study.get("r18_vit_lp_kd").cfg
    assert (kd.student, kd.distiller, kd.teacher, kd.kd_T) == ("resnet18", "kd", "runs/cifar100_paper/vit_lp", 4.0)
    assert study.get("vit_ft").cfg.head_lr_mult == 10.0 and study.get("vit_ft").cfg.model == "vit_b_16"
