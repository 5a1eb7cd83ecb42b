"""benchmarks/study_speed.py keeps running through dapt's real distill stage (tiny settings, on digits): the
three ways, one shared teacher cache with features for the students that read them, the exact last line,
and nothing left behind in the temporary folder."""
from __future__ import annotations

import re
import tempfile

import pytest
from projects import load_benchmark

LAST = re.compile(r"study_speed: S=2 shared/alone=\d+\.\d\d live/alone=\d+\.\d\d acc_shared=[01]\.\d{4} "
                  r"acc_live=[01]\.\d{4}")


@pytest.mark.slow
def test_the_benchmark_trains_every_student_three_ways_with_one_shared_cache(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    bench = load_benchmark("study_speed")
    assert bench.main(["--dataset", "digits", "--train-subset", "300", "--image-size", "16", "--epochs", "2",
                       "--students", "kd", "crd", "--teacher-model", "resnet18", "--teacher-epochs", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert LAST.fullmatch(lines[-1]), lines[-1]
    runs = [m.groups() for m in (re.match(r"(alone|shared|live) +(.+?) +[0-9.]+ s  cpu", line) for line in lines) if m]
    assert runs == [("alone", "none_0_s0"), ("alone", "none_1_s0"), ("shared", "teacher pass"), ("shared", "kd_s0"),
                    ("shared", "crd_s0"), ("live", "kd_s0"), ("live", "crd_s0")]  # printed by way
    built = [line for line in lines if re.match(r"teacher targets: (reusing|\d+ of)", line)]
    assert len(built) == 3 and "2 of 2 views" in built[0] and "(logits + features)" in built[0]
    assert all(line.startswith("teacher targets: reusing 2 views") for line in built[1:])  # the students read it
    assert re.fullmatch(r"shared = the teacher pass \d\.\d\d \+ the students \d\.\d\d \(.*\), in units of alone",
                        lines[-2])
    assert not list(tmp_path.glob("dapt-study-speed-*"))


def test_a_bad_setting_is_one_line_before_any_training(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    assert load_benchmark("study_speed").main(["--dataset", "digits", "--image-size", "0"]) == 2
    assert capsys.readouterr().err.startswith("error: benchmark run alone/none_0_s0: image_size")
    with pytest.raises(SystemExit):
        load_benchmark("study_speed").main(["--students", "none"])  # none learns without a teacher: not a student here
