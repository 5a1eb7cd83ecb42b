"""Agreement metrics against values derived by hand or by independent formulas."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dapt.training.agreement import (
    accuracy,
    agreement_metrics,
    agreement_split,
    expected_calibration_error,
    linear_cka,
    per_class_accuracy,
    per_class_agreement,
    prediction_matrix,
    predictive_kl,
    reliability_bins,
    top1_agreement,
)
from dapt.core.errors import DaptError


def one_hot_logits(predictions: list[int], num_classes: int, scale: float = 5.0) -> torch.Tensor:
    return scale * torch.nn.functional.one_hot(torch.tensor(predictions), num_classes).float()


def logits_with_confidence(predictions: list[int], num_classes: int, confidence: float) -> torch.Tensor:
    """Logits whose softmax gives `confidence` to the predicted class, the rest spread evenly."""
    rest = (1 - confidence) / (num_classes - 1)
    probs = torch.full((len(predictions), num_classes), rest, dtype=torch.float64)
    probs[torch.arange(len(predictions)), torch.tensor(predictions)] = confidence
    return probs.log()


def test_identical_models_agree_fully_with_zero_kl_and_unit_cka():
    torch.manual_seed(0)
    logits = torch.randn(50, 7)
    features = torch.randn(50, 12)
    assert top1_agreement(logits, logits.clone()) == 1.0
    assert predictive_kl(logits, logits.clone()) == pytest.approx(0.0, abs=1e-12)
    assert linear_cka(features, features.clone()) == pytest.approx(1.0, abs=1e-12)


def test_permuted_student_agrees_where_argmax_is_a_fixed_point():
    torch.manual_seed(1)
    teacher = torch.randn(200, 5)
    permutation = torch.tensor([0, 2, 1, 3, 4])  # classes 0, 3, 4 map to themselves
    student = teacher[:, permutation]
    # student's argmax is the position j with permutation[j] = teacher argmax: a fixed point iff argmax in {0,3,4}
    expected = sum(int(c) in (0, 3, 4) for c in teacher.argmax(1)) / 200
    assert 0 < expected < 1
    assert top1_agreement(teacher, student) == pytest.approx(expected)


def test_predictive_kl_matches_hand_computed_value():
    teacher = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    student = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])

    def softmax(row):
        e = [math.exp(v) for v in row]
        return [v / sum(e) for v in e]

    def kl(p, q):
        return sum(a * math.log(a / b) for a, b in zip(p, q))

    expected = (kl(softmax([2, 0, -1]), softmax([0, 1, 0])) + kl(softmax([0, 0, 0]), softmax([1, 0, 0]))) / 2
    assert predictive_kl(teacher, student) == pytest.approx(expected, rel=1e-12)
    hot = (kl(softmax([1, 0, -0.5]), softmax([0, 0.5, 0])) + kl(softmax([0, 0, 0]), softmax([0.5, 0, 0]))) / 2
    assert predictive_kl(teacher, student, T=2.0) == pytest.approx(hot, rel=1e-12)


def test_agreement_split_and_accuracy_by_hand():
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    teacher = one_hot_logits([0, 1, 2, 1, 2, 0], 3)  # right on 0..2, wrong on 3..5
    student = one_hot_logits([0, 1, 0, 1, 0, 0], 3)  # agrees on 0, 1 | 3, 5
    right, wrong = agreement_split(teacher, student, labels)
    assert right == pytest.approx(2 / 3)
    assert wrong == pytest.approx(2 / 3)
    assert accuracy(teacher, labels) == pytest.approx(0.5)
    assert accuracy(student, labels) == pytest.approx(2 / 6)
    right, wrong = agreement_split(teacher[:3], student[:3], labels[:3])
    assert right == pytest.approx(2 / 3) and math.isnan(wrong)


def test_per_class_agreement_and_prediction_matrix_by_hand():
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    teacher = one_hot_logits([0, 0, 1, 2, 1, 2], 4)
    student = one_hot_logits([0, 1, 1, 2, 0, 2], 4)
    per_class = per_class_agreement(teacher, student, labels, num_classes=4)
    assert per_class[:3].tolist() == pytest.approx([0.5, 2 / 3, 1.0])
    assert math.isnan(per_class[3])  # no sample of class 3
    # the teacher is right on 2/2 of class 0, 2/3 of class 1 (it says 1, 2, 1), 1/1 of class 2
    teacher_right = per_class_accuracy(teacher, labels, num_classes=4)
    assert teacher_right[:3].tolist() == pytest.approx([1.0, 2 / 3, 1.0]) and math.isnan(teacher_right[3])
    expected = torch.zeros(4, 4, dtype=torch.long)
    for t, s in [(0, 0), (0, 1), (1, 1), (2, 2), (1, 0), (2, 2)]:
        expected[t, s] += 1
    matrix = prediction_matrix(teacher, student, num_classes=4)
    assert torch.equal(matrix, expected)
    assert matrix.trace().item() / matrix.sum().item() == pytest.approx(top1_agreement(teacher, student))


def test_ece_is_zero_when_confidence_matches_accuracy():
    labels = torch.zeros(10, dtype=torch.long)
    predictions = [0] * 8 + [1] * 2  # confidence 0.8, exactly 80% correct
    logits = logits_with_confidence(predictions, 4, 0.8)
    assert expected_calibration_error(logits, labels) == pytest.approx(0.0, abs=1e-12)


def test_ece_of_an_overconfident_toy_by_hand():
    labels = torch.zeros(10, dtype=torch.long)
    # 5 samples at confidence 0.95 with 3 right; 5 at confidence 0.55 with 4 right.
    high = logits_with_confidence([0, 0, 0, 1, 1], 3, 0.95)
    low = logits_with_confidence([0, 0, 0, 0, 2], 3, 0.55)
    logits = torch.cat([high, low])
    expected = 0.5 * abs(0.6 - 0.95) + 0.5 * abs(0.8 - 0.55)
    assert expected_calibration_error(logits, labels) == pytest.approx(expected, rel=1e-9)
    bins = reliability_bins(logits, labels)
    assert len(bins["count"]) == 15 and sum(bins["count"]) == 10
    top = 14  # (14/15, 1] holds 0.95
    middle = 8  # (8/15, 9/15] holds 0.55
    assert bins["count"][top] == 5 and bins["count"][middle] == 5
    assert bins["accuracy"][top] == pytest.approx(0.6) and bins["confidence"][top] == pytest.approx(0.95)
    assert bins["accuracy"][middle] == pytest.approx(0.8)
    assert bins["lower"][middle] == pytest.approx(8 / 15) and bins["upper"][middle] == pytest.approx(9 / 15)
    assert bins["accuracy"][0] is None and bins["confidence"][0] is None


def test_confidence_on_a_bin_edge_falls_in_the_lower_bin():
    labels = torch.zeros(4, dtype=torch.long)
    logits = torch.zeros(4, 2)  # confidence exactly 0.5, the upper edge of (0.25, 0.5] with 4 bins
    bins = reliability_bins(logits, labels, n_bins=4)
    assert bins["count"] == [0, 4, 0, 0]


def test_cka_invariant_to_orthogonal_transform_and_isotropic_scaling():
    torch.manual_seed(2)
    x = torch.randn(300, 16, dtype=torch.float64)
    y = torch.randn(300, 6, dtype=torch.float64)
    orthogonal, _ = torch.linalg.qr(torch.randn(16, 16, dtype=torch.float64))
    assert linear_cka(x, 3.5 * x @ orthogonal) == pytest.approx(1.0, abs=1e-9)
    assert linear_cka(x, y) == pytest.approx(linear_cka(x @ orthogonal * 0.1, y), rel=1e-9)


def test_cka_of_independent_features_is_small():
    torch.manual_seed(3)
    assert linear_cka(torch.randn(2000, 8), torch.randn(2000, 5)) < 0.02


def test_cka_matches_the_gram_matrix_hsic_formula_across_widths_and_chunks():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2500, 10)) + 3.0  # an offset the centring must remove; N spans 3 chunks
    y = np.tanh(x[:, :7] @ rng.normal(size=(7, 4))) + rng.normal(size=(2500, 4))
    n = len(x)

    def centred_gram(features):
        # H K H with H = I - 11ᵀ/n, written out to avoid n³ products
        gram = features @ features.T
        return gram - gram.mean(0, keepdims=True) - gram.mean(1, keepdims=True) + gram.mean()

    def hsic(k_centred, l_centred):
        # tr(HKH·HLH) / (n-1)², with both matrices symmetric
        return (k_centred * l_centred).sum() / (n - 1) ** 2

    k, l = centred_gram(x), centred_gram(y)
    expected = hsic(k, l) / math.sqrt(hsic(k, k) * hsic(l, l))
    got = linear_cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    assert got == pytest.approx(expected, rel=1e-5)


def test_cka_of_constant_features_is_nan():
    assert math.isnan(linear_cka(torch.ones(10, 3), torch.randn(10, 2)))


def test_agreement_metrics_keys_and_json():
    torch.manual_seed(5)
    labels = torch.randint(0, 4, (40,))
    teacher, student = torch.randn(40, 4), torch.randn(40, 4)
    base_keys = {"test_acc", "teacher_test_acc", "agreement", "agreement_teacher_right",
                 "agreement_teacher_wrong", "kl", "ece", "teacher_ece"}
    metrics = agreement_metrics(teacher, student, labels)
    assert set(metrics) == base_keys
    assert metrics["test_acc"] == pytest.approx(accuracy(student, labels))
    assert metrics["agreement"] == pytest.approx(top1_agreement(teacher, student))
    with_cka = agreement_metrics(teacher, student, labels, t_feat=torch.randn(40, 6), s_feat=torch.randn(40, 3))
    assert set(with_cka) == base_keys | {"cka"}
    assert all(type(v) is float for v in with_cka.values())
    json.dumps(with_cka, allow_nan=False)


def test_agreement_metrics_writes_null_for_undefined_split():
    labels = torch.tensor([0, 1, 2])
    teacher = one_hot_logits([0, 1, 2], 3)  # never wrong
    metrics = agreement_metrics(teacher, teacher.clone(), labels)
    assert metrics["agreement_teacher_wrong"] is None
    assert json.loads(json.dumps(metrics, allow_nan=False))["agreement_teacher_wrong"] is None


@pytest.mark.parametrize("call", [
    lambda: top1_agreement(torch.randn(5, 3), torch.randn(5, 4)),
    lambda: accuracy(torch.randn(5, 3), torch.zeros(4, dtype=torch.long)),
    lambda: linear_cka(torch.randn(5, 3), torch.randn(6, 3)),
    lambda: predictive_kl(torch.randn(5, 3), torch.randn(5, 3), T=0),
    lambda: agreement_metrics(torch.randn(5, 3), torch.randn(5, 3), torch.zeros(5, dtype=torch.long),
                              t_feat=torch.randn(5, 2)),
])
def test_mismatched_inputs_raise_dapt_error(call):
    with pytest.raises(DaptError):
        call()
