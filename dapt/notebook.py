"""What every stage notebook does first, in one call: work from the repository, show a user's
mistake as one line instead of a traceback, validate the parameters cell, open the run record."""
from __future__ import annotations

from typing import Any, Mapping

from . import config
from .errors import DaptError
from .runs import RunRecord, use_repo_root


def _message_only(shell, etype, value, tb, tb_offset=None) -> None:
    """IPython's handler for DaptError: the message without the stack. It is still an error
    output, so the cell fails and papermill and ``dapt run`` record the run as failed with it."""
    shell.showtraceback((etype, value, tb), exception_only=True)


def show_errors_briefly() -> None:
    """In a kernel: a DaptError as its one-line message (the fix is in it, a traceback adds nothing), and
    other tracebacks without colour codes, so the executed report stays plain text."""
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is not None:
        shell.set_custom_exc((DaptError,), _message_only)
        shell.run_line_magic("colors", "nocolor")  # tracebacks kept in a report without ANSI escape codes


def start(stage: str, namespace: Mapping[str, Any]) -> tuple[Any, RunRecord]:
    """Validate the notebook's parameters (its ``globals()``) for ``stage`` and start its run record.

    Returns ``(cfg, record)``; the record's ``metrics.json`` says ``running`` until the notebook
    calls ``record.finish()``.
    """
    show_errors_briefly()
    use_repo_root()
    cfg = config.from_namespace(config.stage_config(stage), namespace)
    record = RunRecord.start(cfg.run_dir, stage, config.as_dict(cfg), resume=getattr(cfg, "resume", False))
    return cfg, record
