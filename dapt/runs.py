"""Run folders: layout, safe names, atomic writes, and the ``metrics.json`` status record.

A run lives in ``runs/<study>/<run>/`` and holds ``notebook.ipynb`` (the executed report),
``params.yaml`` (resolved parameters), ``metrics.json`` (the machine-readable record),
``figures/`` and git-ignored checkpoints. Every path recorded in a run is repo-relative.
"""
from __future__ import annotations

import glob
import json
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from .ranks import is_main
from .errors import DaptError
from .tracking import Tracker, for_run

RUNS_DIR = "runs"
STATUSES = ("running", "done", "failed", "interrupted")
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def repo_root() -> Path:
    """The project folder: ``$DAPT_ROOT`` if set, else the nearest parent with ``pyproject.toml`` and ``dapt/``."""
    if os.environ.get("DAPT_ROOT"):
        return Path(os.environ["DAPT_ROOT"]).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "pyproject.toml").is_file() and (folder / "dapt").is_dir():
            return folder
    return here


def use_repo_root() -> Path:
    """Make the repository the working directory (notebooks opened in JupyterLab start in ``notebooks/``)."""
    root = repo_root()
    os.chdir(root)
    return root


def rel(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root, POSIX style, for recording in run files."""
    p = Path(path)
    root = repo_root()
    absolute = p if p.is_absolute() else (Path.cwd() / p)
    try:
        return absolute.resolve().relative_to(root).as_posix()
    except ValueError:
        return p.as_posix()


def check_name(name: str, what: str = "run name") -> str:
    """Refuse names that could escape ``runs/`` or surprise a shell: letters, digits, ``_ . -`` only."""
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise DaptError(
            f"invalid {what} {name!r}: use letters, digits, '_', '.', '-' (no '/', no '..', not starting with '.')"
        )
    return name


def run_dir(study: str, name: str) -> Path:
    """``runs/<study>/<name>`` as a repo-relative path, after checking both names."""
    return Path(RUNS_DIR) / check_name(study, "study name") / check_name(name)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temp file ordinary permissions (mkstemp makes it 0600) and move it into place."""
    os.chmod(tmp, 0o666 & ~_current_umask())
    os.replace(tmp, path)


def _writer_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of ``path`` that a killed writer left behind (``.<name>.<pid>.<random>.tmp``
    whose process no longer runs); a writer still at work keeps its file. Returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not _writer_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """A temp path beside ``path`` to write to; moved onto ``path`` only if the block succeeds,
    so a reader never sees half a file and a failed write keeps the old one.

    A SIGKILL mid-write can only leave the temp file (named with the writer's pid; the next write
    of ``path`` deletes it), never a partial ``path``. The data reach the disk (fsync) before the
    rename, so a power cut cannot leave an empty ``path`` either.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as written:
            os.fsync(written.fileno())
        publish(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=False, allow_nan=False) + "\n")


def atomic_write_yaml(path: str | os.PathLike, data: Mapping[str, Any]) -> None:
    atomic_write_text(path, yaml.safe_dump(dict(data), sort_keys=False))


def tidy(value: Any) -> Any:
    """``value`` with every float rounded to 6 significant digits: a record shows 0.8659, not the
    float32 noise 0.8658999800682068, and nothing a reader compares is lost."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, Mapping):
        return {k: tidy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [tidy(v) for v in value]
    return value


def read_json(path: str | os.PathLike) -> dict | None:
    """The JSON object at ``path``, or None when it does not exist or is unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def read_yaml(path: str | os.PathLike) -> dict | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return None
    return data if isinstance(data, dict) else None


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
    def start(cls, folder: str | os.PathLike, stage: str, params: Mapping[str, Any], resume: bool = False) -> "RunRecord":
        """Create the run folder, write ``params.yaml`` and a ``running`` ``metrics.json``.

        With ``resume`` the history of an earlier attempt is kept (the trainer replays it from its checkpoint).
        In a run of several processes (``dapt.distributed``) only rank 0's record writes anything.
        """
        record = cls(folder, stage, params)
        record.writes = is_main()
        if not record.writes:
            return record
        record.folder.mkdir(parents=True, exist_ok=True)
        (record.folder / "figures").mkdir(exist_ok=True)
        previous = read_json(record.folder / "metrics.json") if resume else None
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
    if error:
        metrics["error"] = error
    atomic_write_json(path, metrics)
