"""End to end: `dapt run` executes the real notebooks with papermill on digits with tiny params.

The tests share one executed study (module fixture) and leave it as they found it, so they pass
in any order and alone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from projects import new_project, working_in
from dapt.cli import main

pytestmark = pytest.mark.slow  # each test executes notebooks in fresh kernels

TINY = """
study: tiny
description: |
  Does a crd student of a scratch teacher beat the scratch student? Rule: the gap beyond seed noise.
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 2, batch_size: 50}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
  - {stage: distill, name: crd, student: mobilenet_v2, teacher: teacher, distiller: crd, crd_k: 32}
  - {stage: distill, name: scratch, student: mobilenet_v2, distiller: none}
  - {stage: report, name: report}
"""


def shown_images(notebook: Path) -> int:
    """How many PNG images the executed notebook displays (what a reader of the report sees)."""
    cells = json.loads(notebook.read_text())["cells"]
    return sum("image/png" in out.get("data", {}) for cell in cells for out in cell.get("outputs", []))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A throwaway project folder holding the real notebooks; runs/ is created inside it."""
    root = new_project(tmp_path_factory.mktemp("project"), {"tiny": TINY})
    for _ in working_in(root):
        yield root


@pytest.fixture(scope="module")
def executed(project):
    code = main(["run", "params/tiny.yaml", "--quiet"])
    return project, code


def test_every_run_is_done_with_its_records(executed):
    root, code = executed
    assert code == 0
    for name in ("teacher", "crd", "scratch", "report"):
        folder = root / "runs" / "tiny" / name
        metrics = json.loads((folder / "metrics.json").read_text())
        assert metrics["status"] == "done", (name, metrics.get("error"))
        assert (folder / "notebook.ipynb").is_file()
        assert yaml.safe_load((folder / "params.yaml").read_text())["run_dir"] == f"runs/tiny/{name}"
    teacher = json.loads((root / "runs/tiny/teacher/metrics.json").read_text())
    assert len(teacher["history"]) == 2 and teacher["test_acc"] > 0.15, "the teacher did not beat chance (10%)"
    assert (root / "runs/tiny/teacher/model.pt").is_file()
    assert (root / "runs/tiny/teacher/figures/curves.png").is_file()
    assert shown_images(root / "runs/tiny/teacher/notebook.ipynb") == 1


def test_distill_records_agreement_and_figures(executed):
    root, _ = executed
    metrics = json.loads((root / "runs/tiny/crd/metrics.json").read_text())
    for key in ("teacher_test_acc", "teacher_val_acc", "agreement", "kl", "ece", "teacher_ece", "cka"):
        assert isinstance(metrics[key], float), key
    assert metrics["teacher_run"] == "runs/tiny/teacher"
    assert metrics["weights"] == {"ce": 1.0, "embed": 1.0, "kd": 1.0}  # crd's own terms
    # every epoch on the validation images, the test set once at the end
    assert all({"val_acc", "val_agreement", "val_kl"} <= set(h) and "test_acc" not in h for h in metrics["history"])
    figures = {p.name for p in (root / "runs/tiny/crd/figures").iterdir()}
    assert figures == {"curves.png", "per_class_agreement.png", "prediction_matrix.png", "reliability.png"}
    assert shown_images(root / "runs/tiny/crd/notebook.ipynb") == 4
    assert list((root / "runs/tiny/teacher/cache").glob("features-*.i8")), "teacher targets were not cached"
    scratch = json.loads((root / "runs/tiny/scratch/metrics.json").read_text())
    assert "agreement" not in scratch and scratch["test_acc"] is not None


def test_executed_notebooks_keep_one_line_per_epoch_and_no_progress_bar(executed):
    """The kernels of `dapt run` draw no bar (``core.progress``): the record holds the epoch lines, not the
    carriage-return fragments of a bar redrawn (teacher targets, training batches)."""
    root, _ = executed
    for name in ("teacher", "crd", "scratch"):
        cells = json.loads((root / f"runs/tiny/{name}/notebook.ipynb").read_text())["cells"]
        text = "".join("".join(out["text"]) for cell in cells for out in cell.get("outputs", [])
                       if out["output_type"] == "stream")
        assert "\r" not in text and "%|" not in text, (name, text)
        assert [line.split(":")[0] for line in text.splitlines() if line.startswith("epoch ")] == ["epoch 1", "epoch 2"]


