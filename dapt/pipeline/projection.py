"""What a study will cost before it runs: its configurations, a timing of them (``dapt run --timing``,
measured by ``dapt.stages.timing``), the projected serial and parallel wall time, and the timing file
``--dry-run`` reads back.

No torch here: the measuring happens in the child process ``python -m dapt.stages.timing``; this module
groups runs, does the arithmetic and keeps the file.

A configuration is the runs of a study equal in every resolved parameter but ``seed`` and the keys that
do not change what a run computes (``NOT_CONFIGURATION``, as ``dapt.analysis.configurations`` groups them); a
reference to another run counts as that run's configuration, so the students of per-seed teachers group.
A timing is stored under ``.dapt-cache/timing/<study>.json`` (git-ignored, never under ``runs/``), keyed by
a digest of each configuration's parameters, so a dry run matches it only while the values are the same.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from dapt.core.files import atomic_write_json, read_json, repo_root
from dapt.core.records import NOT_CONFIGURATION
from dapt.pipeline.study import RunSpec, Study

TIMING_DIR = Path(".dapt-cache") / "timing"


@dataclass
class Configuration:
    """The runs of a study that are one configuration; ``runs`` in the study's order, the first one timed."""

    key: str  # digest of the resolved parameters but NOT_CONFIGURATION, references replaced by their configurations
    stage: str
    runs: list[RunSpec]

    @property
    def label(self) -> str:
        first = self.runs[0].name
        more = len(self.runs) - 1
        return first if not more else f"{first} +{more} seed{'s' if more > 1 else ''}"


def configurations(study: Study) -> list[Configuration]:
    """The study's configurations in the order of their first run."""
    by_folder = {spec.folder.as_posix(): spec for spec in study.runs}
    keys: dict[str, str] = {}

    def key(spec: RunSpec) -> str:
        if spec.name not in keys:  # runs are in dependency order, so a reference is keyed before its users
            params = {k: v for k, v in spec.params.items() if k not in NOT_CONFIGURATION}
            for name, value in params.items():
                if isinstance(value, str) and value in by_folder and by_folder[value].name in spec.refs:
                    params[name] = {"run of configuration": key(by_folder[value])}
            text = json.dumps([spec.stage, params], sort_keys=True, default=str)
            keys[spec.name] = hashlib.sha256(text.encode()).hexdigest()[:16]
        return keys[spec.name]

    grouped: dict[str, Configuration] = {}
    for spec in study.runs:
        grouped.setdefault(key(spec), Configuration(key(spec), spec.stage, [])).runs.append(spec)
    return list(grouped.values())


@dataclass
class Timed:
    """One configuration's timing. ``s_per_epoch`` None: not timed (``note`` says why); ``cache_s``: the
    teacher-cache passes its runs build (each pass is built once, by the first run of the study that needs it)."""

    label: str
    stage: str
    runs: list[str]
    s_per_epoch: float | None
    epochs: int
    cache_s: float = 0.0
    note: str = ""

    @property
    def run_s(self) -> float:
        """One run's training epochs: s/epoch × epochs."""
        return (self.s_per_epoch or 0.0) * self.epochs

    @property
    def projected_s(self) -> float:
        """All its runs: s/epoch × epochs per run, plus the cache passes they build."""
        return self.run_s * len(self.runs) + self.cache_s


@dataclass
class Timing:
    """A study's timing: each configuration's, by key, and where and when it was measured."""

    study: str
    date: str
    device: str
    configurations: dict[str, Timed] = field(default_factory=dict)
    cache_by_run: dict[str, float] = field(default_factory=dict)  # run name -> the cache passes it builds

    def run_seconds(self) -> dict[str, float]:
        """Each run's projected seconds: its configuration's epochs and the cache passes it builds."""
        return {run: timed.run_s + self.cache_by_run.get(run, 0.0)
                for timed in self.configurations.values() for run in timed.runs}

    @property
    def total_s(self) -> float:
        return sum(timed.projected_s for timed in self.configurations.values())


def longest_chain(seconds: dict[str, float], refs: dict[str, list[str]]) -> float:
    """The seconds of the longest chain of runs each needing the one before (a teacher, then its student)."""
    memo: dict[str, float] = {}

    def finish(name: str) -> float:
        if name not in memo:
            memo[name] = seconds[name] + max((finish(r) for r in refs.get(name, []) if r in seconds), default=0.0)
        return memo[name]

    return max(map(finish, seconds), default=0.0)


