"""``dapt run FILE --timing``: a tiny digits study (a teacher and two students differing in distiller, two seeds
each: three configurations) is timed with the real stages in a child process; the table's arithmetic holds,
nothing is written under runs/, and a following ``--dry-run`` shows each run's projection."""
from __future__ import annotations

import re

import pytest
from projects import new_project, working_in

from dapt.cli import main
from dapt.pipeline import projection
from dapt.pipeline.study import load_study

TINY = """\
study: tiny
defaults: {dataset: digits, image_size: 16, train_subset: 200, epochs: 3, batch_size: 32, eval_subset: 50}
runs:
  - {stage: teacher, name: "t_s{seed}", model: resnet18, init: fr, grid: {seed: [0, 1]}}
  - {stage: distill, name: "{distiller}_s0", student: mobilenet_v2, teacher: t_s0, seed: 0, grid: {distiller: [none, kd]}}
  - {stage: distill, name: "{distiller}_s1", student: mobilenet_v2, teacher: t_s1, seed: 1, grid: {distiller: [none, kd]}}
  - {stage: report, name: report}
"""


@pytest.fixture
def project(tmp_path):
    root = new_project(tmp_path / "project", {"tiny": TINY})
    for _ in working_in(root):
        yield root


def test_runs_equal_but_for_seed_are_one_configuration(project):
    confs = projection.configurations(load_study("params/tiny.yaml"))
    assert [[spec.name for spec in conf.runs] for conf in confs] == [
        ["t_s0", "t_s1"], ["none_s0", "none_s1"], ["kd_s0", "kd_s1"], ["report"]]
    assert confs[0].label == "t_s0 +1 seed"


def test_the_parallel_projection_is_a_dependency_respecting_list_schedule():
    seconds = {"t": 10.0, "a": 5.0, "b": 5.0, "c": 5.0, "u": 1.0}
    refs = {"a": ["t"], "b": ["t"], "c": ["t"]}
    assert projection.longest_chain(seconds, refs) == 15.0
    # the teacher t (longest chain after it) starts first, u fills the other worker; then a, b, c on two
    assert projection.parallel_seconds(seconds, refs, 2) == 20.0
    assert projection.parallel_seconds(seconds, refs, 3) == 15.0
    assert projection.parallel_seconds(seconds, refs, 1) == sum(seconds.values())


@pytest.mark.slow  # times the study in a fresh interpreter (python -m dapt.stages.timing, two at once)
def test_timing_prints_the_projection_writes_nothing_under_runs_and_feeds_the_dry_run(project, capsys):
    assert main(["run", "params/tiny.yaml", "--timing", "--parallel", "2"]) == 0
    out = capsys.readouterr().out
    assert not (project / "runs").exists(), out
    assert re.search(r"^\[3/4\] kd_s0 \+1 seed: \d+\.\d\d s/epoch", out, re.M), out

    timing = projection.load("tiny")
    rows = list(timing.configurations.values())
    assert [(t.label, len(t.runs), t.epochs) for t in rows] == [
        ("t_s0 +1 seed", 2, 3), ("none_s0 +1 seed", 2, 3), ("kd_s0 +1 seed", 2, 3), ("report", 1, 0)]
    for t in rows[:3]:
        assert t.s_per_epoch > 0
        assert t.projected_s == pytest.approx(len(t.runs) * t.s_per_epoch * t.epochs + t.cache_s)
        line = next(line for line in out.splitlines() if line.strip().startswith(t.label))
        assert f"{t.s_per_epoch:9.2f}" in line and f"{t.cache_s:8.1f}" in line
    assert rows[0].cache_s == 0 and rows[1].cache_s > 0 and rows[2].cache_s > 0  # students pay their teacher's pass
    assert timing.total_s == pytest.approx(sum(t.projected_s for t in rows))

    total = float(re.search(r"one run after the other: .* \((\d+) s\)", out).group(1))
    parallel, chain = map(float, re.search(r"2 runs at once: .* \((\d+) s; .*longest chain of runs: (\d+) s\)",
                                           out).groups())
    assert total == round(timing.total_s)
    assert chain - 1 <= parallel <= total + 1

    assert main(["run", "params/tiny.yaml", "--dry-run"]) == 0
    dry = capsys.readouterr().out
    assert dry.count("projected: ") == 6 and f"(timed on {timing.date}, {timing.device})" in dry
    assert not (project / "runs").exists()

    assert main(["run", "params/tiny.yaml", "--dry-run", "--set", "epochs=2"]) == 0
    assert "projected: " not in capsys.readouterr().out  # the timing was of other values


def test_timing_takes_no_option_of_an_execution(project, capsys):
    assert main(["run", "params/tiny.yaml", "--timing", "--only", "t_s0"]) != 0
    assert "--timing runs nothing of the study" in capsys.readouterr().err
    assert main(["run", "params/tiny.yaml", "--parallel", "2"]) != 0
