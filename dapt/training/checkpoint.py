"""Checkpoints: the trained model of a run (``model.pt``, ``best.pt``) and the resume state (``last.pt``);
``load_teacher`` opens a finished run's model as the frozen teacher of another run (distill, generate).

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
from dapt.core.files import read_json
from dapt.core.torch_files import atomic_save, safe_load
from dapt.data.imageset import ImageSet
from dapt.models.nets import Net, create_model

MODEL_FORMAT = "dapt-model-v1"


def save_model(path: str | os.PathLike, model: torch.nn.Module, meta: Mapping[str, Any]) -> None:
    """Write ``model``'s weights with ``meta`` (model, num_classes, classes, dataset, image_size, ...)."""
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}  # saved at once: no copy needed
    atomic_save({"format": MODEL_FORMAT, **dict(meta), "state_dict": state}, path)


def load_model(path: str | os.PathLike) -> tuple[Net, dict]:
    """Rebuild the network saved at ``path``; returns (model in eval mode, meta)."""
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


def load_teacher(folder: str | Path, ds: ImageSet) -> tuple[Net, dict]:
    """The trained teacher of run ``folder``, frozen and in eval mode, checked against the student's dataset.

    Returns (model, meta); meta adds the teacher run's own final test accuracy (``run_test_acc``).
    """
    folder = Path(folder)
    where = folder.as_posix()
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        raise DaptError(f"teacher {where}: no metrics.json; run its teacher stage first "
                        f"(e.g. `dapt run params/fashion_quick.yaml --only lite2_ft`)")
    if metrics.get("status") != "done":
        raise DaptError(f"teacher run {where} is {metrics.get('status')!r}, not done; finish it first "
                        f"(dapt run on its study)")
    if not (folder / "model.pt").is_file():
        raise DaptError(f"teacher run {where} has its report but no model.pt (a fresh clone holds only the "
                        f"reports); train it first: dapt run on its study (e.g. params/fashion_quick.yaml)")
    model, meta = load_model(folder / "model.pt")
    if meta.get("dataset") != ds.name or meta.get("num_classes") != ds.num_classes:
        raise DaptError(f"teacher {where} was trained on {meta.get('dataset')} ({meta.get('num_classes')} "
                        f"classes) but this run uses {ds.name} ({ds.num_classes} classes); pick a teacher of {ds.name}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {**meta, "run_test_acc": metrics.get("test_acc")}
