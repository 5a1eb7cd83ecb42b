"""Which code, libraries, machine and precisions made a run: the ``provenance`` of its ``metrics.json``.

Two records can be compared only when they were made alike: the same numbers from other code, another
torch or another precision are other numbers (a kernel change moves a student by a seed's spread). So
every run records, when it starts::

    provenance:
      dapt: 0.1.0                       # the package version
      commit: 9e54553...                # HEAD of the checkout dapt was imported from, or "unknown"
      dirty: false                      # uncommitted changes to the code (dapt/, notebooks/, pyproject.toml)
      python: 3.11.7
      torch: 2.14.1                     # read from the installed distributions: no import of torch here
      torchvision: 0.29.1
      device: cpu                       # what the run computed on (the training code fills in the rest)
      device_name: Intel(R) Xeon(R) ... # the CPU model, or the GPU's name
      cpu_flags: [avx512_bf16, ...]     # the CPU features that decide a precision (``teacher_amp: auto``)
      precision: {student: float32, teacher: bfloat16}
      date: 2026-12-04T16:20:00Z        # UTC, when the run started

``code_label`` and ``precision_label`` reduce a record to what decides whether two runs are alike; a
record made before provenance existed has neither and reads ``unknown``. This module imports no torch:
the pipeline and the command line read it too.
"""
from __future__ import annotations

import datetime
import functools
import importlib.metadata
import platform
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

UNKNOWN = "unknown"
# What a run's numbers depend on in the checkout: the library and the notebooks that call it. params/ and
# runs/ are not code (a study re-executed over committed runs changes runs/ without changing what computes).
CODE_PATHS = ("dapt", "notebooks", "pyproject.toml")
# The CPU features that decide which precision `auto` resolves to, or how fast bf16 runs.
PRECISION_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16")
LIBRARIES = ("torch", "torchvision")


def code_root() -> Path:
    """The checkout the running ``dapt`` package was imported from (not the project folder the runs go to)."""
    return Path(__file__).resolve().parents[2]


@functools.lru_cache(maxsize=None)
def code_version(root: Optional[str] = None) -> tuple[str, Optional[bool]]:
    """(commit, dirty) of the code in ``root`` (default ``code_root()``): the full HEAD hash and whether
    ``CODE_PATHS`` hold uncommitted changes; (``"unknown"``, None) outside a git checkout or without git."""
    where = root or str(code_root())

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", where, *args], capture_output=True, text=True, timeout=20,
                              check=True).stdout

    try:
        commit = git("rev-parse", "--verify", "HEAD").strip()
        changes = git("status", "--porcelain", "--", *CODE_PATHS)
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN, None
    return commit or UNKNOWN, bool(changes.strip()) if commit else None


def library_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return UNKNOWN


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, ``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or UNKNOWN


@functools.lru_cache(maxsize=None)
def cpu_flags() -> tuple[str, ...]:
    """Which of ``PRECISION_FLAGS`` this CPU has (empty where ``/proc/cpuinfo`` is not readable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                have = set(line.partition(":")[2].split())
                return tuple(flag for flag in PRECISION_FLAGS if flag in have)
    except OSError:
        pass
    return ()


def collect(device: str = "cpu", device_name: Optional[str] = None,
            precision: Optional[Mapping[str, Optional[str]]] = None) -> dict[str, Any]:
    """The provenance of a run starting now on ``device`` (``device_name``: the GPU's, for a CUDA device;
    the CPU model otherwise) with the resolved ``precision`` of its student and teacher."""
    commit, dirty = code_version()
    from dapt import __version__

    return {"dapt": __version__, "commit": commit, "dirty": dirty, "python": platform.python_version(),
            **{name: library_version(name) for name in LIBRARIES},
            "device": str(device), "device_name": device_name or cpu_model(), "cpu_flags": list(cpu_flags()),
            "precision": dict(precision or {}),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def code_label(provenance: Optional[Mapping[str, Any]]) -> str:
    """``9e54553`` (short commit), ``9e54553+dirty`` (uncommitted code changes), or ``unknown`` (no record,
    or made outside a git checkout)."""
    commit = (provenance or {}).get("commit")
    if not commit or commit == UNKNOWN:
        return UNKNOWN
    return commit[:7] + ("+dirty" if provenance.get("dirty") else "")


def precision_label(provenance: Optional[Mapping[str, Any]]) -> str:
    """``student float32, teacher bfloat16`` (the roles the run had), or ``unknown`` without a record."""
    precision = (provenance or {}).get("precision")
    if not isinstance(precision, Mapping):
        return UNKNOWN
    roles = [f"{role} {value}" for role, value in sorted(precision.items(), key=lambda kv: kv[0] != "student")
             if value]
    return ", ".join(roles) or UNKNOWN


def study_line(records: Iterable[Optional[Mapping[str, Any]]]) -> str:
    """One line on who recorded a study's runs: ``provenance: 14 runs at 9e54553; 2 recorded before
    provenance (unknown); torch 2.14.1; cpu (Intel Xeon ...)``: each code version with its count, then the
    libraries and devices when the known records agree on them (else each with its count)."""
    records = [r or {} for r in records]
    if not records:
        return "provenance: no runs recorded yet"
    codes = Counter(code_label(r) for r in records)
    known = [r for r in records if code_label(r) != UNKNOWN or r.get("torch")]
    parts = [", ".join(f"{n} run{'s' * (n != 1)} at {code}" for code, n in codes.most_common() if code != UNKNOWN)]
    if codes[UNKNOWN]:
        parts.append(f"{codes[UNKNOWN]} run{'s' * (codes[UNKNOWN] != 1)} recorded before provenance (unknown)")
    for key, text in (("torch", lambda r: f"torch {r.get('torch')}"),
                      ("device", lambda r: f"{r.get('device')} ({r.get('device_name')})")):
        values = Counter(text(r) for r in known if r.get(key))
        if values:
            parts.append(", ".join(value if len(values) == 1 else f"{value} ×{n}" for value, n in values.most_common()))
    return "provenance: " + "; ".join(part for part in parts if part)