def parallel_seconds(seconds: dict[str, float], refs: dict[str, list[str]], slots: int) -> float:
    """Wall seconds of the runs on ``slots`` parallel workers (``--executor ray``), a run starting once every run
    it needs is done: critical-path list scheduling. Whenever a worker is free, the ready run with the longest
    chain of runs still after it starts (the classic HLFET heuristic: the study's teachers first). Greedy, so
    the result lies between the longest chain and the serial total."""
    after: dict[str, list[str]] = {name: [] for name in seconds}
    for name in seconds:
        for ref in refs.get(name, []):
            if ref in after:
                after[ref].append(name)
    tail: dict[str, float] = {}

    def level(name: str) -> float:  # the longest chain from this run to the end
        if name not in tail:
            tail[name] = seconds[name] + max((level(n) for n in after[name]), default=0.0)
        return tail[name]

    done_at: dict[str, float] = {}
    running: list[tuple[float, str]] = []
    waiting = set(seconds)
    now = 0.0
    while waiting or running:
        ready = sorted((n for n in waiting if all(r in done_at for r in refs.get(n, []) if r in seconds)),
                       key=lambda n: -level(n))
        for name in ready[:max(0, slots - len(running))]:
            waiting.discard(name)
            running.append((now + seconds[name], name))
        running.sort()
        now, name = running.pop(0)
        done_at[name] = now
    return now


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def table(timing: Timing, study: Study, slots: int) -> list[str]:
    """The lines ``dapt run --timing`` prints: per configuration its runs, s/epoch, epochs, the cache passes
    and the projection; the serial total, and the wall time on ``slots`` parallel workers."""
    rows = list(timing.configurations.values())
    width = max([24, *(len(t.label) for t in rows)])
    lines = [f"study {study.name}: timed on {timing.date}, {timing.device}",
             f"  {'configuration':<{width}} {'stage':<8} {'runs':>4} {'s/epoch':>9} {'epochs':>6} {'cache s':>8} "
             f"{'projected':>10}"]
    for t in rows:
        rate = f"{t.s_per_epoch:9.2f}" if t.s_per_epoch is not None else f"{'-':>9}"
        lines.append(f"  {t.label:<{width}} {t.stage:<8} {len(t.runs):>4} {rate} {t.epochs:>6} {t.cache_s:>8.1f} "
                     f"{minutes(t.projected_s):>10}" + (f"  ({t.note})" if t.note else ""))
    seconds = timing.run_seconds()
    refs = {spec.name: spec.refs for spec in study.runs}
    parallel, chain = parallel_seconds(seconds, refs, slots), longest_chain(seconds, refs)
    lines.append(f"  total, one run after the other: {minutes(timing.total_s)} ({timing.total_s:.0f} s)")
    lines.append(f"  --executor ray, {slots} runs at once: {minutes(parallel)} ({parallel:.0f} s; critical-path list "
                 f"schedule; the longest chain of runs: {chain:.0f} s). Parallel runs on one machine share its "
                 f"cores: this holds when each has cores or a GPU of its own")
    untimed = [t.label for t in rows if t.s_per_epoch is None and t.stage != "report"]
    if untimed:
        lines.append(f"  not timed, counted as 0: {', '.join(untimed)}")
    return lines


def timing_file(study_name: str) -> Path:
    return repo_root() / TIMING_DIR / f"{study_name}.json"


def save(timing: Timing) -> Path:
    path = timing_file(timing.study)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, asdict(timing))
    return path


def load(study_name: str) -> Timing | None:
    """The study's saved timing, or None (none saved, or unreadable: a dry run then projects nothing)."""
    data = read_json(timing_file(study_name))
    try:
        timing = Timing(**{**data, "configurations": {}})
        timing.configurations = {key: Timed(**value) for key, value in data["configurations"].items()}
        return timing
    except (TypeError, KeyError, AttributeError):
        return None


def projected_lines(study: Study, timing: Timing | None) -> dict[str, str]:
    """Run name → ``projected: X (timed on DATE, DEVICE)`` for the runs whose configuration the timing holds."""
    if timing is None:
        return {}
    seconds = timing.run_seconds()
    found = {}
    for conf in configurations(study):
        timed = timing.configurations.get(conf.key)
        if timed is None or timed.s_per_epoch is None:
            continue
        for spec in conf.runs:
            # a run the timing knew by another name (the file renamed it) still has its configuration's epochs
            found[spec.name] = (f"projected: {minutes(seconds.get(spec.name, timed.run_s))} "
                                f"(timed on {timing.date}, {timing.device})")
    return found
