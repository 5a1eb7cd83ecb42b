"""The distiller contract: a distiller declares its loss terms, returns them unweighted; the base
weighs, ramps and sums them.

``L = Σ_t w_t·r_t·L_t`` over the distiller's terms ``t`` (``terms``, from its declaration in
``catalog``: name → default weight, overridden by the settings' ``w_<t>`` when not null), with
``r_t`` the ``distill_warmup`` ramp on every term but the labels' cross-entropy (``r_ce = 1``).
With the terms ``ce``, ``embed``, ``kd``, ``srrl`` this is the reference code's ``lambd1..4``
weighting (S. Farhat, D. Chen, "On the Surprising Efficacy of Distillation as an Alternative to
Pre-Training Small Models", 2024, ``distill.py``); each distiller returns its own dict of losses,
as mdistiller's do (B. Zhao et al., "Decoupled Knowledge Distillation", CVPR 2022,
``mdistiller/distillers``), so a new kind of loss term needs no change here.

A distiller is an ``nn.Module`` whose parameters are exactly the extra trainable pieces
(projectors, connectors) the optimizer must train besides the student. The teacher is frozen:
its features and logits are detached here, whether they come live or from a cache, so no
gradient can ever reach it. Settings are read by attribute from one object (in practice the
run's config, a dataclass that inherits ``DistillerSettings``), so no knob is copied into a
second structure.
"""
from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from dapt.core.errors import DaptError
from dapt.core.fields import check_ranges
from dapt.distillers.catalog import DISTILLERS


