"""Execute a validated study: one papermill run of ``notebooks/<stage>.ipynb`` per run.

The runner never imports training code: it decides which runs to execute (skipping those
already done with identical parameters, refusing to replace finished ones unless forced),
executes the notebooks with the repository as working directory and repo-relative paths, and
records ``failed`` / ``interrupted`` when a notebook stops outside the trainer's control. Each executed
notebook carries its run's provenance (read from its ``metrics.json``) in its metadata.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every process runs this runner: they agree on the plan before
anything runs, execute the training stages (``DDP_STAGES``) together, one process group per run, and
leave the others to rank 0; after each run they exchange its outcome, so every rank takes the same
skip/block/stop decisions. Only rank 0 writes under ``runs/``; the other ranks' executed notebooks go
to a temp folder that is deleted after the run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from dapt.core import lock as run_lock
from dapt.core.errors import DaptError
from dapt.core.progress import RECORDED
from dapt.core.ranks import DDP_STAGES, is_main, world_size
from dapt.core.records import BOOKKEEPING, RUNS_DIR, mark_status
from dapt.core.files import atomic_write_text, read_json, read_yaml, repo_root
from dapt.pipeline import projection
from dapt.pipeline.footprint import check_fits
from dapt.pipeline.schedule import Outcome, Schedule
from dapt.pipeline.study import RunSpec, Study

KERNEL = "python3"
# papermill's own per-cell markers; the notebooks' output is what a user wants to follow
_PAPERMILL_CHATTER = ("Executing Cell", "Ending Cell", "Executing notebook with kernel", "Input Notebook",
                      "Output Notebook", "Working directory")


@dataclass
class RunState:
    spec: RunSpec
    status: str  # "new", or the recorded status
    same_params: bool
    changed: list[str]

    @property
    def finished(self) -> bool:
        return self.status == "done"

    def skipped(self, force: bool, rerun: set[str]) -> bool:
        """The skip rule: done with the same parameters, not forced, and no run it needs among ``rerun`` (the
        runs executed again: what a done run read of them was what they held when it ran)."""
        return self.finished and self.same_params and not force and not any(r in rerun for r in self.spec.refs)

    def refused(self, force: bool) -> bool:
        """Finished (here or elsewhere) with other parameters, and not forced: executing it would replace it."""
        return self.status in ("done", "report-only") and not self.same_params and not force


def decisions(states: list[RunState], force: bool) -> list[tuple[RunState, str]]:
    """Each state, in order, with what a run of the study does with it: "refused", "skip" (``RunState.skipped``,
    given the runs before it that execute) or "run"."""
    will_run: set[str] = set()
    out = []
    for state in states:
        if state.refused(force):
            action = "refused"
        elif state.skipped(force, will_run):
            action = "skip"
        else:
            action = "run"
            will_run.add(state.spec.name)
        out.append((state, action))
    return out


def notebook_for(stage: str) -> Path:
    return Path("notebooks") / f"{stage}.ipynb"


def _comparable(params: dict) -> dict:
    return {k: v for k, v in params.items() if k not in BOOKKEEPING}


def run_state(spec: RunSpec) -> RunState:
    """What is on disk for ``spec``: its status and whether it was made with the same parameters."""
    metrics = read_json(spec.folder / "metrics.json")
    if metrics is None:
        return RunState(spec, "new", False, [])
    recorded = _comparable(read_yaml(spec.folder / "params.yaml") or {})
    wanted = _comparable(spec.params)
    # A parameter added to the stage after the run was recorded counts as its default (which
    # reproduces what the run did), so new options do not make every earlier run look changed.
    defaults = {f.name: f.default for f in dataclasses.fields(type(spec.cfg))}
    changed = sorted(k for k in set(recorded) | set(wanted) if recorded.get(k, defaults.get(k)) != wanted.get(k))
    status = str(metrics.get("status", "unknown"))
    if status == "done" and not all((spec.folder / name).is_file() for name in type(spec.cfg).outputs):
        status = "report-only"  # done once, but its checkpoint is not here (e.g. a fresh clone)
    return RunState(spec, status, not changed, changed)


def plan(study: Study, force: bool = False, only: list[str] | None = None) -> list[RunState]:
    """The runs to execute, in order. Raises before anything runs if a finished run would be replaced, another
    process executes one of them, or one that will execute cannot fit this machine's memory."""
    if only:
        unknown = [n for n in only if n not in {r.name for r in study.runs}]
        if unknown:
            raise DaptError(f"{study.source}: no run named {unknown[0]!r}; runs: {', '.join(r.name for r in study.runs)}")
    states = [run_state(spec) for spec in study.runs if not only or spec.name in only]
    for state, action in decisions(states, force):
        if action != "skip":
            check_fits(state.spec.cfg, f"{study.source}: run {state.spec.name!r}")
        if action == "refused":
            raise DaptError(
                f"{study.source}: run {state.spec.name!r} is done with other parameters "
                f"({', '.join(state.changed)} changed); rerun with --force to replace it"
            )
        holder = run_lock.holder(state.spec.folder)
        if holder is not None:  # even a run this study would skip: its record is being rewritten
            raise DaptError(f"{study.source}: run {state.spec.name!r} is being executed by {holder.describe()}; "
                            f"wait for it to end (dapt status {study.source} shows it), or stop that process: a "
                            f"lock whose process is gone is taken over by the next dapt run")
    return states


