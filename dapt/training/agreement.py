"""Teacher/student agreement: how faithfully a student reproduces its teacher's predictions.

Fidelity is not accuracy (Stanton et al. 2021, "Does knowledge distillation really work?"): a
student can match the teacher's accuracy while disagreeing on many samples, so the report shows
top-1 agreement, predictive KL, calibration (Guo et al. 2017) and representation similarity
(linear CKA, Kornblith et al. 2019) next to test accuracy. Pure torch; no model code.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from dapt.core.errors import DaptError

# Rows per chunk when accumulating CKA cross-covariances: bounds the float64 working copy to
# about 16 MB for 2048-wide features, whatever N is.
_CKA_CHUNK_ROWS = 1024


def _logits(name: str, logits) -> Tensor:
    logits = torch.as_tensor(logits)
    if logits.ndim != 2 or logits.shape[0] == 0:
        raise DaptError(f"{name} must be a non-empty [N, C] tensor, got shape {tuple(logits.shape)}; "
                        "pass one row of class scores per sample")
    return logits


def _paired(t_logits, s_logits) -> tuple[Tensor, Tensor]:
    t, s = _logits("teacher logits", t_logits), _logits("student logits", s_logits)
    if t.shape != s.shape:
        raise DaptError(f"teacher logits {tuple(t.shape)} and student logits {tuple(s.shape)} differ in shape; "
                        "evaluate both models on the same samples with the same classes")
    return t, s


def _labels_for(logits: Tensor, labels) -> Tensor:
    labels = torch.as_tensor(labels, device=logits.device).long()
    if labels.shape != (logits.shape[0],):
        raise DaptError(f"labels of shape {tuple(labels.shape)} do not match {logits.shape[0]} logit rows; "
                        "pass one integer label per sample")
    return labels


def accuracy(logits, labels) -> float:
    """Top-1 accuracy, a fraction in [0, 1]: mean over samples of [argmax z_i = y_i]."""
    logits = _logits("logits", logits)
    return (logits.argmax(1) == _labels_for(logits, labels)).double().mean().item()


def top1_agreement(t_logits, s_logits) -> float:
    """Top-1 agreement (Stanton et al. 2021): mean over samples of [argmax z_t,i = argmax z_s,i]."""
    t, s = _paired(t_logits, s_logits)
    return (t.argmax(1) == s.argmax(1)).double().mean().item()


def agreement_split(t_logits, s_logits, labels) -> tuple[float, float]:
    """Top-1 agreement on the samples the teacher gets right, and on those it gets wrong.

    Agreement where the teacher is wrong shows whether the student copies the teacher's mistakes
    (Stanton et al. 2021). Either value is nan when its subset is empty.
    """
    t, s = _paired(t_logits, s_logits)
    t_pred, s_pred = t.argmax(1), s.argmax(1)
    teacher_right = t_pred == _labels_for(t, labels)
    agree = (t_pred == s_pred).double()

    def rate(mask: Tensor) -> float:
        return agree[mask].mean().item() if mask.any() else math.nan

    return rate(teacher_right), rate(~teacher_right)


def predictive_kl(t_logits, s_logits, T: float = 1.0) -> float:
    """Mean over samples of KL(p_t ‖ p_s) in nats, p = softmax(z / T), computed in float64.

    KL(p_t ‖ p_s) = Σ_c p_t,c (log p_t,c − log p_s,c) (Stanton et al. 2021 use it at T = 1 as a
    fidelity measure). Unlike the KD loss it is not multiplied by T².
    """
    if T <= 0:
        raise DaptError(f"temperature T={T} must be positive; use T=1 for the plain predictive KL")
    t, s = _paired(t_logits, s_logits)
    log_pt = torch.log_softmax(t.double() / T, dim=1)
    log_ps = torch.log_softmax(s.double() / T, dim=1)
    return (log_pt.exp() * (log_pt - log_ps)).sum(1).mean().item()


def reliability_bins(logits, labels, n_bins: int = 15) -> dict:
    """Per-bin calibration statistics (Guo et al. 2017) for a reliability diagram.

    Confidence is the max softmax probability; bin b covers (b/n_bins, (b+1)/n_bins].
    Returns lists of length n_bins under ``lower``, ``upper`` (edges), ``confidence`` (mean
    confidence), ``accuracy`` and ``count``; empty bins have confidence and accuracy None.
    """
    if n_bins < 1:
        raise DaptError(f"n_bins={n_bins} must be at least 1; the standard choice is 15")
    logits = _logits("logits", logits)
    labels = _labels_for(logits, labels)
    confidence, predicted = torch.softmax(logits.double(), dim=1).max(1)
    correct = (predicted == labels).double()
    edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=torch.float64, device=logits.device)
    # right=False puts a value equal to an upper edge in that bin, giving (lower, upper] bins.
    bin_index = torch.bucketize(confidence, edges[1:], right=False).clamp_(max=n_bins - 1)
    count = torch.bincount(bin_index, minlength=n_bins)
    conf_sum = torch.bincount(bin_index, weights=confidence, minlength=n_bins)
    correct_sum = torch.bincount(bin_index, weights=correct, minlength=n_bins)
    n = count.tolist()
    return {
        "lower": edges[:-1].tolist(),
        "upper": edges[1:].tolist(),
        "confidence": [c / k if k else None for c, k in zip(conf_sum.tolist(), n)],
        "accuracy": [a / k if k else None for a, k in zip(correct_sum.tolist(), n)],
        "count": n,
    }


def expected_calibration_error(logits, labels, n_bins: int = 15) -> float:
    """Expected calibration error (Guo et al. 2017): ECE = Σ_b (n_b / n)·|acc_b − conf_b|.

    Equal-width confidence bins on (0, 1], confidence = max softmax probability.
    """
    bins = reliability_bins(logits, labels, n_bins)
    total = sum(bins["count"])
    return sum(k / total * abs(a - c)
               for k, a, c in zip(bins["count"], bins["accuracy"], bins["confidence"]) if k)


def _features_and_mean(name: str, features) -> tuple[Tensor, Tensor]:
    features = torch.as_tensor(features)
    if features.ndim < 2 or features.shape[0] < 2:
        raise DaptError(f"{name} must be [N, D] with N >= 2, got shape {tuple(features.shape)}; "
                        "pass penultimate features, one row per sample")
    features = features.reshape(features.shape[0], -1)
    return features, features.double().mean(0)


def linear_cka(x, y) -> float:
    """Linear centred kernel alignment (Kornblith et al. 2019) between two feature sets.

    With X [N, Dx] and Y [N, Dy] centred column-wise,
    CKA = ‖YᵀX‖_F² / (‖XᵀX‖_F · ‖YᵀY‖_F), which equals HSIC(K, L)/√(HSIC(K, K)·HSIC(L, L)) for
    the linear kernels K = XXᵀ, L = YYᵀ without forming the N×N Gram matrices. Widths may
    differ. Computed in float64, accumulating over row chunks so memory stays O(D²).
    Returns nan when either side has no variance.
    """
    x, x_mean = _features_and_mean("first feature set", x)
    y, y_mean = _features_and_mean("second feature set", torch.as_tensor(y).to(x.device))
    if x.shape[0] != y.shape[0]:
        raise DaptError(f"feature sets have {x.shape[0]} and {y.shape[0]} rows; "
                        "extract both from the same samples in the same order")
    xx = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    yy = torch.zeros(y.shape[1], y.shape[1], dtype=torch.float64, device=x.device)
    yx = torch.zeros(y.shape[1], x.shape[1], dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], _CKA_CHUNK_ROWS):
        xc = x[start:start + _CKA_CHUNK_ROWS].double() - x_mean
        yc = y[start:start + _CKA_CHUNK_ROWS].double() - y_mean
        xx.addmm_(xc.T, xc)
        yy.addmm_(yc.T, yc)
        yx.addmm_(yc.T, xc)
    denominator = torch.linalg.matrix_norm(xx) * torch.linalg.matrix_norm(yy)
    if denominator == 0:
        return math.nan
    return (yx.square().sum() / denominator).item()


def _per_class_rate(hits: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """Mean of ``hits`` among the samples of each true class: float64 [num_classes], nan if absent."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise DaptError(f"labels must lie in [0, {num_classes}); check num_classes against the dataset")
    count = torch.bincount(labels, minlength=num_classes).double()
    hit = torch.bincount(labels, weights=hits.double(), minlength=num_classes)
    return torch.where(count > 0, hit / count.clamp(min=1), torch.full_like(count, math.nan))


