"""DIST: distillation of the teacher's inter- and intra-class relations (Huang et al. 2022)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dapt.distillers.none import LabelsOnly

# The reference's guard against a zero-variance row (a batch of one, a saturated softmax):
# such a pair counts as uncorrelated instead of dividing by zero.
_EPS = 1e-8


def mean_row_correlation(a: Tensor, b: Tensor) -> Tensor:
    """Mean over rows of the Pearson correlation of row ``a_i`` with row ``b_i``:
    ``⟨a_i − ā_i, b_i − b̄_i⟩ / (‖a_i − ā_i‖·‖b_i − b̄_i‖ + 1e-8)``, as the reference's
    ``pearson_correlation``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return ((a * b).sum(dim=1) / (a.norm(dim=1) * b.norm(dim=1) + _EPS)).mean()


def dist_losses(s_logits: Tensor, t_logits: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """DIST's inter- and intra-class relation losses (T. Huang, S. You, F. Wang, C. Qian, C. Xu,
    "Knowledge Distillation from A Stronger Teacher", NeurIPS 2022; reference
    hunto/image_classification_sota ``lib/models/losses/dist_kd.py``).

    With Y = softmax(z/T) (B×C): ``inter = T²·(1 − mean_i ρ(Y_s[i, :], Y_t[i, :]))``, each sample's
    class scores matched up to shift and scale; ``intra = T²·(1 − mean_c ρ(Y_s[:, c], Y_t[:, c]))``,
    each class's scores across the batch. ρ is Pearson's correlation (``mean_row_correlation``).
    Matching correlations instead of KL's exact probabilities lets a student keep its own scale,
    which the paper finds helps when the teacher is much stronger.
    """
    p_s, p_t = F.softmax(s_logits / T, dim=1), F.softmax(t_logits / T, dim=1)
    inter = 1 - mean_row_correlation(p_s, p_t)
    intra = 1 - mean_row_correlation(p_s.T, p_t.T)
    return inter * T * T, intra * T * T


class DIST(LabelsOnly):
    """Huang et al. 2022: CE + 1 − Pearson correlation of the softened outputs, per sample and per class

    ``L = w_ce·CE(z_s, y) + w_inter·inter + w_intra·intra`` (``dist_losses``) with T = ``kd_T``.
    T. Huang, S. You, F. Wang, C. Qian, C. Xu, "Knowledge Distillation from A Stronger Teacher",
    NeurIPS 2022.

    Defaults are the reference's (DIST_KD's submodule hunto/image_classification_sota): every DIST
    config (``configs/strategies/distill/dist_cifar.yaml``, ``resnet_dist.yaml``, ``dist_b2.yaml``)
    sets ``ori_loss_weight: 1``, ``kd_loss_weight: 2`` on ``DIST(beta=1, gamma=1)``, so CE 1,
    β = ``w_inter`` = 2, γ = ``w_intra`` = 2; its CIFAR-100 config uses τ = 4 (``kd: dist_t4``),
    ImageNet τ = 1 (``kd: dist``). dapt's images are CIFAR-sized, so T = ``kd_T`` = 4, the value
    kd uses too. The reference has no distillation warm-up, nor does this by default.
    """

    name = "dist"

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None,
               t_logits: Tensor | None, index: Tensor | None) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if self.weights["inter"] or self.weights["intra"]:
            inter, intra = dist_losses(s_logits, t_logits, self.settings.kd_T)
            losses.update((term, loss) for term, loss in (("inter", inter), ("intra", intra))
                          if self.weights[term])
        return losses