def name_width(specs: list[RunSpec]) -> int:
    """Width of the run-name column of the tables ``dapt status`` and ``--dry-run`` print."""
    return max([22, *(len(spec.name) for spec in specs)])


def dry_run(study: Study, force: bool = False, only: list[str] | None = None,
            echo: Callable[[str], None] = print) -> None:
    """Print what ``run_study`` would do with each run, reading ``runs/`` but creating nothing: name,
    stage, recorded status, the action, and the values the study sets (what the notebook receives)."""
    if only:
        plan(study, force=True, only=only)  # names checked like a real run; nothing is replaced here
    runs = [spec for spec in study.runs if not only or spec.name in only]
    echo(f"study {study.name} ({study.source}): {len(runs)} runs, nothing executed (--dry-run)")
    width = name_width(runs)
    projected = projection.projected_lines(study, projection.load(study.name))  # from `dapt run --timing`
    for state, action in decisions([run_state(spec) for spec in runs], force):
        spec = state.spec
        if action == "refused":
            action = f"refused: done with other parameters ({', '.join(state.changed)}); --force replaces it"
        elif action == "skip":
            action = "skip: already done with these parameters"
        echo(f"  {spec.name:<{width}} {spec.stage:<9} {state.status:<12} {action}")
        # run_dir and a report's study_description come from the file's layout and text, not from its values
        values = ", ".join(f"{key}={value!r}" for key, value in spec.injected.items()
                           if key not in ("run_dir", "study_description"))
        echo(f"  {'':<{width}} {values or '(stage defaults)'}")
        if spec.name in projected:
            echo(f"  {'':<{width}} {projected[spec.name]}")