def test_report_table_lists_every_run(executed):
    root, _ = executed
    nb = json.loads((root / "runs/tiny/report/notebook.ipynb").read_text())
    outputs = json.dumps([c.get("outputs", []) for c in nb["cells"]])
    for name in ("teacher", "crd", "scratch"):
        assert f"| {name} |" in outputs
    assert shown_images(root / "runs/tiny/report/notebook.ipynb") == 4  # seed spread, curves, accuracy, agreement
    assert (root / "runs/tiny/report/figures/accuracy.png").is_file()


def test_every_record_and_notebook_says_which_code_libraries_device_and_precision_made_it(executed):
    from dapt.core import provenance

    root, _ = executed
    commit, dirty = provenance.code_version()
    # crd's teacher computes its targets in teacher_amp auto's precision: bfloat16 on a CPU with AVX512-BF16
    crd_teacher = json.loads((root / "runs/tiny/crd/metrics.json").read_text())["teacher_precision"]
    precisions = {"teacher": {"teacher": "float32"}, "crd": {"student": "float32", "teacher": crd_teacher},
                  "scratch": {"student": "float32"}, "report": {}}
    for name, precision in precisions.items():
        folder = root / "runs/tiny" / name
        record = json.loads((folder / "metrics.json").read_text())["provenance"]
        assert (record["commit"], record["dirty"]) == (commit, dirty) and len(commit) == 40
        assert record["torch"] == provenance.library_version("torch") and record["python"].count(".") == 2
        assert (record["device"], record["device_name"]) == ("cpu", provenance.cpu_model())
        assert record["precision"] == precision, name
        assert json.loads((folder / "notebook.ipynb").read_text())["metadata"]["dapt"]["provenance"] == record


def test_the_report_opens_with_the_study_description(executed):
    root, _ = executed
    cells = json.loads((root / "runs/tiny/report/notebook.ipynb").read_text())["cells"]
    shown = [out["data"]["text/markdown"] for cell in cells for out in cell.get("outputs", [])
             if "text/markdown" in out.get("data", {})]
    assert "".join(shown[0]).startswith("**The question.** Does a crd student of a scratch teacher beat the scratch "
                                        "student?")
    recorded = yaml.safe_load((root / "runs/tiny/report/params.yaml").read_text())
    assert recorded["study_description"].endswith("Rule: the gap beyond seed noise.")


def test_executed_notebooks_record_repo_relative_paths_only(executed):
    root, _ = executed
    for notebook in (root / "runs" / "tiny").glob("*/notebook.ipynb"):
        text = notebook.read_text()
        assert str(root) not in text, notebook
        meta = json.loads(text)["metadata"]["papermill"]
        assert meta["input_path"].startswith("notebooks/")
        assert meta["output_path"] == f"runs/tiny/{notebook.parent.name}/notebook.ipynb"


