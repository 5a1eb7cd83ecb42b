"""The `dapt` command's help, listings and error handling (no notebooks executed here)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from dapt.cli import main


def test_help_explains_each_command(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for command in ("run", "status", "list", "params"):
        assert command in out
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "--force" in capsys.readouterr().out


def test_list_shows_every_registry(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("teacher", "distill", "report", "fashion_mnist", "cub_2011", "efficientnet_lite2", "vit_b_16",
                 "align_uniform", "crd", "srrl", "mocov2", "simclrv2"):
        assert name in out


def test_params_lists_keys_defaults_and_choices(capsys):
    assert main(["params", "distill"]) == 0
    out = capsys.readouterr().out
    assert "kd_T" in out and "4.0" in out and "none, kd" in out
    assert main(["params", "pretrain"]) == 2
    assert "unknown stage 'pretrain'" in capsys.readouterr().err


def test_missing_file_is_one_line_without_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "dapt.cli", "run", str(tmp_path / "nope.yaml")],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().endswith("no such params file") and "Traceback" not in result.stderr
