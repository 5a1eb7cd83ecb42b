"""Checkpoints: the trained model of a run (``model.pt``, ``best.pt``) and the resume state (``last.pt``).

A model file carries what is needed to rebuild the network and check it against a task
(architecture, classes, dataset, image size) next to its weights; everything is plain tensors
and Python values, so it loads with ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping

import torch

from dapt.core.errors import DaptError
from dapt.core.torch_files import atomic_save, safe_load

MODEL_FORMAT = "dapt-model-v1"


def save_model(path: str | os.PathLike, model: torch.nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``model``'s weights with ``meta`` (model, num_classes, classes, dataset, image_size, ...)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}  # saved at once: no copy needed
    atomic_save({"format": MODEL_FORMAT, **dict(meta), "state_dict": state}, path)


def load_model(path: str | os.PathLike) -> tuple[torch.nn.Module, dict]:
    """Rebuild the network saved at ``path``; returns (model in eval mode, meta)."""
    from dapt.models import create_model

    blob = safe_load(path, "model file")
    if not isinstance(blob, dict) or blob.get("format") != MODEL_FORMAT:
        raise DaptError(f"{Path(path).as_posix()} is not a dapt model file (format {MODEL_FORMAT}); "
                        f"point to the model.pt of a finished run")
    meta = {k: v for k, v in blob.items() if k != "state_dict"}
    with torch.random.fork_rng(devices=[]):  # loading a model must not shift the caller's random stream
        model = create_model(meta["model"], meta["num_classes"], pretrained=False, image_size=meta["image_size"])
    try:
        model.load_state_dict(blob["state_dict"])
    except RuntimeError as err:
        raise DaptError(f"{Path(path).as_posix()}: weights do not fit {meta['model']}: {str(err).splitlines()[0]}") from None
    return model.eval(), meta
