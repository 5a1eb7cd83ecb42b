"""Files that are never half-written: atomic writes (temp file + rename), tolerant reads, repo-relative paths."""
from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml



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


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Give a finished temp file ordinary permissions (mkstemp makes it 0600) and move it into place."""
    os.chmod(tmp, 0o666 & ~_current_umask())
    os.replace(tmp, path)


def pid_runs(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine (another user's process counts). A zombie does not: a
    killed process its parent has not reaped yet (a Ray worker cancelled by force) holds nothing any more."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    try:  # Linux: the state follows the parenthesised command name, which may itself hold ") "
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def remove_stale_temps(path: str | os.PathLike) -> list[Path]:
    """Delete the temp files of ``path`` that a killed writer left behind (``.<name>.<pid>.<random>.tmp``
    whose process no longer runs); a writer still at work keeps its file. Returns what was removed."""
    path = Path(path)
    removed = []
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        pid = tmp.name[len(path.name) + 2:].split(".")[0]
        if pid.isdigit() and not pid_runs(int(pid)):
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
    """The YAML mapping at ``path``, or None when it does not exist or is unreadable (not UTF-8 included)."""
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except (OSError, ValueError, yaml.YAMLError):  # UnicodeDecodeError is a ValueError
        return None
    return data if isinstance(data, dict) else None
