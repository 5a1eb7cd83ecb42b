"""Run folders: layout, safe names, and the ``metrics.json`` status record.

A run lives in ``runs/<study>/<run>/`` and holds ``notebook.ipynb`` (the executed report),
``params.yaml`` (resolved parameters), ``metrics.json`` (the machine-readable record),
``figures/`` and git-ignored checkpoints. Every path recorded in a run is repo-relative.

``metrics.json`` carries from the start the run's ``provenance`` (``dapt.core.provenance``: the code, the
libraries, the device and the date), so a run that fails says which code failed; the training code
completes its device and resolved precisions once it knows them (``RunRecord.complete_provenance``).
"""
from __future__ import annotations

import os
import re
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping


from dapt.core import provenance
from dapt.core.ranks import is_main
from dapt.core.errors import DaptError
from dapt.core.files import atomic_write_json, atomic_write_yaml, read_json, tidy
from dapt.core.tracking import Tracker, for_run

RUNS_DIR = "runs"
STATUSES = ("running", "done", "failed", "interrupted")
# Params that change how a run is executed or logged, never what it computes: a finished run with other values
# is the same run, and runs that differ only in these (and the seed) form one configuration. A report's
# study_description and study_decision (the study file's description and decision rule, which `dapt run` hands it)
# change its text, not a number: a report recorded before its study stated a rule is not a changed run.
BOOKKEEPING = ("resume", "wandb", "wandb_project", "wandb_entity", "checkpoint_every", "device", "cache_features",
               "study_description", "study_decision")
# What a run's configuration is not: its seed, where it reads and writes, and the bookkeeping. Runs equal in every
# other resolved parameter are one configuration (the report's groups over seeds, `dapt run --timing`'s rows).
NOT_CONFIGURATION = ("seed", "run_dir", "data_root", "download", *BOOKKEEPING)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
# File systems hold names of 255 bytes; the temp files beside a run's records add about 40 to its name's files.
MAX_NAME = 200


