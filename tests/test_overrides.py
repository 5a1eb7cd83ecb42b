"""`dapt run --set key=value` and `--dry-run`: overrides validated like the file, a plan that creates nothing."""
from __future__ import annotations

import re
import textwrap

import pytest

from dapt.cli import main
from dapt.pipeline.config import ConfigError
from dapt.pipeline.study import load_study, parse_overrides

STUDY = """
study: s
defaults: {dataset: digits, image_size: 16, epochs: 3}
runs:
  - {stage: teacher, name: t, model: resnet18, init: fr, epochs: 5}
  - {stage: distill, name: d, student: mobilenet_v2, teacher: t, distiller: kd}
  - {stage: report, name: report}
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text(textwrap.dedent(STUDY))
    return tmp_path


def test_set_overrides_every_run_whose_stage_has_the_key(project):
    study = load_study("s.yaml", parse_overrides(["epochs=2", "kd_T=8", "wandb=offline"]))
    assert study.get("t").cfg.epochs == 2 and study.get("d").cfg.epochs == 2  # beats the run's own 5 too
    assert study.get("d").cfg.kd_T == 8.0 and not hasattr(study.get("t").cfg, "kd_T")
    assert "epochs" in study.get("d").set_keys and "kd_T" in study.get("d").injected
    assert study.get("report").cfg.wandb == "offline"


@pytest.mark.parametrize("item, fragment", [
    ("epoch=2", "unknown key 'epoch' (did you mean 'epochs'?)"),
    ("epochs", "write key=value"),
    ("run_dir=x", "unknown key 'run_dir'"),
    ("lr=!!python/object/apply:os.system [ls]", "not a plain YAML value"),
])
def test_a_bad_set_item_is_one_line(project, item, fragment):
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        parse_overrides([item])


def test_set_values_are_validated_with_the_run(project, capsys):
    assert main(["run", "s.yaml", "--set", "kd_T=-1", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run 'd': kd_T=-1.0 must be > 0" in err
    assert main(["run", "s.yaml", "--set", "distiller=bogus", "--dry-run"]) == 2
    assert "distiller: 'bogus' is not one of: none, kd" in capsys.readouterr().err
    assert not (project / "runs").exists()


def test_dry_run_prints_the_resolved_runs_and_creates_nothing(project, capsys):
    assert main(["run", "s.yaml", "--set", "epochs=2", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("study s (s.yaml): 3 runs, nothing executed")
    assert lines[1].split() == ["t", "teacher", "new", "run"]
    assert "epochs=2" in lines[2] and "model='resnet18'" in lines[2]
    assert lines[3].split() == ["d", "distill", "new", "run"]
    assert "teacher='runs/s/t'" in lines[4] and "distiller='kd'" in lines[4]
    assert lines[5].split() == ["report", "report", "new", "run"]
    assert not (project / "runs").exists()
