"""Execute a validated study: one papermill run of ``notebooks/<stage>.ipynb`` per run.

The runner never imports training code: it decides which runs to execute (skipping those
already done with identical parameters, refusing to replace finished ones unless forced),
executes the notebooks with the repository as working directory and repo-relative paths, and
records ``failed`` / ``interrupted`` when a notebook stops outside the trainer's control.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import DaptError
from .runs import RUNS_DIR, mark_status, read_json, read_yaml, repo_root
from .study import RunSpec, Study

KERNEL = "python3"
# Keys that change how a run is executed or logged, not what it computes.
BOOKKEEPING = ("resume", "wandb", "wandb_project", "wandb_entity", "checkpoint_every", "device")
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
    """The runs to execute, in order. Raises before anything runs if a finished run would be replaced."""
    if only:
        unknown = [n for n in only if n not in {r.name for r in study.runs}]
        if unknown:
            raise DaptError(f"{study.source}: no run named {unknown[0]!r}; runs: {', '.join(r.name for r in study.runs)}")
    states = [run_state(spec) for spec in study.runs if not only or spec.name in only]
    for state in states:
        if state.status in ("done", "report-only") and not state.same_params and not force:
            raise DaptError(
                f"{study.source}: run {state.spec.name!r} is done with other parameters "
                f"({', '.join(state.changed)} changed); rerun with --force to replace it"
            )
    return states


def dry_run(study: Study, force: bool = False, only: list[str] | None = None,
            echo: Callable[[str], None] = print) -> None:
    """Print what ``run_study`` would do with each run, reading ``runs/`` but creating nothing: name,
    stage, recorded status, the action, and the values the study sets (what the notebook receives)."""
    if only:
        plan(study, force=True, only=only)  # names checked like a real run; nothing is replaced here
    runs = [spec for spec in study.runs if not only or spec.name in only]
    echo(f"study {study.name} ({study.source}): {len(runs)} runs, nothing executed (--dry-run)")
    will_run: set[str] = set()
    for spec in runs:
        state = run_state(spec)
        if state.status in ("done", "report-only") and not state.same_params and not force:
            action = f"refused: done with other parameters ({', '.join(state.changed)}); --force replaces it"
        elif state.finished and state.same_params and not force and not any(r in will_run for r in spec.refs):
            action = "skip: already done with these parameters"
        else:
            will_run.add(spec.name)
            action = "run"
        echo(f"  {spec.name:<22} {spec.stage:<9} {state.status:<12} {action}")
        values = ", ".join(f"{key}={value!r}" for key, value in spec.injected.items() if key != "run_dir")
        echo(f"  {'':<22} {values or '(stage defaults)'}")


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


def _configure_logging() -> None:
    """papermill's Python API is silent until logging is configured; show the notebooks' output."""
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

        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw) -> None:
            # A process that used wandb (a JupyterLab kernel, a test) exports WANDB_SERVICE, the address
            # of its own wandb service; a run inheriting it would log through that process, or nowhere
            # once it is gone. Each run starts its own.
            env = {k: v for k, v in (kw.get("env") or os.environ).items() if k != "WANDB_SERVICE"}
            with open(kernel_log, "ab") as log:  # the child gets its own copy of the descriptor
                await super()._async_launch_kernel(kernel_cmd, **{**kw, "env": env, "stderr": log})

    return RunKernelManager


def execute(spec: RunSpec, log_output: bool = True) -> None:
    """Run one notebook into ``runs/<study>/<run>/notebook.ipynb``; raise papermill's error on failure.

    The notebook receives only the parameters the study sets (``spec.injected``): its own
    parameters cell holds the defaults, so the executed report opens with the run's choices.
    """
    import papermill as pm

    spec.folder.mkdir(parents=True, exist_ok=True)
    pm.execute_notebook(
        notebook_for(spec.stage).as_posix(),
        (spec.folder / "notebook.ipynb").as_posix(),
        parameters=spec.injected,
        kernel_name=KERNEL,
        cwd=".",
        log_output=log_output,
        progress_bar=False,
        report_mode=False,
        kernel_manager_class=_kernel_manager(spec.folder / "kernel.log"),
    )


def run_study(
    study: Study,
    force: bool = False,
    only: list[str] | None = None,
    echo: Callable[[str], None] = print,
    log_output: bool = True,
    keep_going: bool = False,
    resume: bool = False,
) -> dict[str, str]:
    """Execute the study's runs in order; returns run name → final status.

    A run is skipped when it is done with the same parameters and no run it depends on was
    re-executed now. A failed run stops the study (the runs after it are ``not run``); with
    ``keep_going`` the runs that do not depend on it go on, and its dependents are ``blocked``.
    ``resume`` continues each executed run from its last epoch checkpoint, if it has one.
    """
    os.chdir(repo_root())
    if log_output:
        _configure_logging()
    states = plan(study, force, only)
    _check_writable(Path(RUNS_DIR) / study.name)
    results: dict[str, str] = {}
    executed: set[str] = set()
    stopped_by: str | None = None
    for i, state in enumerate(states, 1):
        spec = state.spec
        head = f"[{i}/{len(states)}] {spec.stage} {spec.name}"
        if stopped_by:
            results[spec.name] = "not run"
            echo(f"{head}: not run, the study stopped at {stopped_by} (--keep-going runs what does not need it)")
            continue
        broken = [r for r in spec.refs if results.get(r) in ("failed", "interrupted", "blocked")]
        if broken and not spec.collects:
            results[spec.name] = "blocked"
            echo(f"{head}: skipped, it needs {', '.join(broken)} which did not finish")
            continue
        if state.finished and state.same_params and not force and not any(r in executed for r in spec.refs):
            results[spec.name] = "done"
            echo(f"{head}: already done with these parameters, skipped ({spec.folder.as_posix()})")
            continue
        if resume and hasattr(spec.cfg, "resume"):
            spec = dataclasses.replace(spec, cfg=dataclasses.replace(spec.cfg, resume=True),
                                       set_keys=[*spec.set_keys, "resume"])
        echo(f"{head}: running -> {spec.folder.as_posix()}/notebook.ipynb")
        started = time.time()
        try:
            execute(spec, log_output)
        except KeyboardInterrupt:
            # The kernel dies with its cell still pending: nbclient's execute task then fails, and asyncio
            # would print that task's traceback at exit. Expected after an interrupt, so not shown.
            logging.getLogger("asyncio").setLevel(logging.CRITICAL)
            mark_status(spec.folder, "interrupted")
            echo(f"{head}: interrupted; `dapt run` starts it again, `dapt run --resume` continues from its last epoch")
            raise
        except Exception as err:  # papermill's execution error carries the cell's exception
            reason = f"{getattr(err, 'ename', type(err).__name__)}: {getattr(err, 'evalue', err)}"
            mark_status(spec.folder, "failed", reason)
            results[spec.name] = "failed"
            echo(f"{head}: FAILED ({reason}); see {spec.folder.as_posix()}/notebook.ipynb")
            stopped_by = None if keep_going else spec.name
            continue
        executed.add(spec.name)
        metrics = read_json(spec.folder / "metrics.json") or {}
        results[spec.name] = str(metrics.get("status", "failed"))
        acc = metrics.get("test_acc")
        summary = f", test_acc {acc:.4f}" if isinstance(acc, (int, float)) else ""
        echo(f"{head}: {results[spec.name]} in {time.time() - started:.0f} s{summary}")
    return results
