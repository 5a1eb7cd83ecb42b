"""Exploring from JupyterLab, wandb as its users see it, HTML reports — on one tiny study executed for real.

The module's study (digits, 16 px, two epochs) is run once with ``wandb: offline``; the widgets
then add a run to it by a click, papermill executes ``notebooks/explore.ipynb`` headless, and the
study is rendered to HTML. wandb's offline files are read back with ``wandb_records``.
"""
from __future__ import annotations

import html
import json
from pathlib import Path

import papermill as pm
import pytest

from dapt.cli import main
from dapt.distillers import DISTILLERS
from dapt.models import MODELS
from projects import new_project, working_in
from wandb_records import offline_run

pytestmark = pytest.mark.slow

TINY = """
study: tiny
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 2, batch_size: 50, wandb: offline,
           wandb_project: dapt-tests}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
  - {stage: distill, name: kd, student: mobilenet_v2, teacher: teacher, distiller: kd}
  - {stage: report, name: report}
"""


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = new_project(tmp_path_factory.mktemp("explore"), {"tiny": TINY})
    for _ in working_in(root, wandb_mode=None):
        assert main(["run", "params/tiny.yaml", "--quiet"]) == 0
        yield root


def metrics(root: Path, run: str) -> dict:
    return json.loads((root / "runs" / "tiny" / run / "metrics.json").read_text())


def test_offline_wandb_files_hold_name_group_config_summary_figures_and_notebook(study):
    kd = offline_run(study / "runs/tiny/kd")
    assert (kd["name"], kd["group"], kd["job_type"], kd["project"]) == ("tiny/kd", "tiny", "distill", "dapt-tests")
    assert kd["config"]["distiller"] == "kd" and kd["config"]["kd_T"] == 4.0 and kd["config"]["epochs"] == 2
    assert kd["config"]["teacher"] == "runs/tiny/teacher"
    record = metrics(study, "kd")
    for key in ("test_acc", "agreement", "kl", "ece", "cka", "teacher_test_acc"):  # the final full-test numbers
        assert kd["summary"][key] == pytest.approx(record[key], rel=1e-5), key
    epochs = [row for row in kd["history"] if "train_loss" in row]
    assert [row["epoch"] for row in epochs] == [1, 2] and all("val_agreement" in row for row in epochs)
    figures = {Path(f).name.split("_")[0] for f in kd["files"] if f.startswith("media/images/figures/")}
    assert figures == {"curves", "per", "prediction", "reliability"}
    assert kd["artifacts"] == [{"name": "notebook-tiny-kd", "type": "notebook", "files": ["notebook.ipynb"]}]
    assert kd["exit_code"] == 0
    teacher, report = offline_run(study / "runs/tiny/teacher"), offline_run(study / "runs/tiny/report")
    assert (teacher["name"], teacher["job_type"]) == ("tiny/teacher", "teacher")
    assert (report["name"], report["job_type"], report["summary"]["runs"]) == ("tiny/report", "report", 2)
    assert any(f.startswith("media/images/figures/agreement_vs_accuracy") for f in report["files"])
    notebooks = [r for r in report["artifacts"] if r["type"] == "notebook"]  # beside the tables' own artifacts
    assert notebooks and all("notebook.ipynb" in r["files"] for r in notebooks)


def test_changing_the_wandb_project_does_not_redo_a_finished_run(study, capsys):
    assert main(["run", "params/tiny.yaml", "--set", "wandb_project=other", "--set", "wandb=disabled",
                 "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("skip: already done with these parameters") == 3


def test_a_failing_run_finishes_its_wandb_run_with_a_nonzero_exit_code(study):
    (study / "params" / "bad.yaml").write_text(
        "study: bad\ndefaults: {dataset: digits, image_size: 16, train_subset: 100, epochs: 1, batch_size: 50}\n"
        "runs: [{stage: teacher, name: diverges, model: resnet18, init: fr, optimizer: sgd, lr: 1.0e+12,"
        " precise_bn: null, wandb: offline}]\n")
    assert main(["run", "params/bad.yaml", "--quiet"]) == 1
    assert json.loads((study / "runs/bad/diverges/metrics.json").read_text())["status"] == "failed"
    assert offline_run(study / "runs/bad/diverges")["exit_code"] == 1


def test_widgets_offer_the_registries_and_the_study_teachers_and_a_click_records_a_run(study):
    from dapt.ui import widgets

    ui = widgets.Explorer("params/tiny.yaml")
    assert "params/tiny.yaml" in ui.study.options
    assert [value for _, value in ui.fields["distiller"].options] == DISTILLERS.names()
    assert [value for _, value in ui.fields["student"].options] == MODELS.names()
    assert all(DISTILLERS.summary(v) in label for label, v in ui.fields["distiller"].options)
    teachers = dict((value, label) for label, value in ui.fields["teacher"].options)
    accuracy = metrics(study, "teacher")["test_acc"]
    assert f"{accuracy:.2%}" in teachers["runs/tiny/teacher"] and "from scratch" in teachers["runs/tiny/teacher"]
    assert ui.fields["teacher"].value == "runs/tiny/teacher"  # the study's finished teacher, preselected

    ui.fields["w_ce"].value = "-1"  # a mistake is one line, nothing is created
    ui.name.value = "clicked"
    ui.run_button.click()
    assert "run 'clicked': w_ce=-1.0 must be >= 0" in html.unescape(ui.status.value)
    assert not (study / "runs/tiny/clicked").exists()

    ui.fields["w_ce"].value = ""
    ui.fields["distiller"].value = "srrl"
    ui.fields["epochs"].value = 1
    ui.run_button.click()
    record = metrics(study, "clicked")
    assert record["status"] == "done", record.get("error")
    assert record["params"]["distiller"] == "srrl" and record["params"]["epochs"] == 1
    assert record["params"]["teacher"] == "runs/tiny/teacher" and record["params"]["image_size"] == 16  # defaults
    assert "agreement" in record and "clicked: done" in ui.status.value
    assert offline_run(study / "runs/tiny/clicked")["name"] == "tiny/clicked"  # the study's wandb default too


def test_explore_notebook_runs_its_parameters_headless(study):
    out = study / "explore_out.ipynb"
    pm.execute_notebook(str(study / "notebooks/explore.ipynb"), str(out), cwd=str(study), kernel_name="python3",
                        progress_bar=False, parameters={
                            "interactive": False, "study": "params/tiny.yaml", "name": "headless",
                            "values": {"teacher": "teacher", "distiller": "none", "epochs": 1, "wandb": "disabled"}})
    record = metrics(study, "headless")
    assert record["status"] == "done" and record["params"]["distiller"] == "none"
    cells = json.loads(out.read_text())["cells"]
    shown = sum("image/png" in o.get("data", {}) for c in cells for o in c.get("outputs", []))
    assert shown == 2  # agreement against accuracy and accuracy per run, the new run among the others
    assert "tiny/headless: done" in json.dumps(cells)


def test_html_report_renders_every_notebook_and_an_index_linking_them(study, capsys):
    assert main(["report", "params/tiny.yaml", "--html", "--no-input"]) == 0
    folder = study / "runs/tiny/html"
    index = (folder / "index.html").read_text()
    for run in ("teacher", "kd"):
        assert f'<a href="{run}.html">{run}</a>' in index
        page = (folder / f"{run}.html").read_text()
        assert "data:image/png;base64" in page and "notebook.start(" not in page  # outputs, no code
    assert '<a href="report.html">report</a>' in index
    assert "data:image/png;base64" in (folder / "report.html").read_text()
