"""The `dapt` command's help, listings and error handling (no notebooks executed here)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dapt.cli import main


def test_help_gives_each_command_its_explanation(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "validate and execute the runs of a params file" in out
    assert "show the state of each run of a params file" in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = capsys.readouterr().out
    assert "re-execute runs that are already done" in out and "execute only these runs" in out


def test_list_shows_every_registered_name(capsys):
    from dapt.data import DATASETS
    from dapt.distillers import DISTILLERS
    from dapt.distillers.projectors import CONNECTORS, PROJECTORS
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

    from dapt import config
    from dapt.fields import help_of

    assert main(["params", "distill"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    fields = {f.name: f for f in dataclasses.fields(config.DistillConfig)}
    assert set(lines) == set(fields)
    for name in ("kd_T", "crd_k", "srrl_connector", "epochs"):
        assert help_of(fields[name]) in lines[name] and repr(fields[name].default) in lines[name]
    assert "mlp, mlp2" in lines["srrl_connector"] and "none, kd" in lines["distiller"]
    assert main(["params", "pretrain"]) == 2
    assert "unknown stage 'pretrain'" in capsys.readouterr().err


def test_missing_file_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dapt.cli", "run", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no such params file") and "Traceback" not in result.stderr
