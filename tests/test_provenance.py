"""Provenance: which code (commit, dirty code paths), libraries, device and precisions made a run, in its
``metrics.json`` from the start, in its executed notebook's metadata, and one line per study."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from dapt.core import provenance
from dapt.core.files import read_json
from dapt.core.records import RunRecord, mark_status
from dapt.pipeline.runner import stamp_provenance

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def git(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t", *args],
                          capture_output=True, text=True, check=True).stdout.strip()


def version_of(root: Path) -> tuple[str, bool | None]:
    provenance.code_version.cache_clear()  # cached per process: each state of the checkout is asked afresh
    return provenance.code_version(str(root))


@pytest.fixture
def checkout(tmp_path):
    """A git checkout holding code (dapt/, notebooks/, pyproject.toml) and a committed run record (runs/)."""
    root = tmp_path / "checkout"
    for name, text in {"dapt/a.py": "x = 1\n", "notebooks/n.ipynb": "{}\n", "pyproject.toml": "[project]\n",
                       "runs/s/r/metrics.json": "{}\n", "params/s.yaml": "study: s\n"}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    git(root.parent, "init", "-q", str(root))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    yield root
    provenance.code_version.cache_clear()


@needs_git
def test_a_clean_checkout_gives_its_commit_and_not_dirty(checkout):
    assert version_of(checkout) == (git(checkout, "rev-parse", "HEAD"), False)


@needs_git
@pytest.mark.parametrize("change", ["dapt/a.py", "dapt/new.py", "notebooks/n.ipynb", "pyproject.toml"])
def test_a_change_to_the_code_is_dirty(checkout, change):
    (checkout / change).write_text("changed\n")
    commit, dirty = version_of(checkout)
    assert commit == git(checkout, "rev-parse", "HEAD") and dirty is True


@needs_git
def test_runs_and_params_are_not_code(checkout):
    """A study re-executed over committed runs changes runs/ without changing what computes."""
    (checkout / "runs/s/r/metrics.json").write_text('{"status": "done"}\n')
    (checkout / "runs/s/new").mkdir()
    (checkout / "runs/s/new/metrics.json").write_text("{}\n")
    (checkout / "params/s.yaml").write_text("study: s2\n")
    assert version_of(checkout)[1] is False


def test_outside_a_git_checkout_the_code_is_unknown(tmp_path):
    (tmp_path / "dapt").mkdir()
    assert version_of(tmp_path) == (provenance.UNKNOWN, None)
    assert provenance.code_label({"commit": provenance.UNKNOWN, "dirty": None}) == provenance.UNKNOWN


def test_collect_records_code_libraries_device_precision_and_date():
    record = provenance.collect("cuda:0", "NVIDIA H200", {"student": "bfloat16", "teacher": "bfloat16"})
    assert set(record) == {"dapt", "commit", "dirty", "python", "torch", "torchvision", "device", "device_name",
                           "cpu_flags", "precision", "date"}
    from dapt import __version__

    assert record["dapt"] == __version__ and record["torch"] == provenance.library_version("torch") != "unknown"
    assert (record["device"], record["device_name"]) == ("cuda:0", "NVIDIA H200")
    assert set(record["cpu_flags"]) <= set(provenance.PRECISION_FLAGS)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", record["date"])
    assert provenance.collect()["device_name"] == provenance.cpu_model()  # the CPU's model on the CPU
    json.dumps(record)  # plain values: it goes into metrics.json as it is


def test_labels_say_what_decides_whether_two_runs_are_alike():
    commit = "36f5de0" + "a" * 33
    assert provenance.code_label({"commit": commit, "dirty": False}) == "36f5de0"
    assert provenance.code_label({"commit": commit, "dirty": True}) == "36f5de0+dirty"
    assert provenance.code_label(None) == provenance.code_label({}) == provenance.UNKNOWN
    both = {"precision": {"teacher": "bfloat16", "student": "float32"}}
    assert provenance.precision_label(both) == "student float32, teacher bfloat16"  # the student first
    assert provenance.precision_label({"precision": {"generator": "float32"}}) == "generator float32"
    assert provenance.precision_label({"precision": {}}) == provenance.precision_label(None) == provenance.UNKNOWN


def known(commit: str = "36f5de0" + "0" * 33, dirty: bool = False, torch: str = "2.14.1",
          device: str = "cpu", name: str = "AMD EPYC") -> dict:
    return {"commit": commit, "dirty": dirty, "torch": torch, "device": device, "device_name": name}


def test_the_study_line_counts_code_versions_and_runs_recorded_before_provenance():
    assert provenance.study_line([]) == "provenance: no runs recorded yet"
    line = provenance.study_line([known()] * 14 + [None, {}])
    assert line == "provenance: 14 runs at 36f5de0; 2 runs recorded before provenance (unknown); torch 2.14.1; " \
                   "cpu (AMD EPYC)"
    assert provenance.study_line([None]) == "provenance: 1 run recorded before provenance (unknown)"
    mixed = provenance.study_line([known(), known(), known(dirty=True, torch="2.15.0", device="cuda:0",
                                                          name="NVIDIA H200")])
    assert mixed == "provenance: 2 runs at 36f5de0, 1 run at 36f5de0+dirty; torch 2.14.1 ×2, torch 2.15.0 ×1; " \
                    "cpu (AMD EPYC) ×2, cuda:0 (NVIDIA H200) ×1"


def test_a_run_record_opens_with_its_provenance_and_the_training_code_completes_it(tmp_path):
    record = RunRecord.start(tmp_path / "r", "distill", {"x": 1}, device="cuda:0", device_name="NVIDIA H200")
    started = read_json(tmp_path / "r/metrics.json")["provenance"]
    assert (started["device"], started["device_name"], started["precision"]) == ("cuda:0", "NVIDIA H200", {})
    assert started["commit"] == provenance.code_version()[0]
    record.complete_provenance(teacher="bfloat16")
    record.complete_provenance(device="cpu", student="float32", generator=None)
    done = read_json(tmp_path / "r/metrics.json")["provenance"]
    assert (done["device"], done["device_name"]) == ("cpu", provenance.cpu_model())
    assert done["precision"] == {"teacher": "bfloat16", "student": "float32"}
    assert provenance.precision_label(done) == "student float32, teacher bfloat16"


def test_a_resumed_run_keeps_the_code_and_date_of_its_earlier_attempts(tmp_path):
    RunRecord.start(tmp_path / "r", "teacher", {"x": 1})
    first = read_json(tmp_path / "r/metrics.json")["provenance"]
    RunRecord.start(tmp_path / "r", "teacher", {"x": 1}, resume=True)
    RunRecord.start(tmp_path / "r", "teacher", {"x": 1}, resume=True)
    again = read_json(tmp_path / "r/metrics.json")["provenance"]
    earlier = {k: first[k] for k in ("commit", "dirty", "date")}
    assert len(again["earlier_attempts"]) == 2 and again["earlier_attempts"][0] == earlier
    RunRecord.start(tmp_path / "r", "teacher", {"x": 1})  # a fresh start is one attempt again
    assert "earlier_attempts" not in read_json(tmp_path / "r/metrics.json")["provenance"]


def test_a_run_that_stopped_before_its_record_started_still_says_which_code(tmp_path):
    mark_status(tmp_path, "failed", "ConfigError: bad")
    metrics = read_json(tmp_path / "metrics.json")
    assert metrics["provenance"]["commit"] == provenance.code_version()[0]
    assert metrics["provenance"]["device"] == provenance.UNKNOWN
    metrics["provenance"] = {"commit": "kept"}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    mark_status(tmp_path, "interrupted")  # a record's own provenance is never replaced
    assert read_json(tmp_path / "metrics.json")["provenance"] == {"commit": "kept"}


def test_the_runner_copies_the_provenance_into_the_executed_notebook(tmp_path):
    notebook = {"cells": [], "metadata": {"papermill": {"input_path": "notebooks/teacher.ipynb"}}, "nbformat": 4,
                "nbformat_minor": 5}
    (tmp_path / "notebook.ipynb").write_text(json.dumps(notebook))
    stamp_provenance(tmp_path)  # no record yet: the notebook is left as it is
    assert json.loads((tmp_path / "notebook.ipynb").read_text()) == notebook
    (tmp_path / "metrics.json").write_text(json.dumps({"status": "done", "provenance": known()}))
    stamp_provenance(tmp_path)
    text = (tmp_path / "notebook.ipynb").read_text()
    stamped = json.loads(text)
    assert stamped["metadata"]["dapt"]["provenance"] == known()
    assert stamped["metadata"]["papermill"] == notebook["metadata"]["papermill"] and text.endswith("}\n")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/notebook.ipynb").write_text("{not json")
    (tmp_path / "broken/metrics.json").write_text(json.dumps({"provenance": known()}))
    stamp_provenance(tmp_path / "broken")  # an unreadable notebook is left as it is, without an error
    assert (tmp_path / "broken/notebook.ipynb").read_text() == "{not json"
