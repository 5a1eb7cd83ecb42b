"""Decoupled knowledge distillation (Zhao et al. 2022)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dapt.distillers.none import LabelsOnly


def _target_split(z: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """From softened logits ``z`` (B×C) and the labels: the log binary probabilities
    ``log (p_y, 1 − p_y)`` (B×2) and the log-softmax over the C − 1 non-target classes (B×(C−1)).

    The target column is dropped rather than pushed down by 1000 as the reference does: the same
    distribution but exact; ``1 − p_y`` is taken in log space (a logsumexp over the non-target
    logits), so it stays finite where ``p_y`` rounds to 1.
    """
    others = torch.ones_like(z, dtype=torch.bool).scatter_(1, y.unsqueeze(1), False)
    z_others = z[others].view(z.shape[0], z.shape[1] - 1)  # boolean indexing keeps each row's order
    lse_all, lse_others = torch.logsumexp(z, dim=1), torch.logsumexp(z_others, dim=1)
    log_binary = torch.stack([z.gather(1, y.unsqueeze(1)).squeeze(1) - lse_all,
                              lse_others - lse_all], dim=1)
    return log_binary, z_others - lse_others.unsqueeze(1)


def dkd_losses(s_logits: Tensor, t_logits: Tensor, y: Tensor, T: float) -> tuple[Tensor, Tensor]:
    """TCKD and NCKD, the two parts of classical KD that DKD weighs apart (B. Zhao, Q. Cui,
    R. Song, Y. Qiu, J. Liang, "Decoupled Knowledge Distillation", CVPR 2022; reference
    mdistiller ``mdistiller/distillers/DKD.py``, ``dkd_loss``).

    With p = softmax(z/T): ``TCKD = T²·mean_b KL(b_t ‖ b_s)`` over the binary target / non-target
    probabilities ``b = (p_y, 1 − p_y)``; ``NCKD = T²·mean_b KL(p̂_t ‖ p̂_s)`` over
    ``p̂ = softmax`` of the non-target logits only. Hinton's KD is ``TCKD + (1 − p_t,y)·NCKD``:
    the teacher's confidence on the target scales NCKD down exactly where the teacher is surest.
    """
    log_b_s, log_phat_s = _target_split(s_logits / T, y)
    log_b_t, log_phat_t = _target_split(t_logits / T, y)
    tckd = F.kl_div(log_b_s, log_b_t, reduction="batchmean", log_target=True)
    nckd = F.kl_div(log_phat_s, log_phat_t, reduction="batchmean", log_target=True)
    return tckd * T * T, nckd * T * T


class DKD(LabelsOnly):
    """Zhao et al. 2022: CE + KD decoupled into its target (TCKD) and non-target (NCKD) parts, weighed apart

    ``L = w_ce·CE(z_s, y) + w_tckd·TCKD + w_nckd·NCKD`` (``dkd_losses``) with T = ``kd_T``. B. Zhao,
    Q. Cui, R. Song, Y. Qiu, J. Liang, "Decoupled Knowledge Distillation", CVPR 2022.

    Defaults are the reference's CIFAR-100 ones (mdistiller ``mdistiller/engine/cfg.py``, used by
    every ``configs/cifar100/dkd/*.yaml``): CE 1, α = ``w_tckd`` = 1, β = ``w_nckd`` = 8, T = 4
    (its ImageNet configs: β = 0.5, T = 1, warm-up 1 epoch). dapt's images are CIFAR-sized, so the
    CIFAR values stand.

    Warm-up: the reference multiplies TCKD + NCKD by ``min(epoch / 20, 1)`` (epochs counted from 1),
    20 of CIFAR's 240 epochs; dapt's ``distill_warmup`` is the same linear ramp on every term but CE,
    per step. The default here is 1 epoch, not 20: most of dapt's studies train their students 30
    epochs or fewer (docs/distillers.md), where a 20-epoch ramp would keep the teacher terms below
    full weight for most of the run. One epoch is the
    reference's own ImageNet value and still eases in β = 8's large NCKD gradient at the start;
    ``distill_warmup: 20`` reproduces the CIFAR schedule on a paper-length run.
    """

    name = "dkd"

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None,
               t_logits: Tensor | None, index: Tensor | None) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if self.weights["tckd"] or self.weights["nckd"]:
            tckd, nckd = dkd_losses(s_logits, t_logits, y, self.settings.kd_T)
            losses.update((term, loss) for term, loss in (("tckd", tckd), ("nckd", nckd))
                          if self.weights[term])
        return losses
