"""Throwaway project folders for tests that execute studies: the real notebooks, the given params files,
and (``working_in``) the environment a `dapt run` from that folder sees."""
from __future__ import annotations

import importlib.util
import shutil
import textwrap
from types import ModuleType
from pathlib import Path
from typing import Iterator

import pytest

REPO = Path(__file__).resolve().parents[1]


def new_project(root: Path, studies: dict[str, str]) -> Path:
    """``root`` holding a copy of the repository's notebooks and ``params/<name>.yaml`` per study text."""
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    (root / "params").mkdir()
    for name, text in studies.items():
        (root / "params" / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


def working_in(root: Path, wandb_mode: str | None = "disabled") -> Iterator[pytest.MonkeyPatch]:
    """Run inside ``root`` (cwd and DAPT_ROOT) with ``WANDB_MODE`` set (None: unset) until the generator ends."""
    patch = pytest.MonkeyPatch()
    patch.setenv("DAPT_ROOT", str(root))
    if wandb_mode is None:
        patch.delenv("WANDB_MODE", raising=False)
    else:
        patch.setenv("WANDB_MODE", wandb_mode)
    patch.chdir(root)
    yield patch
    patch.undo()


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (the papermill kernel of a `dapt run`), from /proc."""
    parent_of = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parent_of[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except OSError:  # the process ended while we looked
            continue
    found, frontier = [], [pid]
    while frontier:
        frontier = [p for p, parent in parent_of.items() if parent in frontier]
        found += frontier
    return found


def load_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` as a fresh module, so a test calls its ``main`` in this process."""
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
