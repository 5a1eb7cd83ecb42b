"""benchmarks/distill_speed.py keeps running through dapt's real stages (tiny settings, on digits): the
three runs, their lines and the exact last line, and nothing left behind in the temporary folder."""
from __future__ import annotations

import re
import tempfile

import pytest
from projects import load_benchmark

LAST = re.compile(r"ratio cached/scratch=\d+\.\d\d live/scratch=\d+\.\d\d acc_cached=[01]\.\d{4} acc_live=[01]\.\d{4}")


@pytest.mark.slow
def test_the_benchmark_times_three_real_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = load_benchmark("distill_speed")
    assert bench.main(["--dataset", "digits", "--train-subset", "300", "--image-size", "16", "--epochs", "2",
                       "--views", "1", "--teacher-model", "resnet18", "--teacher-epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert LAST.fullmatch(lines[-1]), lines[-1]
    runs = {line.split()[0]: line for line in lines[-4:-1]}
    assert list(runs) == ["scratch", "live", "cached"]
    assert "views 2 " in runs["scratch"] and "views 2 " in runs["live"] and "views 1 " in runs["cached"]
    assert any(line.startswith("teacher resnet18 (fr, 1 epochs") for line in lines)
    assert not list(tmp_path.glob("dapt-distill-speed-*"))  # the runs' folders, checkpoints and caches are gone


def test_a_bad_setting_is_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = load_benchmark("distill_speed")
    assert bench.main(["--dataset", "digits", "--epochs", "0"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "epochs=0 must be >= 1" in err
    assert not list(tmp_path.glob("dapt-distill-speed-*"))
