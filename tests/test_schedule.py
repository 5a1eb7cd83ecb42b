"""The Schedule's decisions, which every executor shares: driven here by hand, no notebook executed."""
from __future__ import annotations

import textwrap

import pytest

from dapt.pipeline.runner import RunState
from dapt.pipeline.schedule import Outcome, Schedule
from dapt.pipeline.study import load_study

STUDY = """
study: sched
defaults: {dataset: digits}
runs:
  - {stage: teacher, name: teacher}
  - {stage: distill, name: kd, teacher: teacher, distiller: kd}
  - {stage: distill, name: crd, teacher: teacher, distiller: crd}
  - {stage: distill, name: scratch, distiller: none}
  - {stage: report, name: report}
"""


@pytest.fixture
def states(tmp_path):
    (tmp_path / "sched.yaml").write_text(textwrap.dedent(STUDY))
    study = load_study(tmp_path / "sched.yaml", check_data=False)
    return [RunState(spec, "new", False, []) for spec in study.runs]


def names(specs) -> list[str]:
    return [spec.name for spec in specs]


def test_parallel_hand_out_follows_the_references(states):
    lines = []
    schedule = Schedule(states, echo=lines.append)
    assert names(schedule.ready()) == ["teacher", "scratch"]  # the students wait for their teacher
    assert schedule.ready() == []
    schedule.finish("teacher", Outcome("done", 3.0, test_acc=0.5))
    assert names(schedule.ready()) == ["kd", "crd"]  # the report waits for every run
    for name in ("scratch", "kd", "crd"):
        schedule.finish(name, Outcome("done", 1.0))
    assert names(schedule.ready()) == ["report"]
    schedule.finish("report", Outcome("done", 1.0))
    assert schedule.finished and set(schedule.results.values()) == {"done"}
    assert "[1/5] teacher teacher: done in 3 s, test_acc 0.5000" in lines


def test_one_at_a_time_is_the_study_order(states):
    schedule = Schedule(states)
    order = []
    while not schedule.finished:
        [spec] = schedule.ready(limit=1)
        order.append(spec.name)
        schedule.finish(spec.name, Outcome("done", 1.0))
    assert order == ["teacher", "kd", "crd", "scratch", "report"]


def test_a_failure_stops_what_is_not_started_and_lets_runs_in_flight_finish(states):
    lines = []
    schedule = Schedule(states, echo=lines.append)
    schedule.ready()  # teacher and scratch in flight
    schedule.finish("teacher", Outcome("failed", 1.0, "ValueError: bad"))
    assert schedule.ready() == [] and not schedule.finished  # scratch is still executing
    schedule.finish("scratch", Outcome("done", 1.0))
    assert schedule.finished
    assert schedule.results == {"teacher": "failed", "scratch": "done", "kd": "not run", "crd": "not run",
                                "report": "not run"}
    assert "[2/5] distill kd: not run, the study stopped at teacher (--keep-going runs what does not need it)" in lines


def test_keep_going_blocks_only_the_dependents_and_the_report_still_runs(states):
    schedule = Schedule(states, keep_going=True)
    schedule.ready()
    schedule.finish("teacher", Outcome("failed", 1.0, "ValueError: bad"))
    assert schedule.ready() == []
    assert schedule.results == {"teacher": "failed", "kd": "blocked", "crd": "blocked"}
    schedule.finish("scratch", Outcome("done", 1.0))
    assert names(schedule.ready()) == ["report"]


def test_done_runs_are_skipped_unless_a_run_they_need_was_executed_now(states):
    done = [RunState(s.spec, "done", True, []) if s.spec.name != "teacher" else s for s in states]
    schedule = Schedule(done)
    assert names(schedule.ready()) == ["teacher"]  # scratch, done and needing nothing, is skipped
    assert schedule.results == {"scratch": "done"}
    schedule.finish("teacher", Outcome("done", 1.0))
    assert names(schedule.ready()) == ["kd", "crd"]  # their teacher changed: executed again
    resumed = Schedule(states, resume=True).ready()
    assert all(spec.cfg.resume and "resume" in spec.set_keys for spec in resumed)