def _check_writable(folder: Path) -> None:
    """Refuse to start a study whose folder cannot hold its runs, before any notebook runs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DaptError(f"cannot create the study folder {folder.as_posix()} ({err.strerror}); remove what is "
                        f"in its way or fix the permissions of {folder.parent.as_posix()}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DaptError(f"the study folder {folder.as_posix()} is not writable; fix its permissions "
                        f"(e.g. chmod u+rwx {folder.as_posix()})")


def configure_logging() -> None:
    """papermill's Python API is silent until logging is configured; show the notebooks' output
    (in this process: the driver, or a Ray worker that executes a run)."""
    logger = logging.getLogger("papermill")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler.addFilter(lambda rec: not str(rec.msg).startswith(_PAPERMILL_CHATTER))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _kernel_manager(kernel_log: Path) -> type:
    """The kernel manager of a run. The kernel process's own log (not the notebook's output, which
    travels over ZMQ) goes to ``kernel.log`` beside the notebook, so its start and shutdown chatter
    never reaches the terminal; on POSIX it talks over IPC sockets: no TCP port is opened, and
    ipykernel has no unencrypted-TCP warning to print."""
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class RunKernelManager(AsyncKernelManager):
        @default("transport")
        def _transport_default(self) -> str:
            return "ipc" if os.name == "posix" else "tcp"

        @default("ip")
        def _ip_default(self) -> str:
            # jupyter_client's default, kernel-ipc-<n> in the working directory with the first free n,
            # lets two kernels started at once from the repository (Ray runs, the runners of several
            # torchrun ranks) take the same sockets: each kernel gets its own random path instead
            if self.transport != "ipc":
                return super()._ip_default()
            return os.path.join(tempfile.gettempdir(), f"dapt-kernel-{uuid.uuid4().hex[:16]}")

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            # A process that used wandb (a JupyterLab kernel, a test) exports WANDB_SERVICE, the address
            # of its own wandb service; a run inheriting it would log through that process, or nowhere
            # once it is gone. Each run starts its own. The kernel's output is the run's record: no
            # progress bar (core.progress); its epoch lines still reach the terminal through log_output.
            env = {k: v for k, v in (kw.get("env") or os.environ).items() if k != "WANDB_SERVICE"} | RECORDED
            with open(kernel_log, "ab") as log:  # the child gets its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "env": env, "stderr": log})

    return RunKernelManager


def execute(spec: RunSpec, log_output: bool = True, folder: Path | None = None) -> None:
    """Run one notebook into ``runs/<study>/<run>/notebook.ipynb`` (or ``folder``, where a rank other than
    0 keeps its copy); raise papermill's error on failure.

    The notebook receives only the parameters the study sets (``spec.injected``): its own
    parameters cell holds the defaults, so the executed report opens with the run's choices.
    """
    import papermill as pm

    folder = folder or spec.folder
    folder.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        notebook_for(spec.stage).as_posix(),
        (folder / "notebook.ipynb").as_posix(),
        parameters=spec.injected,
        kernel_name=KERNEL,
        cwd=".",
        log_output=log_output,
        progress_bar=False,
        report_mode=False,
        kernel_manager_class=_kernel_manager(folder / "kernel.log"),
        # the last cell has written every record (metrics.json, checkpoints, figures, the wandb run finished):
        # the kernel is killed, not asked to exit, which costs 1-2 s of interpreter teardown with torch loaded
        shutdown_kernel="immediate",
    )


def stamp_provenance(folder: Path) -> None:
    """Copy the run's ``provenance`` from its ``metrics.json`` into its executed notebook's metadata
    (``metadata.dapt.provenance``), so the report a reader opens says which code, libraries, device and
    precisions made it. papermill writes the notebook until the kernel ends, so this comes after; a run
    whose record or notebook is missing or unreadable is left as it is."""
    notebook = folder / "notebook.ipynb"
    record = (read_json(folder / "metrics.json") or {}).get("provenance")
    if not isinstance(record, dict) or not notebook.is_file():
        return
    try:
        content = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return
    if not isinstance(content, dict):
        return
    content.setdefault("metadata", {}).setdefault("dapt", {})["provenance"] = record
    # as nbformat writes a notebook (papermill's own writer): sorted keys, one-space indent, UTF-8
    with contextlib.suppress(OSError):  # a read-only folder keeps the notebook papermill wrote
        atomic_write_text(notebook, json.dumps(content, sort_keys=True, indent=1, ensure_ascii=False) + "\n")


def _execute_on_this_rank(spec: RunSpec, log_output: bool) -> None:
    """``execute`` as this process's share of a run: alone, everything; under torchrun, rank 0 runs every
    stage and the other ranks only the training stages, each run's kernels in a process group of its own."""
    if world_size() == 1:
        return execute(spec, log_output)
    if spec.stage not in DDP_STAGES:
        os.environ.pop("DAPT_DDP_GROUP", None)
        return execute(spec, log_output) if is_main() else None
    os.environ["DAPT_DDP_GROUP"] = f"dapt-run-{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}-{spec.name}"
    if is_main():
        return execute(spec, log_output)
    with tempfile.TemporaryDirectory(prefix=f"dapt-rank{os.environ.get('RANK')}-") as scratch:
        execute(spec, False, Path(scratch))


def _agreed_plan(study: Study, force: bool, only: list[str] | None) -> list[RunState]:
    """``plan`` on every rank, checked to be the same everywhere (one error, raised on every rank alike)."""
    from dapt.core import distributed

    distributed.init_runner()
    try:
        states, error = plan(study, force, only), None
        for state in states:  # the slices of a global batch must be equal: said before anything runs
            size = getattr(state.spec.cfg, "batch_size", None)
            if state.spec.stage in DDP_STAGES and size and size % world_size():
                raise DaptError(f"{study.source}: run {state.spec.name!r}: batch_size {size} does not split into "
                                f"{world_size()} equal parts, one per process; use a multiple of {world_size()}")
    except DaptError as err:
        states, error = [], str(err)
    shared = distributed.all_objects((error, [(s.spec.name, s.status, s.same_params) for s in states]))
    errors = [e for e, _ in shared if e]
    if errors:
        raise DaptError(errors[0])
    if any(seen != shared[0][1] for _, seen in shared):
        raise DaptError(f"the {world_size()} processes see different records under {RUNS_DIR}/ for {study.source}; "
                        f"every process must work in the same project folder (a shared file system across nodes)")
    return states


def _outcome_everywhere(spec: RunSpec, error: str | None) -> tuple[str | None, str]:
    """(the first failing rank's error or None, rank 0's recorded status) of a run, the same on every rank."""
    status = str((read_json(spec.folder / "metrics.json") or {}).get("status", "failed")) if is_main() else ""
    if world_size() == 1:
        return error, status
    from dapt.core import distributed

    shared = distributed.all_objects((error, status))
    failures = [f"rank {r}: {e}" for r, (e, _) in enumerate(shared) if e]
    return (failures[0] if failures else None), shared[0][1]


