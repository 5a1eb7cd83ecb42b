"""Softmax regression representation learning (Yang et al. 2021)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import DaptError
from ..fields import param
from .base import DISTILLERS, Distiller
from .losses import logit_regression_loss
from .projectors import CONNECTORS


@dataclass
class SRRLSettings:
    """The SRRL connector (reference ``distill.py``, ``--connector``)."""

    srrl_connector: str = param("mlp2", "srrl: connector from student to teacher feature width",
                                choices=CONNECTORS.names)
    srrl_normalise: bool = param(True, "srrl: divide the logit MSE by the teacher's mean squared "
                                       "logit on the batch, so its weight does not depend on the "
                                       "teacher's logit scale (false: the reference's plain MSE)")


@DISTILLERS.register("srrl")
class SRRL(Distiller):
    """Yang et al. 2021: CE + feature MSE through a connector + the teacher head's logit MSE on it

    With ``g = connector(f_s)`` (``srrl_connector``, trained) and the teacher's frozen classifier
    ``W_t``: ``L_embed = MSE(g, f_t)``, ``L_srrl = MSE(W_t·g + b_t, z_t)`` and
    ``L = w_ce·CE + w_embed·L_embed + w_srrl·L_srrl`` (+ ``w_kd·L_kd`` if set). J. Yang,
    B. Martinez, A. Bulat, G. Tzimiropoulos, "Knowledge Distillation via Softmax Regression
    Representation Learning", ICLR 2021.

    Both MSEs are means over elements, as the reference's ``nn.MSELoss()``. The logit term starts
    at about the teacher's mean squared logit (≈ 45–60 for the embedded study's teacher), and its
    gradient on the student's features stays 3–4x cross-entropy's and nearly orthogonal to it
    (cosine ≤ 0.1) all through a short run; the feature term, averaged over the teacher's 1,280
    dimensions, has 1/120 of cross-entropy's gradient. At full weight from the first step the
    body follows the logit regression instead of the labels and a 4-epoch MobileNetV2 collapses
    (55% against 71% for ``none``); hence the default ``distill_warmup`` of one epoch, which
    lets the body learn from the labels first (67% against 69% for ``none`` in the same
    measurement; ``benchmarks/loss_scales.py``).
    """

    name = "srrl"
    default_weights = {"ce": 1.0, "embed": 1.0, "kd": 0.0, "srrl": 1.0}
    default_warmup = 1.0
    needs_teacher = needs_features = True
    terms = ("ce", "embed", "kd", "srrl")

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None,
                 num_classes: int, teacher_head: nn.Linear | None, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                         teacher_head=teacher_head, **rest)
        if not isinstance(teacher_head, nn.Linear):
            raise DaptError("distiller 'srrl' needs the teacher's classifier; pass "
                            "teacher_head=<the teacher's nn.Linear head>")
        if (teacher_head.in_features, teacher_head.out_features) != (t_dim, num_classes):
            raise DaptError(f"teacher head maps {teacher_head.in_features}→"
                            f"{teacher_head.out_features} but t_dim={t_dim}, num_classes="
                            f"{num_classes}; pass the head of the same teacher")
        self.connector = CONNECTORS.get(settings.srrl_connector)(s_dim, t_dim)
        # A frozen copy as buffers: out of parameters() by construction, yet moved by .to()
        # and saved; gradient still flows through F.linear to the connector and the student.
        self.register_buffer("head_weight", teacher_head.weight.detach().clone())
        bias = teacher_head.bias
        self.register_buffer("head_bias", None if bias is None else bias.detach().clone())

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor, t_logits: Tensor,
                      index: Tensor | None) -> dict[str, Tensor]:
        if not (self.weights["embed"] or self.weights["srrl"]):
            return {}
        mapped = self.connector(s_feat)
        losses = {}
        if self.weights["embed"]:
            losses["embed"] = F.mse_loss(mapped, t_feat)
        if self.weights["srrl"]:
            head_logits = F.linear(mapped, self.head_weight, self.head_bias)
            losses["srrl"] = logit_regression_loss(head_logits, t_logits,
                                                   self.settings.srrl_normalise)
        return losses