def check_name(name: str, what: str = "run name") -> str:
    """Refuse names that could escape ``runs/`` or surprise a shell: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise DaptError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' (no '/', no '..', not starting with '.')"
        )
    if len(name) > MAX_NAME:
        raise DaptError(f"invalid {what} {name[:40]}... ({len(name)} characters): a folder name holds at most "
                        f"{MAX_NAME}; use a shorter name")
    return name


def run_dir(study: str, name: str) -> Path:
    """``runs/<study>/<name>`` as a repo-relative path, after checking both names."""
    return Path(RUNS_DIR) / check_name(study, "study name") / check_name(name)


class RunRecord:
    """The ``metrics.json`` of one run, updated atomically as training goes.

    ``status`` moves ``running`` → ``done`` | ``failed`` | ``interrupted``. Its ``tracker`` (wandb, as
    the params say) lives as long as the run: training logs epochs to it, ``finish`` or ``fail`` ends it.
    """

    def __init__(self, folder: str | os.PathLike, stage: str, params: Mapping[str, Any]):
        self.folder = Path(folder)
        self.metrics: dict[str, Any] = {"status": "running", "stage": stage, "params": dict(params), "history": []}
        self._started = time.time()
        self.tracker = Tracker("disabled", self.folder, self.folder.name, {})
        self.writes = True

    @classmethod
    def start(cls, folder: str | os.PathLike, stage: str, params: Mapping[str, Any], resume: bool = False,
              device: str = "cpu", device_name: str | None = None) -> "RunRecord":
        """Create the run folder, write ``params.yaml`` and a ``running`` ``metrics.json`` with the run's
        ``provenance`` on ``device`` (``device_name``: the GPU's; default the CPU model).

        With ``resume`` the history of an earlier attempt is kept (the trainer replays it from its checkpoint),
        and its provenance's code and date under ``provenance.earlier_attempts``. In a run of several processes
        (``dapt.core.distributed``) only rank 0's record writes anything.
        """
        record = cls(folder, stage, params)
        record.metrics["provenance"] = provenance.collect(device, device_name)
        record.writes = is_main()
        if not record.writes:
            return record
        record.folder.mkdir(parents=True, exist_ok=True)
        (record.folder / "figures").mkdir(exist_ok=True)
        previous = read_json(record.folder / "metrics.json") if resume else None
        earlier = (previous or {}).get("provenance")
        if isinstance(earlier, Mapping):  # the code of a resumed run's first epochs may not be this code
            record.metrics["provenance"]["earlier_attempts"] = [
                *earlier.get("earlier_attempts", []), {k: earlier.get(k) for k in ("commit", "dirty", "date")}]
        if not resume:  # outputs cached from an earlier model of this run would be stale, and a
            # resume checkpoint of an earlier attempt must not be picked up if this one is killed early
            shutil.rmtree(record.folder / "cache", ignore_errors=True)
            (record.folder / "last.pt").unlink(missing_ok=True)
        if previous:
            record._started -= float(previous.get("wall_time_s", 0.0))
        atomic_write_yaml(record.folder / "params.yaml", params)
        record.save()
        record.tracker = for_run(params, stage)
        return record

    def path(self, name: str) -> Path:
        return self.folder / name

    def update(self, **values: Any) -> None:
        self.metrics.update(values)
        self.save()

    def complete_provenance(self, device: str | None = None, device_name: str | None = None,
                            threads: int | None = None, **precision: str | None) -> None:
        """Complete the run's provenance once the training code knows it: the ``device`` it computes on and its
        name (the GPU's, or the CPU model), the CPU ``threads`` its torch computes with (the same run on another
        number of threads sums in another order, so its numbers differ in the last digits and drift from there),
        and the resolved precision of each role (``student``, ``teacher``, ``generator``: ``float32``,
        ``bfloat16``, ``float16``)."""
        record = self.metrics.setdefault("provenance", provenance.collect())  # a record made without start
        if device is not None:
            record.update(device=device, device_name=device_name or provenance.cpu_model())
        if threads is not None:
            record["threads"] = threads
        record.setdefault("precision", {}).update({role: value for role, value in precision.items() if value})
        self.save()

    def step_done(self) -> None:
        """Called by the training loop after each optimizer step. A run's record keeps nothing per step; the
        record ``dapt run --timing`` trains with (``dapt.stages.timing``) takes its clock here."""

    def log_epoch(self, entry: Mapping[str, Any]) -> None:
        self.metrics["history"].append(dict(entry))
        self.save()

    def save(self) -> None:
        self.metrics["wall_time_s"] = round(time.time() - self._started, 2)
        if not self.writes:
            return
        atomic_write_json(self.folder / "metrics.json", tidy(self.metrics))

    def finish(self, **values: Any) -> None:
        """Mark the run done; the tracker gets the final numbers, the figures and the executed notebook.

        The notebook is the one papermill is writing for this run (``dapt run``): it holds every cell
        up to this call's cell, whose own output comes after; an interactive run has none.
        """
        self.update(status="done", **values)
        self.tracker.summarize({k: v for k, v in self.metrics.items() if k not in ("params", "history")})
        self.tracker.log_figures((self.folder / "figures").glob("*.png"))
        notebook = self.folder / "notebook.ipynb"
        if self.writes and notebook.is_file() and notebook.stat().st_mtime >= self._started:
            self.tracker.log_notebook(notebook, f"notebook-{self.folder.parent.name}-{self.folder.name}")
        self.tracker.finish()

    def fail(self, status: str = "failed", error: str | None = None) -> None:
        """Record a run that stopped (``failed`` or ``interrupted``) and end its tracker with a nonzero exit code."""
        if self.metrics["status"] == "running":
            self.update(status=status, **({"error": error} if error else {}))
        self.tracker.finish(exit_code=130 if status == "interrupted" else 1)

    @contextmanager
    def recording(self) -> Iterator["RunRecord"]:
        """Mark the run ``failed`` or ``interrupted`` if the block raises, then re-raise."""
        try:
            yield self
        except KeyboardInterrupt:
            self.fail("interrupted")
            raise
        except BaseException as err:
            self.fail("failed", f"{type(err).__name__}: {err}")
            raise


def mark_status(folder: str | os.PathLike, status: str, error: str | None = None) -> None:
    """Set the status of a run whose notebook stopped outside the trainer's control (used by the runner)."""
    assert status in STATUSES
    path = Path(folder) / "metrics.json"
    metrics = read_json(path) or {"history": []}
    metrics["status"] = status
    if not isinstance(metrics.get("provenance"), Mapping):  # the notebook stopped before its record started
        metrics["provenance"] = provenance.collect(provenance.UNKNOWN, provenance.UNKNOWN)
    if error:
        metrics["error"] = error
    atomic_write_json(path, metrics)
