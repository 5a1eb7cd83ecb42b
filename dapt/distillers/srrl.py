"""Softmax regression representation learning (Yang et al. 2021)."""
from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dapt.core.errors import DaptError
from dapt.distillers.catalog import CONNECTORS
from dapt.distillers.kd import KD
from dapt.distillers.losses import logit_regression_loss


class SRRL(KD):
    """Yang et al. 2021: CE + feature MSE through a connector + the teacher head's logit MSE on it

    With ``g = connector(f_s)`` (``srrl_connector``, trained) and the teacher's frozen classifier
    ``W_t``: ``L_embed = MSE(g, f_t)``, ``L_srrl = MSE(W_t·g + b_t, z_t) / mean(z_t²)`` and
    ``L = w_ce·CE + w_embed·L_embed + w_srrl·L_srrl`` (+ ``w_kd·L_kd`` if set). J. Yang,
    B. Martinez, A. Bulat, G. Tzimiropoulos, "Knowledge Distillation via Softmax Regression
    Representation Learning", ICLR 2021. Both MSEs are means over elements, as the reference's
    ``nn.MSELoss()``.

    One deviation, on by default (``srrl_normalise``; false gives the reference's loss): the logit
    MSE is divided by the teacher's mean squared logit on the batch
    (``losses.logit_regression_loss``), which only rescales the term's weight. Why: the plain
    MSE's scale is the teacher's logit scale, set by how it was fine-tuned, not by the method; at
    that scale its gradient on the student's features outgrows cross-entropy's, nearly orthogonal
    to it, and the body chases a regression its features cannot yet fit (EfficientNet-Lite0
    collapsed). Measurements: ``benchmarks/results/srrl_lite0.md``. The default
    ``distill_warmup`` of one epoch is kept.
    """

    name = "srrl"

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

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor,
               t_logits: Tensor, index: Tensor | None) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if not (self.weights["embed"] or self.weights["srrl"]):
            return losses
        mapped = self.connector(s_feat)
        if self.weights["embed"]:
            losses["embed"] = F.mse_loss(mapped, t_feat)
        if self.weights["srrl"]:
            head_logits = F.linear(mapped, self.head_weight, self.head_bias)
            losses["srrl"] = logit_regression_loss(head_logits, t_logits,
                                                   self.settings.srrl_normalise)
        return losses