def test_second_run_skips_finished_runs(executed, capsys):
    root, _ = executed
    before = (root / "runs/tiny/teacher/metrics.json").read_text()
    assert main(["run", "params/tiny.yaml", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert out.count("already done with these parameters, skipped") == 4
    assert (root / "runs/tiny/teacher/metrics.json").read_text() == before


def test_changed_params_refuse_to_replace_a_finished_run(executed, capsys):
    root, _ = executed
    changed = root / "params" / "changed.yaml"
    changed.write_text(TINY.replace("epochs: 2", "epochs: 3"))
    assert main(["run", "params/changed.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "epochs changed" in err and "--force" in err
    status_code = main(["status", "params/changed.yaml"])
    out = capsys.readouterr().out
    assert status_code == 0 and "params differ: epochs" in out


def test_misspelled_key_fails_before_anything_is_written(project, capsys, tmp_path):
    bad = project / "params" / "typo.yaml"
    bad.write_text("study: typo\nruns:\n  - {stage: teacher, name: t, epoch: 3}\n")
    assert main(["run", "params/typo.yaml"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'epoch'" in err and "params/typo.yaml" in err
    assert "Traceback" not in err
    assert not (project / "runs" / "typo").exists()


def test_a_failed_run_stops_the_study_or_blocks_only_its_dependents(project, capsys):
    bad = project / "params" / "broken.yaml"
    # cifar10's files are where they belong but hold garbage: the teacher's notebook stops with the reader's error
    cifar = project / "data" / "cifar-10-batches-py"
    cifar.mkdir(parents=True, exist_ok=True)
    for name in ("batches.meta", *(f"data_batch_{i}" for i in range(1, 6)), "test_batch"):
        (cifar / name).write_bytes(b"not a pickle")
    bad.write_text(textwrap.dedent("""
        study: broken
        defaults: {dataset: cifar10}
        runs:
          - {stage: teacher, name: t, model: resnet18, init: fr}
          - {stage: teacher, name: other, model: resnet18, init: fr, dataset: digits, image_size: 8,
             train_subset: 100, epochs: 1, batch_size: 50}
          - {stage: distill, name: s, teacher: t, distiller: kd}
          - {stage: report, name: report}
    """))
    assert main(["run", "params/broken.yaml", "--quiet"]) == 1
    out = capsys.readouterr().out
    metrics = json.loads((project / "runs/broken/t/metrics.json").read_text())
    assert metrics["status"] == "failed" and "cannot read CIFAR batch" in metrics["error"]
    assert "other: not run, the study stopped at t" in out
    assert not (project / "runs/broken/other").exists() and not (project / "runs/broken/report").exists()
    # the executed notebook keeps the error, as the message a user can act on, without a stack
    cells = json.loads((project / "runs/broken/t/notebook.ipynb").read_text())["cells"]
    [error] = [o for c in cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert error["ename"] == "CorruptImageError" and len(error["traceback"]) <= 2
    assert "\x1b[" not in json.dumps(cells), "ANSI colour codes in the report"

    assert main(["run", "params/broken.yaml", "--quiet", "--keep-going"]) == 1
    out = capsys.readouterr().out
    assert "s: skipped, it needs t which did not finish" in out
    assert "not done: t (failed), s (blocked)" in out
    assert not (project / "runs/broken/s").exists(), "a blocked run must leave nothing behind"
    for name in ("other", "report"):
        assert json.loads((project / f"runs/broken/{name}/metrics.json").read_text())["status"] == "done"


def test_sigterm_marks_the_run_interrupted_and_keeps_its_notebook(project):
    (project / "params" / "long.yaml").write_text(
        "{stage: teacher, name: t, model: resnet18, init: fr, dataset: digits, image_size: 16, train_subset: 300,"
        " epochs: 200, batch_size: 50, optimizer: sgd, lr: 0.05}\n")
    env = {**os.environ, "DAPT_ROOT": str(project), "WANDB_MODE": "disabled"}
    process = subprocess.Popen([sys.executable, "-m", "dapt.cli", "run", "params/long.yaml", "--quiet"],
                               cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics_file = project / "runs/long/t/metrics.json"
    deadline = time.time() + 120
    while time.time() < deadline and not (json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
                                          ).get("history"):
        time.sleep(0.5)
    assert process.poll() is None, "the run ended before it could be interrupted"
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "dapt: interrupted" in err and "Traceback" not in err
    metrics = json.loads(metrics_file.read_text())
    assert metrics["status"] == "interrupted" and 1 <= len(metrics["history"]) < 200
    assert (project / "runs/long/t/notebook.ipynb").is_file()
    time.sleep(3)  # a kernel left running would go on writing the record
    assert json.loads(metrics_file.read_text()) == metrics


def test_a_run_without_its_checkpoint_is_executed_again(executed, capsys):
    """A fresh clone holds the committed reports but not the git-ignored checkpoints."""
    from dapt.pipeline.runner import plan, run_state
    from dapt.pipeline.study import load_study

    root, _ = executed
    study = load_study("params/tiny.yaml")
    checkpoint = root / "runs/tiny/scratch/model.pt"
    aside = checkpoint.with_name("model.pt.aside")
    checkpoint.rename(aside)
    try:
        assert run_state(study.get("scratch")).status == "report-only"
        assert run_state(study.get("teacher")).finished
        assert [s.spec.name for s in plan(study) if not s.finished] == ["scratch"]
        assert main(["status", "params/tiny.yaml"]) == 0
        assert "report-only" in capsys.readouterr().out
    finally:
        aside.rename(checkpoint)


def test_notebooks_receive_only_what_the_study_sets(executed):
    root, _ = executed
    cells = json.loads((root / "runs/tiny/crd/notebook.ipynb").read_text())["cells"]
    [injected] = [c for c in cells if "injected-parameters" in c["metadata"].get("tags", [])]
    keys = {line.split(" = ")[0] for line in "".join(injected["source"]).splitlines() if " = " in line}
    # cache_features: dapt run's own, as run_dir: crd reads its teacher's features, so its cache stores them
    assert keys == {"dataset", "image_size", "train_subset", "epochs", "batch_size", "student", "teacher",
                    "distiller", "crd_k", "run_dir", "cache_features"}
    recorded = yaml.safe_load((root / "runs/tiny/crd/params.yaml").read_text())
    assert recorded["kd_T"] == 4.0 and recorded["teacher"] == "runs/tiny/teacher"  # params.yaml keeps them all
