"""The plain distillation losses, each a function of tensors, testable alone by hand.

Each docstring gives the formula and the paper it comes from; the distillers in this package
weight and combine them (``kd`` every distiller with ``w_kd > 0``, ``align``/``uniform``
``align_uniform``, ``logit_regression`` ``srrl``).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def kd_loss(s_logits: Tensor, t_logits: Tensor, T: float) -> Tensor:
    """Knowledge distillation (Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a
    Neural Network"; reference ``kd_losses/kd.py`` ``DistillKL``).

    ``L_kd = T² · mean_b KL(softmax(z_t/T) ‖ softmax(z_s/T))``, the KL summed over classes and
    averaged over the batch; the T² keeps its gradient on the scale of the cross-entropy's as
    T changes.
    """
    log_p_s = F.log_softmax(s_logits / T, dim=1)
    log_p_t = F.log_softmax(t_logits / T, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * T * T


def align_loss(p_s: Tensor, p_t: Tensor, alpha: float) -> Tensor:
    """Alignment (Wang & Isola 2020, "Understanding Contrastive Representation Learning through
    Alignment and Uniformity on the Hypersphere"; as a distiller, Farhat & Chen 2024).

    ``L_align = mean_i ‖p_s,i − p_t,i‖₂^α`` over the batch.
    """
    # Raising the squared distance to α/2 keeps the gradient finite where p_s,i = p_t,i.
    return (p_s - p_t).pow(2).sum(dim=1).pow(alpha / 2).mean()


def uniform_loss(p: Tensor, t: float) -> Tensor:
    """Uniformity (Wang & Isola 2020).

    ``L_unif = log mean_{i<j} exp(−t·‖p_i − p_j‖₂²)`` over the pairs of the batch.
    """
    n = p.shape[0]
    if n < 2:
        raise ValueError(f"uniform_loss needs at least 2 rows to form pairs, got {n}")
    i, j = torch.triu_indices(n, n, offset=1, device=p.device)
    # Through the Gram matrix: O(B²) memory instead of one d-vector per pair.
    gram = p @ p.T
    sq_norms = gram.diagonal()
    sq_dist = (sq_norms[i] + sq_norms[j] - 2 * gram[i, j]).clamp_min(0)
    return torch.logsumexp(-t * sq_dist, dim=0) - math.log(i.numel())


def logit_regression_loss(head_logits: Tensor, t_logits: Tensor, normalise: bool = True) -> Tensor:
    """SRRL's softmax regression term (Yang et al. 2021, "Knowledge Distillation via Softmax
    Regression Representation Learning"): the teacher's classifier on the connected student
    features against the teacher's logits.

    ``L = mean (h − z_t)²`` over the batch's B×C elements (reference ``nn.MSELoss()``); with
    ``normalise``, ``L = Σ (h − z_t)² / Σ z_t²``, the same MSE in units of the teacher's mean
    squared logit on the batch (a constant: the teacher is frozen). The plain MSE grows with the
    square of the teacher's logit scale, which how long and how sharply the teacher was fine-tuned
    decides; the normalised one is unchanged when the teacher's logits (and so its head) are
    scaled, and is 1 for a predictor of zeros.
    """
    mse = F.mse_loss(head_logits, t_logits)
    if not normalise:
        return mse
    # a teacher whose logits on a whole batch are all zero is degenerate; no division by zero then
    return mse / t_logits.detach().pow(2).mean().clamp_min(1e-12)
