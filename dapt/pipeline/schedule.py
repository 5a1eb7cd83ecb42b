"""The decisions of a study's execution, shared by every executor (in-process, Ray).

An executor only asks ``Schedule.ready`` for the runs to start now, executes them however it
executes (one after the other in this process, or as Ray tasks on a cluster), and reports each
``Outcome`` back with ``Schedule.finish``. Everything else is decided here, once: which runs are
skipped (done with the same parameters, no run they need re-executed now), which are ``blocked``
(a run they need did not finish), which are ``not run`` (the study stopped at a failure), the
``resume`` flag, the final statuses, and the lines the user reads.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

from dapt.pipeline.study import RunSpec

BROKEN = ("failed", "interrupted", "blocked", "held")


@dataclass
class Outcome:
    """How one executed run ended, as recorded in its ``metrics.json``."""

    status: str  # done / failed (or what the notebook recorded); held: another process executes it, untouched
    seconds: float
    reason: str = ""  # the error of a failed run, one line
    test_acc: float | None = None


class Schedule:
    """The runs of a study (``runner.plan``'s states, in dependency order) and what became of them.

    A run is *settled* when it has a result. A pending run is decided once every run it needs
    (``spec.refs``, among the planned runs) is settled; runs outside the plan (``--only``) count as
    settled. Because the states are in dependency order, one pass in order decides chains of skips.
    """

    def __init__(self, states: list, force: bool = False, keep_going: bool = False, resume: bool = False,
                 echo: Callable[[str], None] = print):
        self.states = list(states)
        self.force, self.keep_going, self.resume, self.echo = force, keep_going, resume, echo
        self.planned = {state.spec.name for state in self.states}
        self.pending = list(self.states)
        self.results: dict[str, str] = {}
        self.running: dict[str, RunSpec] = {}
        self.executed: set[str] = set()  # runs executed (and done) in this invocation
        self.stopped_by: str | None = None
        self._heads = {state.spec.name: f"[{i}/{len(self.states)}] {state.spec.stage} {state.spec.name}"
                       for i, state in enumerate(self.states, 1)}

    @property
    def finished(self) -> bool:
        return not self.pending and not self.running

    def head(self, name: str) -> str:
        return self._heads[name]

    def _waits(self, spec: RunSpec) -> bool:
        return any(r in self.planned and r not in self.results for r in spec.refs)

    def ready(self, limit: int | None = None) -> list[RunSpec]:
        """Decide every pending run that can be decided now; return up to ``limit`` runs to execute
        (now marked running, ``resume`` applied). Runs beyond the limit stay pending."""
        to_run: list[RunSpec] = []
        for state in list(self.pending):
            spec = state.spec
            head = self.head(spec.name)
            if self.stopped_by:
                self._settle(spec, "not run")
                self.echo(f"{head}: not run, the study stopped at {self.stopped_by} "
                          "(--keep-going runs what does not need it)")
                continue
            if self._waits(spec):
                continue
            broken = [r for r in spec.refs if self.results.get(r) in BROKEN]
            if broken and not spec.collects:
                self._settle(spec, "blocked")
                self.echo(f"{head}: skipped, it needs {', '.join(broken)} which did not finish")
                continue
            if state.skipped(self.force, self.executed):
                self._settle(spec, "done")
                self.echo(f"{head}: already done with these parameters, skipped ({spec.folder.as_posix()})")
                continue
            if limit is not None and len(to_run) >= limit:
                continue
            if self.resume and hasattr(spec.cfg, "resume"):
                spec = dataclasses.replace(spec, cfg=dataclasses.replace(spec.cfg, resume=True),
                                           set_keys=[*spec.set_keys, "resume"])
            self.pending.remove(state)
            self.running[spec.name] = spec
            self.echo(f"{head}: running -> {spec.folder.as_posix()}/notebook.ipynb")
            to_run.append(spec)
        return to_run

    def _settle(self, spec: RunSpec, status: str) -> None:
        self.pending = [s for s in self.pending if s.spec.name != spec.name]
        self.results[spec.name] = status

    def finish(self, name: str, outcome: Outcome) -> None:
        """Record how a running run ended; a failure stops the study unless ``keep_going``."""
        spec = self.running.pop(name)
        self.results[name] = outcome.status
        head = self.head(name)
        if outcome.status in ("failed", "held"):
            if outcome.status == "held":
                self.echo(f"{head}: not executed: {outcome.reason}")
            else:
                self.echo(f"{head}: FAILED ({outcome.reason}); see {spec.folder.as_posix()}/notebook.ipynb")
            if not self.keep_going and not self.stopped_by:
                self.stopped_by = name
            return
        self.executed.add(name)
        acc = outcome.test_acc
        summary = f", test_acc {acc:.4f}" if isinstance(acc, (int, float)) else ""
        self.echo(f"{head}: {outcome.status} in {outcome.seconds:.0f} s{summary}")

    def interrupted(self, name: str) -> None:
        """A running run stopped by Ctrl-C or SIGTERM (its record already says ``interrupted``)."""
        self.running.pop(name, None)
        self.results[name] = "interrupted"
        self.echo(f"{self.head(name)}: interrupted; `dapt run` starts it again, "
                  "`dapt run --resume` continues from its last epoch")
