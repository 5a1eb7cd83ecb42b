"""Optimizers and learning-rate schedules, stepped once per batch."""
from __future__ import annotations

import math
from typing import Iterable

import torch

from dapt.core.errors import DaptError


def build_optimizer(name: str, groups: Iterable[dict], lr: float, weight_decay: float) -> torch.optim.Optimizer:
    """``sgd`` (momentum 0.9, Nesterov off) or ``adamw``; each group may carry its own ``lr``.

    Both honour ``lr`` and ``weight_decay`` (the reference code's AdamW silently ignored them).
    """
    groups = [g for g in groups if any(p.requires_grad for p in g["params"])]
    for g in groups:
        g["params"] = [p for p in g["params"] if p.requires_grad]
    if not groups:
        raise DaptError("nothing to train: every parameter is frozen")
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    raise DaptError(f"unknown optimizer {name!r}; choose sgd or adamw")


def build_scheduler(
    name: str, optimizer: torch.optim.Optimizer, steps_per_epoch: int, epochs: int,
    step_size: int = 30, step_gamma: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """A per-batch schedule: ``none`` (constant), ``cosine`` (to 0 over all steps), ``step``
    (×``step_gamma`` every ``step_size`` epochs)."""
    total = max(1, steps_per_epoch * epochs)
    if name == "none":
        factor = lambda step: 1.0  # noqa: E731
    elif name == "cosine":
        factor = lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total) / total))  # noqa: E731
    elif name == "step":
        factor = lambda step: step_gamma ** (step // (steps_per_epoch * max(1, step_size)))  # noqa: E731
    else:
        raise DaptError(f"unknown scheduler {name!r}; choose none, cosine or step")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
