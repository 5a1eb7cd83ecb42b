"""What every stage notebook does first, in one call: work from the repository, show a user's
mistake as one line instead of a traceback, validate the parameters cell, open the run record."""
from __future__ import annotations

import warnings
from typing import Any, Mapping

from dapt.pipeline import config
from dapt.core.errors import DaptError
from dapt.core.ranks import DDP_STAGES, world_size
from dapt.core.records import RunRecord
from dapt.core.files import use_repo_root


def _message_only(shell, etype, value, tb, tb_offset=None) -> None:
    """IPython's handler for DaptError: the message without the stack. It is still an error
    output, so the cell fails and papermill and ``dapt run`` record the run as failed with it."""
    shell.showtraceback((etype, value, tb), exception_only=True)


def _warning_without_path(message, category, filename, lineno, line=None) -> str:
    """A warning as ``Category: message``: the default names the file that raised it, an absolute path into
    the environment, which the executed report would keep."""
    return f"{category.__name__}: {message}\n"


def show_errors_briefly() -> None:
    """In a kernel: a DaptError as its one-line message (the fix is in it, a traceback adds nothing), other
    tracebacks without colour codes, and warnings without the path of the file raising them, so the executed
    report stays plain text holding repo-relative paths only."""
    warnings.formatwarning = _warning_without_path
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((DaptError,), _message_only)
        shell.run_line_magic("colors", "nocolor")  # tracebacks kept in a report without ANSI escape codes


def _fail_on_cell_error(record: RunRecord) -> None:
    """In a kernel: when a later cell fails (a plot, a summary), the run is recorded as failed and its
    wandb run finished with a nonzero exit code, as when training itself fails. The hook of an earlier
    run in the same kernel is replaced, so re-running a notebook does not fail an old record."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None:
        return

    def after_cell(result) -> None:
        error = result.error_in_exec
        if error is not None and record.metrics["status"] == "running":
            interrupted = isinstance(error, KeyboardInterrupt)
            record.fail("interrupted" if interrupted else "failed", None if interrupted else
                        f"{type(error).__name__}: {error}")

    for hook in [h for h in shell.events.callbacks["post_run_cell"] if getattr(h, "_dapt_run", False)]:
        shell.events.unregister("post_run_cell", hook)
    after_cell._dapt_run = True
    shell.events.register("post_run_cell", after_cell)


def _device(cfg) -> dict[str, str]:
    """The device a run of ``cfg`` will compute on, for the provenance its record opens with: a stage without
    ``device`` (the report) computes on the CPU; a device this machine lacks is recorded as asked, and the
    stage itself then fails with the reason."""
    if not hasattr(cfg, "device"):
        return {}
    from dapt.training.device import device_name, run_device  # torch: only for the stages that compute with it

    try:
        device = run_device(cfg.device)
    except DaptError:
        return {"device": cfg.device, "device_name": "unknown"}
    return {"device": str(device), "device_name": device_name(device)}


def start(stage: str, namespace: Mapping[str, Any]) -> tuple[Any, RunRecord]:
    """Validate the notebook's parameters (its ``globals()``) for ``stage`` and start its run record.

    Returns ``(cfg, record)``; the record's ``metrics.json`` says ``running`` until the notebook
    calls ``record.finish()``; a cell that fails before that marks the run failed.
    """
    show_errors_briefly()
    use_repo_root()
    cfg = config.from_namespace(config.stage_config(stage), namespace)
    if stage in DDP_STAGES and world_size() > 1:  # under torchrun: join this run's process group first
        from dapt.core import distributed
        from dapt.core.devices import resolve_device

        distributed.init(resolve_device(cfg.device))  # gloo on the CPU; nccl and cuda:LOCAL_RANK on CUDA
    record = RunRecord.start(cfg.run_dir, stage, config.as_dict(cfg), resume=getattr(cfg, "resume", False),
                             **_device(cfg))
    _fail_on_cell_error(record)
    return cfg, record
