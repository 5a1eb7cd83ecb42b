"""Softmax regression representation learning (Yang et al. 2021)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from dapt.core.errors import DaptError
from dapt.core.fields import param
from dapt.distillers.base import DISTILLERS, Distiller
from dapt.distillers.losses import logit_regression_loss
from dapt.distillers.projectors import CONNECTORS


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
    ``W_t``: ``L_embed = MSE(g, f_t)``, ``L_srrl = MSE(W_t·g + b_t, z_t) / mean(z_t²)`` and
    ``L = w_ce·CE + w_embed·L_embed + w_srrl·L_srrl`` (+ ``w_kd·L_kd`` if set). J. Yang,
    B. Martinez, A. Bulat, G. Tzimiropoulos, "Knowledge Distillation via Softmax Regression
    Representation Learning", ICLR 2021.

    Both MSEs are means over elements, as the reference's ``nn.MSELoss()``. One deviation, on by
    default (``srrl_normalise``; false gives the reference's loss): the logit MSE is divided by
    the teacher's mean squared logit on the batch (``losses.logit_regression_loss``), which only
    rescales the term's weight. Why: the plain MSE starts at about that mean square (77 for the
    embedded study's teacher, 90 for the 600-image 64-px one, 99.8% sure of its training
    images): a property of how the teacher was fine-tuned, not of the method. As the connector
    learns, the plain term's gradient on the student's features grows to 3.7x cross-entropy's on
    MobileNetV2 and 4.7x on EfficientNet-Lite0 (median over the second half of a run), nearly
    orthogonal to it (cosine ≤ 0.1) throughout, and AdamW's steps follow it: the body chases a
    regression its features cannot yet fit, and Lite0 collapsed (54% against 70% for ``none``,
    32 px, 3 epochs). In units of the teacher's logits the term's gradient is 0.14–0.16x
    cross-entropy's, the body learns from the labels, the teacher head agrees with the teacher
    on the connected features as often (0.52 against 0.45–0.53). At 32 px Lite0 then ends at 69.6%
    (``none`` 69.9%) and MobileNetV2 at 70.9% (``none`` 69.3%, plain term 67.3%); on 600 images
    at 64 px over 30 epochs, Lite0 at 76.5% (``none`` 76.6%, plain term 54.1%) and MobileNetV2
    at 74.9% (``none`` 74.8%; ``benchmarks/results/srrl_lite0.md``). A BatchNorm in the
    connector (the SRRL authors' own) does not help: Lite0 55%. The feature term, averaged over
    the teacher's 1,280 dimensions, has 1/50 of cross-entropy's gradient or less either way. The
    default ``distill_warmup`` of one epoch (introduced against the plain term) is kept.
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