def _lock_everywhere(spec: RunSpec) -> tuple[contextlib.AbstractContextManager, str | None]:
    """(the run's lock, held by rank 0, or None where it is not this rank's to hold; the reason it is
    held elsewhere, the same on every rank, or None)."""
    lock, reason = None, None
    if is_main():
        try:
            lock = run_lock.acquire(spec.folder)
        except DaptError as held:  # held by another process (or its lock unwritable): untouched, said once
            reason = str(held)
    if world_size() > 1:
        from dapt.core import distributed

        reason = distributed.all_objects(reason)[0]
    return lock or contextlib.nullcontext(), reason


def run_one(spec: RunSpec, log_output: bool = True) -> Outcome:
    """Execute one run and return how it ended; a failure is recorded in its ``metrics.json``.

    The same function runs in this process (local executor, on every rank under torchrun) and inside
    a Ray task. The run's lock (``dapt.core.lock``) is held while it executes: a run another live process
    executes is not touched, and its outcome is ``held``. On Ctrl-C, SIGTERM or a Ray cancellation the run
    is recorded ``interrupted`` and the interrupt re-raised. Under torchrun every rank returns the same outcome.
    """
    lock, held = _lock_everywhere(spec)
    if held:
        return Outcome("held", 0.0, held)
    with lock:
        return _run_locked(spec, log_output)


def _run_locked(spec: RunSpec, log_output: bool) -> Outcome:
    """``run_one``'s execution and records, once the run is this process's."""
    started = time.time()
    error = None
    try:
        _execute_on_this_rank(spec, log_output)
    except KeyboardInterrupt:
        # The kernel dies with its cell still pending: nbclient's execute task then fails, and asyncio
        # would print that task's traceback at exit. Expected after an interrupt, so not shown.
        logging.getLogger("asyncio").setLevel(logging.CRITICAL)
        if is_main():
            mark_status(spec.folder, "interrupted")
            stamp_provenance(spec.folder)
        raise
    except Exception as err:  # papermill's execution error carries the cell's exception
        error = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
    reason, status = _outcome_everywhere(spec, error)
    if reason:
        if is_main():
            mark_status(spec.folder, "failed", reason)
            stamp_provenance(spec.folder)
        return Outcome("failed", time.time() - started, reason)
    if is_main():
        stamp_provenance(spec.folder)
    metrics = (read_json(spec.folder / "metrics.json") or {}) if is_main() else {}
    reason = "" if status == "done" else str(metrics.get("error", "the notebook ended without recording its run done"))
    acc = metrics.get("test_acc")
    return Outcome(status, time.time() - started, reason, acc if isinstance(acc, (int, float)) else None)


def run_locally(schedule: Schedule, log_output: bool = True) -> None:
    """The default executor: the runs one after the other, in this process, in the study's order."""
    while not schedule.finished:
        for spec in schedule.ready(limit=1):
            try:
                outcome = run_one(spec, log_output)
            except KeyboardInterrupt:
                schedule.interrupted(spec.name)
                raise
            schedule.finish(spec.name, outcome)


Executor = Callable[[Schedule, bool], None]


def run_study(
    study: Study,
    force: bool = False,
    only: list[str] | None = None,
    echo: Callable[[str], None] = print,
    log_output: bool = True,
    keep_going: bool = False,
    resume: bool = False,
    executor: Executor = run_locally,
) -> dict[str, str]:
    """Execute the study's runs in dependency order; returns run name → final status.

    A run is skipped when it is done with the same parameters and no run it depends on was
    re-executed now. A failed run stops the study (the runs not yet started are ``not run``); with
    ``keep_going`` the runs that do not depend on it go on, and its dependents are ``blocked``.
    ``resume`` continues each executed run from its last epoch checkpoint, if it has one.
    ``executor`` executes the ready runs (``run_locally``, or ``ray_executor.RayExecutor``); the
    decisions are the ``Schedule``'s, whichever executes.
    """
    os.chdir(repo_root())
    if not is_main():  # one voice: rank 0 reports for all
        echo, log_output = (lambda line: None), False
    if log_output:
        configure_logging()
    states = plan(study, force, only) if world_size() == 1 else _agreed_plan(study, force, only)
    if is_main():
        _check_writable(Path(RUNS_DIR) / study.name)
    schedule = Schedule(states, force=force, keep_going=keep_going, resume=resume, echo=echo)
    executor(schedule, log_output)
    return {state.spec.name: schedule.results[state.spec.name] for state in states}
