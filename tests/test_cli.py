"""The `dapt` command's help, listings and error handling (no notebooks executed here)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from dapt.cli import main


def test_help_gives_each_command_its_explanation(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "validate and execute the runs of a params file" in out
    assert "show the state of each run of a params file" in out
    assert "print a study's configurations, comparisons and verdicts" in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "re-execute runs that are already done" in out and "execute only these runs" in out
    with pytest.raises(SystemExit):
        main(["report", "--help"])
    out = capsys.readouterr().out
    assert "a params file (params/x.yaml: its runs in runs/x/) or a study folder (runs/x)" in " ".join(out.split())
    assert "print the results block the docs embed" in out and "also print the table of every run" in out
    assert "write DIR/configurations.csv and DIR/claims.csv" in out and "write DIR/summary.json" in out


def test_list_shows_every_registered_name(capsys):
    from dapt.data import DATASETS
    from dapt.distillers import CONNECTORS, DISTILLERS, PROJECTORS
    from dapt.models import MODELS

    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = {line.split()[0] for line in lines if line.startswith("  ")}
    for registry in (DATASETS, MODELS, DISTILLERS, PROJECTORS, CONNECTORS):
        assert set(registry.names()) <= listed, registry.kind
    summary = next(line for line in lines if line.split()[:1] == ["crd"])
    assert DISTILLERS.summary("crd") in summary


def test_params_shows_each_fields_own_help_default_and_choices(capsys):
    import dataclasses

    from dapt.pipeline import config
    from dapt.core.fields import help_of

    assert main(["params", "distill"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    fields = {f.name: f for f in dataclasses.fields(config.DistillConfig)}
    assert set(lines) == set(fields)
    for name in ("kd_T", "crd_k", "srrl_connector", "epochs"):
        assert help_of(fields[name]) in lines[name] and config.yaml_value(fields[name].default) in lines[name]
    assert "mlp, mlp2" in lines["srrl_connector"] and "none, kd" in lines["distiller"]
    # defaults as the YAML of a params file spells them, never Python's None / False
    defaults = {name: line.split()[1] for name, line in lines.items()}
    assert defaults["teacher"] == "null" and defaults["resume"] == "false" and defaults["augment"] == "true"
    assert defaults["teacher_cache"] == "'on'" and defaults["lr"] == "0.002" and defaults["student"] == "mobilenet_v2"
    assert not {"None", "True", "False"} & set(defaults.values())
    assert main(["params", "pretrain"]) == 2
    assert "unknown stage 'pretrain'" in capsys.readouterr().err


def test_missing_file_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dapt.cli", "run", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no such params file") and "Traceback" not in result.stderr


REPO = Path(__file__).resolve().parents[1]


def test_report_prints_configurations_claims_and_sentences(capsys, monkeypatch):
    from dapt.analysis import render
    from dapt.analysis.rows import markdown_table
    from dapt.analysis.summary import Summary

    monkeypatch.chdir(REPO)
    summary = Summary.read("runs/fashion_quick")
    assert main(["report", "params/fashion_quick.yaml"]) == 0
    out = capsys.readouterr().out
    assert render.configuration_table(summary.configurations) in out
    assert render.claims_table(summary.comparisons) in out and "| pre-training | efficientnet_lite0 |" in out
    assert render.bullets(render.prose(summary)) in out
    assert markdown_table(summary.rows) not in out  # the per-run table only with --runs
    assert main(["report", "runs/fashion_quick", "--runs"]) == 0
    with_runs = capsys.readouterr().out
    assert with_runs.startswith(out.rstrip("\n")) and with_runs.rstrip("\n").endswith(markdown_table(summary.rows))


def test_report_markdown_is_the_readme_block_of_a_study_folder(capsys, monkeypatch):
    from dapt.analysis import results

    monkeypatch.chdir(REPO / "runs")  # a folder relative to where the command is typed
    assert main(["report", "fashion_quick", "--markdown"]) == 0
    monkeypatch.chdir(REPO)
    assert capsys.readouterr().out == results.block("runs/fashion_quick") + "\n"
    assert main(["report", "params/fashion_quick.yaml", "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("<!-- results: runs/fashion_quick -->\n")


def test_report_refuses_what_is_not_a_study_in_one_line(capsys, monkeypatch):
    monkeypatch.chdir(REPO)
    assert main(["report", "runs/fashion_quick/lite2_ft"]) == 2
    assert capsys.readouterr().err == (f"dapt: error: runs/fashion_quick/lite2_ft: not a study folder of this project: "
                                       f"give runs/<study> (in {REPO}) or a params file\n")
    assert main(["report", "runs/nope"]) == 2
    assert capsys.readouterr().err == "dapt: error: runs/nope: no such params file or study folder (runs/<study>)\n"
    with pytest.raises(SystemExit) as done:
        main(["report", "runs/fashion_quick", "--markdown", "--html"])
    assert done.value.code == 2 and "not allowed with argument" in capsys.readouterr().err


def test_status_shows_accuracy_in_percent_and_one_provenance_line(tmp_path, capsys, monkeypatch):
    import json

    (tmp_path / "params").mkdir()
    (tmp_path / "params/s.yaml").write_text(
        "study: s\ndefaults: {dataset: digits}\nruns:\n  - {stage: teacher, name: t, model: resnet18, init: fr}\n"
        "  - {stage: distill, name: old, distiller: none}\n  - {stage: distill, name: new, distiller: none, seed: 1}\n")
    known = {"commit": "36f5de0" + "0" * 33, "dirty": False, "torch": "2.14.1", "device": "cpu",
             "device_name": "AMD EPYC", "precision": {"teacher": "float32"}}
    for name, acc, record in (("t", 0.83171, {"provenance": known}), ("old", 0.5, {})):
        (tmp_path / "runs/s" / name).mkdir(parents=True)
        (tmp_path / "runs/s" / name / "metrics.json").write_text(json.dumps({"status": "done", "test_acc": acc,
                                                                             "wall_time_s": 12.0, **record}))
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert main(["status", "params/s.yaml"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[3:6] == ["test", "acc", "%"]
    assert lines[2].split()[:4] == ["t", "teacher", "report-only", "83.17"] and lines[3].split()[3] == "50.00"
    assert lines[4].split()[:4] == ["new", "distill", "new", "-"]
    # the run not yet recorded is not counted; the one recorded before provenance is
    assert lines[5] == "  provenance: 1 run at 36f5de0; 1 run recorded before provenance (unknown); torch 2.14.1; " \
                       "cpu (AMD EPYC)"
