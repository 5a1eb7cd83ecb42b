"""The distiller contract: loss weights, the base class (distiller ``none``) and the factory.

``L = w_ce·CE(z_s, y) + r·(w_embed·L_embed + w_kd·L_kd + w_srrl·L_srrl)`` (DESIGN.md,
"Algorithms"; the reference's ``lambd1..4``), ``r`` the ``distill_warmup`` ramp (1 without it). A distiller is an ``nn.Module`` whose parameters are exactly the
extra trainable pieces (projectors, connectors) the optimizer must train besides the student.
The teacher is frozen: its features and logits are detached here, whether they come live or
from a cache, so no gradient can ever reach it.

Settings are read by attribute from one object (in practice the run's config, a dataclass that
inherits every settings dataclass), so no knob is copied into a second structure.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dapt.core.errors import DaptError
from dapt.core.fields import NON_NEGATIVE, POSITIVE, check_ranges, param
from dapt.core.registry import Registry
from dapt.distillers.losses import kd_loss

TERMS = ("ce", "embed", "kd", "srrl")
_DEFAULT = " (null = the distiller's default)"


@dataclass
class LossSettings:
    """The weights of the four loss terms and the KD temperature, read by every distiller."""

    w_ce: Optional[float] = param(None, "every distiller: weight of cross-entropy on the labels"
                                  + _DEFAULT, rule=NON_NEGATIVE)
    w_embed: Optional[float] = param(None, "align_uniform, crd, srrl: weight of the feature term "
                                     "(align/uniform, CRD's NCE, SRRL's feature MSE)" + _DEFAULT,
                                     rule=NON_NEGATIVE)
    w_kd: Optional[float] = param(None, "every distiller but none: weight of Hinton KD on the "
                                  "logits" + _DEFAULT, rule=NON_NEGATIVE)
    w_srrl: Optional[float] = param(None, "srrl: weight of the MSE between the teacher head's "
                                    "logits on the connected student features and the teacher's"
                                    + _DEFAULT, rule=NON_NEGATIVE)
    kd_T: float = param(4.0, "KD temperature T (Hinton et al. 2015), used by every distiller whose "
                        "w_kd > 0 (kd, align_uniform, crd by default)", rule=POSITIVE)
    distill_warmup: Optional[float] = param(
        None, "every distiller but none: epochs over which the teacher terms' weights (w_embed, "
              "w_kd, w_srrl) ramp linearly from 0 to their value, per training step; w_ce is never "
              "ramped (0 = no warm-up; null = the distiller's default: 1 for srrl, 0 for the others)",
        rule=NON_NEGATIVE)


DISTILLERS: Registry[type["Distiller"]] = Registry("distiller")


@DISTILLERS.register("none")
class Distiller(nn.Module):
    """No teacher: cross-entropy on the labels only (the from-scratch baseline)

    ``L = w_ce·CE(z_s, y)``. The base of every distiller: subclasses set ``default_weights``,
    the ``terms`` they can compute and what they need, and add their teacher terms.
    """

    name: ClassVar[str] = "none"
    default_weights: ClassVar[dict[str, float]] = {"ce": 1.0, "embed": 0.0, "kd": 0.0, "srrl": 0.0}
    default_warmup: ClassVar[float] = 0.0  # epochs of distill_warmup when it is null
    needs_teacher: ClassVar[bool] = False
    needs_features: ClassVar[bool] = False
    needs_index: ClassVar[bool] = False
    terms: ClassVar[tuple[str, ...]] = ("ce",)

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None, num_classes: int,
                 train_labels: Tensor | None, teacher_head: nn.Linear | None, seed: int,
                 steps_per_epoch: int | None = None):
        super().__init__()
        self.settings = settings
        self.weights = self._resolve_weights(settings)
        warmup = getattr(settings, "distill_warmup", None)
        self.warmup_epochs = self.default_warmup if warmup is None else float(warmup)
        self.warmup_steps = self.warmup_epochs * (steps_per_epoch or 0)
        # Training steps taken, saved with the distiller (a resumed run continues the ramp).
        self.register_buffer("steps_done", torch.zeros((), dtype=torch.long))
        if self.needs_features and t_dim is None:
            raise DaptError(f"distiller {self.name!r} needs the teacher's feature width; "
                            "pass t_dim (the teacher model's feat_dim)")

    def _resolve_weights(self, settings: Any) -> dict[str, float]:
        weights = {term: float(self.default_weights[term]) for term in TERMS}
        for term in TERMS:
            override = getattr(settings, f"w_{term}")
            if override is not None:
                weights[term] = float(override)
            if weights[term] and term not in self.terms:
                raise DaptError(f"distiller {self.name!r} has no {term} loss but w_{term}="
                                f"{weights[term]}; set w_{term} to 0 or null")
        if not any(weights.values()):
            raise DaptError(f"distiller {self.name!r}: every loss weight is 0; "
                            "give at least one of w_ce, w_embed, w_kd, w_srrl a positive value")
        return weights

    def forward(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None = None,
                t_logits: Tensor | None = None, index: Tensor | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        """Total loss of a batch and the float value of each weighted part (``{"ce": .., ...}``)."""
        weighted = self.weigh(self.losses(s_feat, s_logits, y, t_feat, t_logits, index))
        total = sum(weighted.values())
        return total, {term: float(value.detach()) for term, value in weighted.items()}

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

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None = None,
               t_logits: Tensor | None = None, index: Tensor | None = None) -> dict[str, Tensor]:
        """The unweighted loss of each term with a non-zero weight, as tensors (``forward``
        weighs and sums them; ``benchmarks/loss_scales.py`` measures each one's gradient)."""
        self._check_inputs(s_logits, t_feat, t_logits, index)
        # Cached teacher outputs may be fp16; the teacher never trains, hence detach.
        if t_feat is not None:
            t_feat = t_feat.detach().to(s_feat.dtype)
        if t_logits is not None:
            t_logits = t_logits.detach().to(s_logits.dtype)
        losses: dict[str, Tensor] = {}
        if self.weights["ce"]:
            losses["ce"] = F.cross_entropy(s_logits, y)
        if self.weights["kd"]:
            losses["kd"] = kd_loss(s_logits, t_logits, self.settings.kd_T)
        losses.update(self.teacher_terms(s_feat, t_feat, t_logits, index))
        return losses

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor | None, t_logits: Tensor | None,
                      index: Tensor | None) -> dict[str, Tensor]:
        """Unweighted ``embed``/``srrl`` losses of the terms with a non-zero weight."""
        return {}

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
