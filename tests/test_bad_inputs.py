"""The bad-input battery: every user mistake gets one clear line naming the problem and the fix,
no traceback, and nothing under runs/ is created or changed. Through the CLI (`dapt run`), and
through the library for the files a study does not read at check time (checkpoints, datasets)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from dapt.cli import main
from dapt.errors import DaptError

TEACHER = "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits"
DISTILL = "{stage: distill, name: s, student: mobilenet_v2, dataset: digits"
GENERATE = "{stage: generate, name: g, dataset: digits"

# (case, params file text, what the one error line must say)
CASES = [
    ("misspelled key", TEACHER + ", epoch: 3}", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("wrong type", TEACHER + ", epochs: three}", "epochs must be an integer, got 'three'"),
    ("outside its choices", "{stage: teacher, name: t, init: scratch}", "init: 'scratch' is not one of: fr, lp, ft"),
    ("zero epochs", TEACHER + ", epochs: 0}", "epochs=0 must be >= 1"),
    ("negative batch size", TEACHER + ", batch_size: -8}", "batch_size=-8 must be >= 1"),
    ("zero image size", TEACHER + ", image_size: 0}", "image_size=0 must be >= 1"),
    ("zero learning rate", TEACHER + ", lr: 0}", "lr=0.0 must be > 0"),
    ("negative learning rate as text", TEACHER + ", lr: -1e-3}", "lr=-0.001 must be > 0"),
    ("unknown stage", "{stage: pretrain, name: t}", "unknown stage 'pretrain'; choose one of: teacher, distill"),
    ("unknown model", TEACHER + ", model: resnet9}", "model: 'resnet9' is not one of: resnet18"),
    ("unknown dataset", TEACHER + ", dataset: mnist}", "dataset: 'mnist' is not one of: fashion_mnist"),
    ("unknown distiller", DISTILL + ", distiller: fitnet}", "distiller: 'fitnet' is not one of: none, kd"),
    ("unknown projector", DISTILL + ", distiller: none, projector: mlp9}", "projector: 'mlp9' is not one of"),
    ("reference to no run", DISTILL + ", teacher: ghost}", "teacher 'ghost' is neither a run of this study"),
    ("reference to the wrong stage", "study: x\nruns:\n  - " + DISTILL + ", distiller: none}\n  - "
     + DISTILL.replace("name: s", "name: s2") + ", teacher: s}", "teacher 's' is a distill run, not a teacher run"),
    ("duplicate run names", "study: x\nruns: [{stage: teacher, name: a}, {stage: teacher, name: a}]",
     "two runs are named 'a'; run names must be unique"),
    ("run name with a slash", "{stage: teacher, name: a/b}", "invalid run name 'a/b'"),
    ("run name ..", "{stage: teacher, name: '..'}", "invalid run name '..'"),
    ("run name as an absolute path", "{stage: teacher, name: /tmp/x}", "invalid run name '/tmp/x'"),
    ("run name with a NUL byte", '{stage: teacher, name: "a\\0b"}', "invalid run name 'a\\x00b'"),
    ("run name with a leading dot", "{stage: teacher, name: .hidden}", "invalid run name '.hidden'"),
    ("study name escaping runs/", "study: ../up\nruns: [{stage: teacher, name: a}]", "invalid study name '../up'"),
    ("empty file", "", "expected a mapping"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping"),
    ("malformed YAML", TEACHER + ", lr: [1, 2", "not valid YAML at line"),
    ("YAML tag building an object", "!!python/object/apply:os.system ['touch pwned']", "YAML tag not allowed"),
    ("teacher run that failed", DISTILL + ", teacher: runs/other/failed}", "'runs/other/failed' is 'failed', not done"),
    ("teacher run still running", DISTILL + ", teacher: runs/other/running}",
     "'runs/other/running' is 'running', not done"),
    ("teacher of other classes", DISTILL + ", teacher: runs/other/fashion}",
     "was trained on fashion_mnist, this run uses digits"),
    ("image size a model cannot take", "{stage: teacher, name: t, model: vit_b_16, image_size: 30}",
     "vit_b_16 needs an image_size divisible by 16 (its patch size), got 30; use 16 or 32"),
    ("grid over an unknown key", "study: x\nruns: [{stage: teacher, name: '{epoch}', grid: {epoch: [1, 2]}}]",
     "unknown key 'epoch'"),
    ("distiller without a teacher", DISTILL + ", distiller: kd}", "distiller 'kd' needs a teacher"),
    ("run_dir set by hand", TEACHER + ", run_dir: /etc}", "run_dir is set by `dapt run`"),
    ("distiller knob out of range", DISTILL + ", distiller: none, crd_momentum: 1.0}", "crd_momentum=1.0 must be in [0, 1)"),
    ("no images asked for", GENERATE + ", images_per_class: 0}", "images_per_class=0 must be >= 1"),
    ("unknown generator", GENERATE + ", generator: gan}", "generator: 'gan' is not one of: ddpm, stable_diffusion"),
    ("prompt template with another field", GENERATE + ", prompt_template: 'a {label}'}",
     "prompt_template 'a {label}' may only use {name}"),
    ("ddpm image size the UNet cannot halve", GENERATE + ", image_size: 30}",
     "needs an image_size divisible by 8, got 30; use 24"),
    ("label dropout of 1", GENERATE + ", ddpm_label_drop: 1.0}", "ddpm_label_drop=1.0 must be in [0, 1)"),
    ("generate judged by a distill run", "study: x\nruns:\n  - " + DISTILL + ", distiller: none}\n  - "
     + GENERATE + ", teacher: s}", "teacher 's' is a distill run, not a teacher run"),
    ("stable_diffusion model folder that is no pipeline", GENERATE + ", generator: stable_diffusion, model: params}",
     "model 'params' is a folder without model_index.json"),
    ("stable_diffusion model that is no hub id", GENERATE + ", generator: stable_diffusion, model: 'no such/x y'}",
     "is neither a local folder nor a Hugging Face hub id"),
]


def finished_run(folder: Path, stage: str, status: str, dataset: str) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps({"status": status, "stage": stage, "params": {"dataset": dataset}}))


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() if p.is_file() else b"<dir>" for p in root.rglob("*")}


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project folder whose runs/ holds other studies' runs in every state."""
    (tmp_path / "params").mkdir()
    finished_run(tmp_path / "runs/other/failed", "teacher", "failed", "digits")
    finished_run(tmp_path / "runs/other/running", "teacher", "running", "digits")
    finished_run(tmp_path / "runs/other/fashion", "teacher", "done", "fashion_mnist")
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def refused(project: Path, capsys, args: list[str]) -> str:
    """Run the CLI, check it refused in one line without touching runs/, return that line."""
    before = snapshot(project / "runs")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("dapt: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    assert snapshot(project / "runs") == before, "a refused study changed runs/"
    return err


@pytest.mark.parametrize("case, text, fragment", CASES, ids=[case for case, _, _ in CASES])
def test_bad_params_file_gets_one_line_and_writes_nothing(project, capsys, case, text, fragment):
    (project / "params" / "bad.yaml").write_text(text + "\n", encoding="utf-8")
    err = refused(project, capsys, ["run", "params/bad.yaml"])
    assert fragment in err
    assert not (project / "pwned").exists()


def test_stable_diffusion_offline_without_weights_names_the_fix(project, capsys, monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path_factory.mktemp("empty_hf_cache")))
    (project / "params" / "sd.yaml").write_text(GENERATE + ", generator: stable_diffusion}\n")
    err = refused(project, capsys, ["run", "params/sd.yaml"])
    assert "'CompVis/stable-diffusion-v1-4' is not in the local Hugging Face cache and the hub cannot be reached" in err
    assert "huggingface-cli download CompVis/stable-diffusion-v1-4" in err and "generator ddpm" in err
    assert not (project / "runs" / "sd").exists()