def per_class_agreement(t_logits, s_logits, labels, num_classes: int) -> Tensor:
    """Top-1 agreement rate among the samples of each true class: float64 [num_classes], nan if absent."""
    t, s = _paired(t_logits, s_logits)
    return _per_class_rate(t.argmax(1) == s.argmax(1), _labels_for(t, labels), num_classes)


def per_class_accuracy(logits, labels, num_classes: int) -> Tensor:
    """Top-1 accuracy among the samples of each true class: float64 [num_classes], nan if absent."""
    logits = _logits("logits", logits)
    labels = _labels_for(logits, labels)
    return _per_class_rate(logits.argmax(1) == labels, labels, num_classes)


def prediction_matrix(t_logits, s_logits, num_classes: int) -> Tensor:
    """Counts [C, C] (int64): entry (i, j) = samples the teacher predicts as i and the student as j.

    The trace over the total is the top-1 agreement; off-diagonal mass shows which confusions
    the student does not share with its teacher.
    """
    t, s = _paired(t_logits, s_logits)
    if t.shape[1] > num_classes:
        raise DaptError(f"logits have {t.shape[1]} classes but num_classes={num_classes}; "
                        "pass the dataset's number of classes")
    pair_index = t.argmax(1) * num_classes + s.argmax(1)
    return torch.bincount(pair_index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _json_float(value: float) -> float | None:
    return None if math.isnan(value) else float(value)


def agreement_metrics(t_logits, s_logits, labels, t_feat=None, s_feat=None, n_bins: int = 15) -> dict[str, float]:
    """All agreement numbers of one evaluation, as JSON-ready floats (None where undefined).

    Keys: test_acc (student), teacher_test_acc, agreement, agreement_teacher_right,
    agreement_teacher_wrong, kl (T = 1), ece, teacher_ece, and cka when both feature sets are given.
    """
    if (t_feat is None) != (s_feat is None):
        raise DaptError("CKA needs both teacher and student features; pass both t_feat and s_feat, or neither")
    right, wrong = agreement_split(t_logits, s_logits, labels)
    metrics = {
        "test_acc": accuracy(s_logits, labels),
        "teacher_test_acc": accuracy(t_logits, labels),
        "agreement": top1_agreement(t_logits, s_logits),
        "agreement_teacher_right": right,
        "agreement_teacher_wrong": wrong,
        "kl": predictive_kl(t_logits, s_logits, T=1.0),
        "ece": expected_calibration_error(s_logits, labels, n_bins),
        "teacher_ece": expected_calibration_error(t_logits, labels, n_bins),
    }
    if t_feat is not None:
        metrics["cka"] = linear_cka(t_feat, s_feat)
    return {key: _json_float(value) for key, value in metrics.items()}
