"""benchmarks/study_speed.py keeps running through dapt's real distill stage (tiny settings, on digits): the
three ways, one shared teacher cache with features for the students that read them, the exact last line,
and nothing left behind in the temporary folder."""
from __future__ import annotations

import importlib.util
import re
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "study_speed.py"
LAST = re.compile(r"study_speed: S=2 shared/alone=\d+\.\d\d live/alone=\d+\.\d\d acc_shared=[01]\.\d{4} "
                  r"acc_live=[01]\.\d{4}")


def load_benchmark():
    spec = importlib.util.spec_from_file_location("study_speed", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_benchmark_trains_every_student_three_ways_with_one_shared_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = load_benchmark()
    assert bench.main(["--dataset", "digits", "--train-subset", "300", "--image-size", "16", "--epochs", "2",
                       "--students", "kd", "crd", "--teacher-model", "resnet18", "--teacher-epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert LAST.fullmatch(lines[-1]), lines[-1]
    runs = [tuple(line.split()[:2]) for line in lines if re.match(r"(alone|shared|live) +\S+ +[0-9.]+ s  cpu", line)]
    assert runs == [("alone", "none_0"), ("alone", "none_1"), ("shared", "kd"), ("shared", "crd"), ("live", "kd"),
                    ("live", "crd")]
    built = [line for line in lines if re.match(r"teacher targets: (reusing|\d+ of)", line)]
    assert len(built) == 2 and "2 of 2 views" in built[0] and "(logits + features)" in built[0]
    assert built[1].startswith("teacher targets: reusing 2 views")  # crd reads what kd's run built
    assert not list(tmp_path.glob("dapt-study-speed-*"))


def test_a_bad_setting_is_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert load_benchmark().main(["--dataset", "digits", "--image-size", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: benchmark run alone/none_0: image_size")
    with pytest.raises(SystemExit):
        load_benchmark().main(["--students", "none"])  # none learns without a teacher: not a student here
