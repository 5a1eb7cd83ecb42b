"""Tensor files: ``torch.save`` that is never half-written, ``torch.load`` that never runs pickled code.

With ``distributed``, the modules of ``core`` that import torch; the pipeline imports neither.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from dapt.core.errors import DaptError
from dapt.core.files import atomic_path


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through a temp file and a rename, so a crash never leaves half a checkpoint."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def safe_load(path: str | os.PathLike, what: str = "checkpoint", fix: str = "re-run the run that wrote it") -> Any:
    """``torch.load`` with ``weights_only=True``; a missing or corrupt file is a one-line DaptError ending in ``fix``."""
    path = Path(path)
    if not path.is_file():
        raise DaptError(f"{what} {path.as_posix()} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise DaptError(f"{what} {path.as_posix()} is corrupt or not a PyTorch file ({type(err).__name__}); "
                        f"{fix}") from None