def test_only_that_matches_no_run(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: ok\nruns: [" + TEACHER + "}]\n")
    assert "no run named 'zzz'; runs: t" in refused(project, capsys, ["run", "params/ok.yaml", "--only", "zzz"])


def test_missing_params_file(project, capsys):
    assert "params/none.yaml: no such params file" in refused(project, capsys, ["run", "params/none.yaml"])


def test_study_folder_that_cannot_be_created(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: blocked\nruns: [" + TEACHER + "}]\n")
    (project / "runs" / "blocked").write_text("a file where the study folder belongs")
    assert "cannot create the study folder runs/blocked" in refused(project, capsys, ["run", "params/ok.yaml"])


# --- files the library reads when a run starts --------------------------------------------------

def test_truncated_checkpoint(tmp_path):
    from dapt.checkpoint import load_model, save_model
    from dapt.models import create_model

    save_model(tmp_path / "model.pt", create_model("resnet18", 3), {"model": "resnet18", "num_classes": 3,
                                                                     "image_size": 16})
    data = (tmp_path / "model.pt").read_bytes()
    (tmp_path / "model.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(DaptError, match=r"model.pt is corrupt or not a PyTorch file .*re-run the run that wrote it"):
        load_model(tmp_path / "model.pt")


def test_checkpoint_that_is_not_a_model_file(tmp_path):
    from dapt.checkpoint import load_model

    torch.save([1, 2, 3], tmp_path / "model.pt")
    with pytest.raises(DaptError, match="is not a dapt model file .*point to the model.pt of a finished run"):
        load_model(tmp_path / "model.pt")


class _RunsCode:
    """Pickles as a call to Path.touch: loading it unsafely would create the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_pickled_with_code_is_refused_without_running_it(tmp_path):
    from dapt.checkpoint import load_model

    marker = tmp_path / "code-ran"
    torch.save({"format": "dapt-model-v1", "state_dict": _RunsCode(marker)}, tmp_path / "model.pt")
    with pytest.raises(DaptError, match="corrupt or not a PyTorch file"):
        load_model(tmp_path / "model.pt")
    assert not marker.exists(), "unpickling ran code from the checkpoint"


def test_dataset_missing_from_disk_names_the_fix(tmp_path):
    from dapt.data import load_dataset
    from dapt.errors import DatasetMissingError

    with pytest.raises(DatasetMissingError, match="cifar10 not found: expected the folder .*set download: true"):
        load_dataset("cifar10", 32, data_root=tmp_path)


def test_teacher_run_whose_checkpoint_is_gone(tmp_path):
    """A fresh clone holds a teacher's report but not its model.pt: one line says to train it."""
    from dapt.data import load_dataset
    from dapt.distill import load_teacher

    finished_run(tmp_path / "t", "teacher", "done", "digits")
    with pytest.raises(DaptError, match="has its report but no model.pt .*train it first"):
        load_teacher(tmp_path / "t", load_dataset("digits", 8))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes through any permission bits")
def test_study_folder_that_is_not_writable(project, capsys):
    (project / "params" / "ok.yaml").write_text("study: locked\nruns: [" + TEACHER + "}]\n")
    (project / "runs" / "locked").mkdir()
    (project / "runs" / "locked").chmod(0o500)
    assert "runs/locked is not writable" in refused(project, capsys, ["run", "params/ok.yaml"])