class Distiller(nn.Module):
    """Base of every distiller: subclasses set ``name``, the key of their declaration in the catalog
    (``catalog.declare_distiller``: terms, default weights, what they read, warm-up), and implement
    ``losses``."""

    name: ClassVar[str]

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None, num_classes: int,
                 train_labels: Tensor | None, teacher_head: nn.Linear | None, seed: int,
                 steps_per_epoch: int | None = None):
        super().__init__()
        declaration = DISTILLERS.facts(self.name)
        self.terms: Mapping[str, float] = declaration.terms  # loss term -> default weight, e.g. {"ce": 1.0}
        self.needs_teacher, self.needs_features = declaration.needs_teacher, declaration.needs_features
        self.needs_index = declaration.needs_index
        self.settings = settings
        self.weights = self._resolve_weights(settings)
        warmup = getattr(settings, "distill_warmup", None)
        self.warmup_epochs = declaration.warmup if warmup is None else float(warmup)
        self.warmup_steps = self.warmup_epochs * (steps_per_epoch or 0)
        # Training steps taken, saved with the distiller (a resumed run continues the ramp).
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        if self.needs_features and t_dim is None:
            raise DaptError(f"distiller {self.name!r} needs the teacher's feature width; "
                            "pass t_dim (the teacher model's feat_dim)")

    def _resolve_weights(self, settings: Any) -> dict[str, float]:
        """Each own term's weight: ``w_<term>`` of the settings when present and not null, else the
        default. A non-zero ``w_<term>`` for a term of another distiller, not this one's, is an error."""
        weights = {}
        for term, default in self.terms.items():
            override = getattr(settings, f"w_{term}", None)
            weights[term] = float(default if override is None else override)
        for term in _terms_of_every_distiller():
            override = getattr(settings, f"w_{term}", None)
            if term not in self.terms and override:
                raise DaptError(f"distiller {self.name!r} has no {term} loss but w_{term}="
                                f"{float(override)}; set w_{term} to 0 or null")
        if not any(weights.values()):
            raise DaptError(f"distiller {self.name!r}: every loss weight is 0; give at least one "
                            f"of {', '.join(f'w_{term}' for term in self.terms)} a positive value")
        return weights

    def forward(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None = None,
                t_logits: Tensor | None = None, index: Tensor | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        """Total loss of a batch and the float value of each weighted part (``{"ce": .., ...}``)."""
        t_feat, t_logits = self._frozen_teacher(s_feat, s_logits, t_feat, t_logits, index)
        weighted = self.weigh(self.losses(s_feat, s_logits, y, t_feat, t_logits, index))
        total = sum(weighted.values())
        return total, {term: float(value.detach()) for term, value in weighted.items()}

    def unweighted(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None = None,
                   t_logits: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """``losses`` as ``forward`` calls it, before weighing (``benchmarks/loss_scales.py`` measures each
        term's gradient)."""
        t_feat, t_logits = self._frozen_teacher(s_feat, s_logits, t_feat, t_logits, index)
        return self.losses(s_feat, s_logits, y, t_feat, t_logits, index)

    def _frozen_teacher(self, s_feat: Tensor, s_logits: Tensor, t_feat: Tensor | None, t_logits: Tensor | None,
                        index: Tensor | None) -> tuple[Tensor | None, Tensor | None]:
        """The teacher's outputs, checked against what this distiller needs, detached and in the student's
        dtype: cached teacher outputs may be fp16, and the teacher never trains."""
        self._check_inputs(s_logits, t_feat, t_logits, index)
        if t_feat is not None:
            t_feat = t_feat.detach().to(s_feat.dtype)
        if t_logits is not None:
            t_logits = t_logits.detach().to(s_logits.dtype)
        return t_feat, t_logits

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None,
               t_logits: Tensor | None, index: Tensor | None) -> dict[str, Tensor]:
        """The unweighted loss of each of this distiller's terms whose weight is not 0, as tensors.

        A term of weight 0 is left out, so what computing it would change (CRD's memory banks)
        does not happen.
        """
        raise NotImplementedError(f"distiller {self.name!r} does not implement losses()")

    def weigh(self, losses: dict[str, Tensor]) -> dict[str, Tensor]:
        """Each term times its weight, the teacher terms also times ``ramp()``; in training mode
        this counts one training step."""
        ramp = self.ramp()
        weighted = {term: self.weights[term] * (1.0 if term == "ce" else ramp) * loss
                    for term, loss in losses.items()}
        if self.training:
            self.steps_done += 1
        return weighted

    def ramp(self) -> float:
        """Factor on the teacher terms' weights at this step: ``min(1, (s + 1)/(W·S))`` after
        ``s`` training steps, with W = ``distill_warmup`` epochs of S steps (1 without warm-up).

        A linear warm-up of the distillation weight, as DKD's (B. Zhao et al., "Decoupled
        Knowledge Distillation", CVPR 2022): the student's body first follows the labels, and
        the teacher terms, whose gradients start several times larger (benchmarks/loss_scales.py),
        take over gradually.
        """
        if not self.warmup_steps:
            return 1.0
        return min(1.0, (int(self.steps_done) + 1) / self.warmup_steps)

    def _check_inputs(self, s_logits: Tensor, t_feat: Tensor | None, t_logits: Tensor | None,
                      index: Tensor | None) -> None:
        wanted = (("t_logits", self.needs_teacher, t_logits),
                  ("t_feat", self.needs_features, t_feat), ("index", self.needs_index, index))
        missing = [name for name, needed, given in wanted if needed and given is None]
        if missing:
            raise ValueError(f"distiller {self.name!r} needs {', '.join(missing)}; pass the "
                             "teacher outputs (and, for crd, the samples' dataset indices)")
        if t_logits is not None and t_logits.shape != s_logits.shape:
            raise ValueError(f"teacher logits {tuple(t_logits.shape)} and student logits "
                             f"{tuple(s_logits.shape)} differ; teacher and student must share "
                             "the classes")


def _terms_of_every_distiller() -> set[str]:
    """The loss terms of the registered distillers: the ``w_<term>`` settings a distiller must refuse
    when it lacks the term."""
    return {term for name in DISTILLERS.names() for term in DISTILLERS.facts(name).terms}


def build_distiller(name: str, settings: Any, *, s_dim: int, t_dim: int | None,
                    num_classes: int, train_labels: Tensor | None = None,
                    teacher_head: nn.Linear | None = None, seed: int = 0,
                    steps_per_epoch: int | None = None) -> Distiller:
    """Distiller ``name`` for a student of feature width ``s_dim`` and a teacher of ``t_dim``.

    ``settings`` is any object with the settings attributes (``DistillerSettings`` or the run's
    config); a dataclass has its ranges checked here. ``train_labels`` (crd: one label per
    training sample, in the order of the indices passed to ``forward``) and ``teacher_head``
    (srrl) are required where the distiller uses them; ``seed`` seeds what the distiller draws
    itself (CRD's bank init and negatives); ``steps_per_epoch`` (training steps per epoch)
    turns ``distill_warmup`` epochs into steps.
    """
    cls = DISTILLERS.get(name)
    if dataclasses.is_dataclass(settings):
        check_ranges(settings)
    distiller = cls(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                    train_labels=train_labels, teacher_head=teacher_head, seed=seed,
                    steps_per_epoch=steps_per_epoch)
    if distiller.warmup_epochs and not steps_per_epoch:
        raise DaptError(f"distiller {name!r} warms up over {distiller.warmup_epochs:g} epochs "
                        "(distill_warmup), counted in steps: pass steps_per_epoch to "
                        "build_distiller, or set distill_warmup to 0")
    return distiller
