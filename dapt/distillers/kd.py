"""Knowledge distillation on logits (Hinton, Vinyals & Dean 2015)."""
from __future__ import annotations

from torch import Tensor

from dapt.distillers.losses import kd_loss
from dapt.distillers.none import LabelsOnly


class KD(LabelsOnly):
    """Hinton et al. 2015: CE + T²·KL to the teacher's softened logits

    ``L = w_ce·CE(z_s, y) + w_kd·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T))`` with T = ``kd_T``
    (4 by default, as the reference). G. Hinton, O. Vinyals, J. Dean, "Distilling the Knowledge
    in a Neural Network", NeurIPS Deep Learning Workshop 2015. The base of the feature
    distillers, which add their terms to these two.
    """

    name = "kd"

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None,
               t_logits: Tensor | None, index: Tensor | None) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if self.weights["kd"]:
            losses["kd"] = kd_loss(s_logits, t_logits, self.settings.kd_T)
        return losses
