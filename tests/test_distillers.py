"""Distiller losses against values computed independently (float64, numpy / plain Python)."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from dapt.distillers import (CONNECTORS, DISTILLERS, PROJECTORS, DistillerDeclaration, DistillerSettings,
                             needs_features, needs_teacher)
from dapt.distillers.base import Distiller, build_distiller
from dapt.distillers.crd import NegativeSampler
from dapt.distillers.losses import align_loss, kd_loss, logit_regression_loss, uniform_loss
from dapt.distillers.projectors import L2Normalize
from dapt.core.errors import DaptError
from dapt.core.fields import check_ranges, choices_of, help_of
from dapt.core.registry import UnknownNameError

REPO = Path(__file__).resolve().parents[1]


def np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def np_kd(zs: np.ndarray, zt: np.ndarray, T: float) -> float:
    ps, pt = np_softmax(zs / T), np_softmax(zt / T)
    return T * T * float(np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), axis=1)))


def np_cross_entropy(z: np.ndarray, y: np.ndarray) -> float:
    return float(-np.mean(np.log(np_softmax(z)[np.arange(len(y)), y])))


def unit(rows) -> np.ndarray:
    rows = np.asarray(rows, dtype=np.float64)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def build(name: str, s_dim=4, t_dim=6, num_classes=3, **settings):
    labels = torch.arange(12) % num_classes
    return build_distiller(name, DistillerSettings(**settings), s_dim=s_dim, t_dim=t_dim,
                           num_classes=num_classes, train_labels=labels,
                           teacher_head=nn.Linear(t_dim, num_classes), seed=0, steps_per_epoch=10)


# --- plain losses ---------------------------------------------------------------------------

@pytest.mark.parametrize("T", [1.0, 2.0, 4.0])
def test_kd_loss_matches_softmax_kl_formula(T):
    rng = np.random.default_rng(0)
    zs, zt = rng.normal(size=(5, 7)) * 3, rng.normal(size=(5, 7)) * 3
    got = kd_loss(torch.tensor(zs), torch.tensor(zt), T).item()
    assert got == pytest.approx(np_kd(zs, zt, T), rel=1e-10)


def test_kd_loss_scales_with_t_squared_and_is_zero_for_identical_logits():
    z = torch.tensor([[1.0, -2.0, 0.5], [3.0, 0.0, 0.0]], dtype=torch.float64)
    assert kd_loss(z, z.clone(), 4.0).item() == pytest.approx(0.0, abs=1e-12)
    zs, zt = np.array([[0.0, math.log(3.0)]]), np.array([[0.0, 0.0]])
    # By hand at T=1: p_s = (1/4, 3/4), p_t = (1/2, 1/2).
    by_hand = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert kd_loss(torch.tensor(zs), torch.tensor(zt), 1.0).item() == pytest.approx(by_hand)
    scaled = kd_loss(torch.tensor(zs * 2), torch.tensor(zt * 2), 2.0).item()
    assert scaled == pytest.approx(4 * by_hand)


def test_uniform_loss_matches_pairwise_double_loop():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(6, 3))
    t = 2.0
    terms = [math.exp(-t * sum((p[i, d] - p[j, d]) ** 2 for d in range(3)))
             for i in range(6) for j in range(i + 1, 6)]
    expected = math.log(sum(terms) / len(terms))
    assert uniform_loss(torch.tensor(p), t).item() == pytest.approx(expected, rel=1e-10)
    with pytest.raises(ValueError, match="at least 2"):
        uniform_loss(torch.ones(1, 3), t)


def test_align_loss_by_hand():
    p_s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=torch.float64)
    p_t = torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.8, 0.6]], dtype=torch.float64)
    # squared distances: 2, 0, 0.08
    assert align_loss(p_s, p_t, 2.0).item() == pytest.approx((2 + 0 + 0.08) / 3)
    assert align_loss(p_s, p_t, 1.0).item() == pytest.approx((math.sqrt(2) + math.sqrt(0.08)) / 3)


# --- projectors and connectors -------------------------------------------------------------

def layers(head: nn.Module) -> list[tuple]:
    """Each module of a Sequential head as (kind, in, out, has bias / affine)."""
    described = []
    for m in head:
        if isinstance(m, nn.Linear):
            described.append(("Linear", m.in_features, m.out_features, m.bias is not None))
        elif isinstance(m, nn.BatchNorm1d):
            described.append(("BN", m.num_features, m.num_features, m.affine))
        else:
            described.append((type(m).__name__,))
    return described


# Reference models/projector.py (Embed), with d = 10 and out = 16.
REFERENCE_HEADS = {
    "mocov2": [("Linear", 10, 10, True), ("ReLU",), ("Linear", 10, 16, True), ("L2Normalize",)],
    "simclr": [("Linear", 10, 10, False), ("BN", 10, 10, True), ("ReLU",),
               ("Linear", 10, 16, False), ("BN", 16, 16, False), ("L2Normalize",)],
    "simclrv2": [("Linear", 10, 10, False), ("BN", 10, 10, True), ("ReLU",),
                 ("Linear", 10, 10, False), ("BN", 10, 10, True), ("ReLU",),
                 ("Linear", 10, 16, False), ("BN", 16, 16, False), ("L2Normalize",)],
    "linear": [("Linear", 10, 16, True), ("L2Normalize",)],
}


def test_projector_names_are_the_references():
    assert sorted(PROJECTORS.names()) == sorted(REFERENCE_HEADS)


@pytest.mark.parametrize("name", sorted(REFERENCE_HEADS))
def test_projectors_match_reference_layers_and_are_unit_norm_in_train_and_eval(name):
    torch.manual_seed(0)
    head = PROJECTORS.get(name)(10, 16)
    assert layers(head) == REFERENCE_HEADS[name]
    x = torch.randn(6, 10) * 3 + 1
    for mode in ("train", "eval"):
        head.train(mode == "train")
        out = head(x)
        assert out.shape == (6, 16)
        torch.testing.assert_close(out.norm(dim=1), torch.ones(6), msg=f"{name} in {mode}")


def test_simclr_heads_standardise_before_normalising():
    # The last BN (affine=False) gives every output unit zero batch mean before the L2 step, so
    # in train mode the pre-normalisation batch is centred; with a bias-free Linear and no BN it
    # would not be.
    torch.manual_seed(1)
    for name in ("simclr", "simclrv2"):
        head = PROJECTORS.get(name)(10, 16).train()
        before_norm = head[:-1](torch.randn(32, 10) + 5)
        torch.testing.assert_close(before_norm.mean(0), torch.zeros(16), atol=1e-5, rtol=0)
        assert isinstance(head[-1], L2Normalize) and not head[-2].affine


@pytest.mark.parametrize("name, expected", [
    ("mlp", [("Linear", 6, 10, True), ("ReLU",)]),
    ("mlp2", [("Linear", 6, 8, True), ("ReLU",), ("Linear", 8, 10, True), ("ReLU",)]),
])
def test_connectors_match_reference_and_end_in_relu(name, expected):
    torch.manual_seed(0)
    connector = CONNECTORS.get(name)(6, 10)
    assert layers(connector) == expected
    out = connector(torch.randn(64, 6) * 5)
    assert out.shape == (64, 10)
    assert (out >= 0).all() and (out == 0).any()  # the final ReLU clips the negatives


def test_connector_names_and_default_are_the_references():
    assert sorted(CONNECTORS.names()) == ["mlp", "mlp2"]
    assert DistillerSettings().srrl_connector == "mlp2"


# --- weights and misuse ---------------------------------------------------------------------

def test_the_declared_default_weights_are_the_references():
    # the reference's lambd1..4 (CE, feature term, KD, SRRL logit term) per distiller; a term the
    # distiller does not declare has no weight at all; dkd's and dist's from their own references
    table = {"none": {"ce": 1}, "kd": {"ce": 1, "kd": 1}, "srrl": {"ce": 1, "embed": 1, "kd": 0, "srrl": 1},
             "align_uniform": {"ce": 1, "embed": 1, "kd": 1}, "crd": {"ce": 1, "embed": 1, "kd": 1},
             "dkd": {"ce": 1, "tckd": 1, "nckd": 8}, "dist": {"ce": 1, "inter": 2, "intra": 2}}
    for name, expected in table.items():
        assert DISTILLERS.facts(name).terms == expected
        assert build(name).weights == expected
    assert needs_features("crd") and needs_features("srrl") and needs_features("align_uniform")
    assert not needs_teacher("none") and build("crd").needs_index


# --- the contract every registered distiller keeps ---------------------------------------------

def contract_batch(seed: int = 0):
    """A tiny student (features, then a head) and a teacher's outputs on 6 samples of 3 classes."""
    torch.manual_seed(seed)
    body, head = nn.Linear(5, 4), nn.Linear(4, 3)
    x, y = torch.randn(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    teacher = {"t_feat": torch.randn(6, 6), "t_logits": torch.randn(6, 3), "index": torch.arange(6)}
    return (body, head), x, y, teacher


def contract_build(name: str) -> Distiller:
    return build(name, proj_dim=8, crd_k=16)


@pytest.mark.parametrize("name", DISTILLERS.names())
def test_every_distiller_gives_a_finite_loss_whose_gradients_reach_the_student(name):
    (body, head), x, y, teacher = contract_batch()
    distiller = contract_build(name).train()
    features = body(x)
    total, parts = distiller(features, head(features), y, **teacher)
    assert torch.isfinite(total) and all(math.isfinite(v) for v in parts.values()), parts
    assert set(parts) <= set(distiller.terms) and parts
    total.backward()
    for layer in (body, head):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0, name


@pytest.mark.parametrize("name", DISTILLERS.names())
def test_every_distiller_state_survives_a_round_trip(name):
    (body, head), x, y, teacher = contract_batch()
    trained = contract_build(name).train()
    for _ in range(2):
        features = body(x)
        trained(features, head(features), y, **teacher)[0].backward()
    state = trained.state_dict()
    restored = contract_build(name)
    restored.load_state_dict(state)
    assert state.keys() == restored.state_dict().keys() and int(restored.steps_done) == 2
    for key, value in restored.state_dict().items():
        assert same_state(value, state[key]), key


def same_state(a, b) -> bool:
    """Equal tensors, or equal dicts of them (a module's extra state, e.g. CRD's generator)."""
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same_state(a[k], b[k]) for k in a)
    return torch.equal(a, b) if isinstance(a, torch.Tensor) else a == b


@pytest.mark.parametrize("name", DISTILLERS.names())
def test_every_distiller_is_described_once_next_to_its_code(name):
    """Its summary is its implementation's first docstring line, read without importing it; what it
    needs is its declaration's."""
    cls, declaration = DISTILLERS.get(name), DISTILLERS.facts(name)
    assert DISTILLERS.summary(name) == cls.__doc__.strip().splitlines()[0]
    assert cls.name == name and isinstance(declaration, DistillerDeclaration)
    distiller = build(name)
    assert distiller.needs_teacher == needs_teacher(name) == bool(declaration.reads)
    assert distiller.needs_features == needs_features(name)
    for term in declaration.terms:
        assert f"w_{term}" in {f.name for f in dataclasses.fields(DistillerSettings)}


def test_catalog_summaries_are_the_implementations_first_docstring_lines():
    for registry in (PROJECTORS, CONNECTORS):
        for name in registry.names():
            assert registry.summary(name) == registry.get(name).__doc__.strip().splitlines()[0], name


def test_weight_overrides():
    assert build("kd", w_kd=0.0, w_ce=0.5).weights == {"ce": 0.5, "kd": 0}
    assert build("srrl", w_kd=2.0).weights == {"ce": 1, "embed": 1, "kd": 2.0, "srrl": 1}
    assert build("crd", w_embed=0.8).weights["embed"] == 0.8
    with pytest.raises(DaptError, match="w_kd"):
        build("none", w_kd=1.0)
    with pytest.raises(DaptError, match="w_srrl"):
        build("align_uniform", w_srrl=1.0)
    with pytest.raises(DaptError, match="every loss weight is 0"):
        build("kd", w_ce=0.0, w_kd=0.0)
    with pytest.raises(DaptError, match=r"^w_ce=-1.0 must be >= 0$"):
        DistillerSettings(w_ce=-1.0)


def test_misuse_gives_clear_errors():
    settings = DistillerSettings()
    with pytest.raises(DaptError, match="train_labels"):
        build_distiller("crd", settings, s_dim=4, t_dim=6, num_classes=3)
    with pytest.raises(DaptError, match="teacher_head"):
        build_distiller("srrl", settings, s_dim=4, t_dim=6, num_classes=3)
    with pytest.raises(DaptError, match="teacher head maps"):
        build_distiller("srrl", settings, s_dim=4, t_dim=6, num_classes=3,
                        teacher_head=nn.Linear(5, 3))
    with pytest.raises(DaptError, match="t_dim"):
        build_distiller("align_uniform", settings, s_dim=4, t_dim=None, num_classes=3)
    with pytest.raises(UnknownNameError, match="align_uniform"):
        build_distiller("fitnet", settings, s_dim=4, t_dim=6, num_classes=3)
    with pytest.raises(UnknownNameError, match="mocov2"):
        DistillerSettings(projector="byol")
    s_feat, s_logits, y = torch.randn(4, 4), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(ValueError, match="t_logits"):
        build("kd")(s_feat, s_logits, y)
    with pytest.raises(ValueError, match="index"):
        build("crd", crd_k=2)(s_feat, s_logits, y, torch.randn(4, 6), torch.randn(4, 3))
    with pytest.raises(ValueError, match="share the classes"):
        build("kd")(s_feat, s_logits, y, t_logits=torch.randn(4, 5))


def test_total_is_weighted_sum_of_parts():
    rng = np.random.default_rng(2)
    zs, zt, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), np.array([0, 2, 1, 1])
    distiller = build("kd", w_ce=0.5, w_kd=2.0, kd_T=3.0).double()
    total, parts = distiller(torch.zeros(4, 4), torch.tensor(zs), torch.tensor(y),
                             t_logits=torch.tensor(zt))
    assert parts["ce"] == pytest.approx(0.5 * np_cross_entropy(zs, y))
    assert parts["kd"] == pytest.approx(2.0 * np_kd(zs, zt, 3.0))
    assert total.item() == pytest.approx(parts["ce"] + parts["kd"])
    total, parts = build("none").double()(torch.zeros(4, 4), torch.tensor(zs), torch.tensor(y))
    assert parts == {"ce": pytest.approx(np_cross_entropy(zs, y))}


# --- align_uniform and srrl by hand ---------------------------------------------------------

def test_align_uniform_embed_by_hand():
    distiller = build("align_uniform", s_dim=2, t_dim=3, projector="linear", proj_dim=2,
                      w_align=0.5, w_unif=2.0, w_kd=0.0).double()
    with torch.no_grad():
        distiller.student_projector[0].weight.copy_(torch.eye(2))
        distiller.student_projector[0].bias.zero_()
        distiller.teacher_projector[0].weight.copy_(torch.tensor([[1.0, 0, 0], [0, 1, 0]]))
        distiller.teacher_projector[0].bias.zero_()
    f_s = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0]])
    f_t = np.array([[1.0, 1.0, 5.0], [0.0, 3.0, 1.0], [-1.0, 0.0, 0.0]])
    p_s, p_t = unit(f_s), unit(f_t[:, :2])

    def brute_uniform(p):
        pairs = [(i, j) for i in range(3) for j in range(i + 1, 3)]
        return math.log(sum(math.exp(-2 * np.sum((p[i] - p[j]) ** 2)) for i, j in pairs) / 3)

    align = np.mean(np.sum((p_s - p_t) ** 2, axis=1))
    expected = 0.5 * align + 2.0 * (brute_uniform(p_s) + brute_uniform(p_t)) / 2
    _, parts = distiller(torch.tensor(f_s), torch.zeros(3, 3, dtype=torch.float64),
                         torch.tensor([0, 1, 2]), torch.tensor(f_t),
                         torch.zeros(3, 3, dtype=torch.float64))
    assert parts["embed"] == pytest.approx(expected, rel=1e-10)


def test_srrl_by_hand_with_known_connector_and_head():
    head = nn.Linear(3, 2).double()
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]]))
        head.bias.copy_(torch.tensor([0.1, -0.2]))
    distiller = build_distiller("srrl", DistillerSettings(srrl_connector="mlp", w_srrl=3.0,
                                                          distill_warmup=0.0),
                                s_dim=2, t_dim=3, num_classes=2, teacher_head=head).double()
    with torch.no_grad():
        distiller.connector[0].weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        distiller.connector[0].bias.copy_(torch.tensor([0.0, 0.0, 1.0]))
    f_s = [[1.0, 2.0], [0.0, -1.0]]
    f_t = [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0]]
    z_t = [[0.0, 1.0], [2.0, 0.0]]
    # connector(f_s) by hand: Linear gives [1, 2, 4] and [0, -1, 0]; the ReLU clips the -1.
    mapped = [[1.0, 2.0, 4.0], [0.0, 0.0, 0.0]]
    logits = [[1 - 4 + 0.1, 0.5 + 4 - 0.2], [0 + 0.1, 0 - 0.2]]  # head(mapped) by hand

    def mse(a, b):
        squares = [(x - v) ** 2 for ra, rb in zip(a, b) for x, v in zip(ra, rb)]
        return sum(squares) / len(squares)

    f64 = lambda rows: torch.tensor(rows, dtype=torch.float64)  # noqa: E731
    args = (f64(f_s), f64([[0, 0], [0, 0]]), torch.tensor([0, 1]), f64(f_t), f64(z_t))
    _, parts = distiller(*args)
    assert parts["embed"] == pytest.approx(mse(mapped, f_t))
    # by default in units of the teacher's mean squared logit on the batch: (0 + 1 + 4 + 0) / 4
    assert parts["srrl"] == pytest.approx(3.0 * mse(logits, z_t) / (5 / 4))
    distiller.settings = dataclasses.replace(distiller.settings, srrl_normalise=False)
    _, parts = distiller(*args)
    assert parts["srrl"] == pytest.approx(3.0 * mse(logits, z_t))  # the reference's plain MSE
    assert all(p is not head.weight and p is not head.bias for p in distiller.parameters())


def test_logit_regression_normalised_by_hand_and_free_of_the_teachers_logit_scale():
    h = np.array([[1.0, -1.0, 0.5], [0.0, 2.0, -3.0]])
    z = np.array([[4.0, -2.0, 0.0], [1.0, 3.0, -1.0]])
    plain = float(np.mean((h - z) ** 2))  # 35.25 / 6
    ratio = float(np.sum((h - z) ** 2) / np.sum(z ** 2))  # 35.25 / 31
    th, tz = torch.tensor(h), torch.tensor(z)
    assert logit_regression_loss(th, tz, normalise=False).item() == pytest.approx(plain, rel=1e-12)
    assert logit_regression_loss(th, tz).item() == pytest.approx(ratio, rel=1e-12)
    # a teacher with 5x the logits (its head scaled alike, so h too): same normalised loss,
    # 25x the plain one
    assert logit_regression_loss(5 * th, 5 * tz).item() == pytest.approx(ratio, rel=1e-12)
    assert logit_regression_loss(5 * th, 5 * tz, False).item() == pytest.approx(25 * plain)
    assert logit_regression_loss(torch.zeros(2, 3), tz.float()).item() == pytest.approx(1.0)
    # the denominator is the teacher's, a constant: the gradient is the plain one over sum z²/n
    th.requires_grad_(True)
    logit_regression_loss(th, tz).backward()
    assert th.grad.numpy() == pytest.approx(2 * (h - z) / np.sum(z ** 2), rel=1e-12)


# --- gradients ------------------------------------------------------------------------------

@pytest.mark.parametrize("name, projector", [
    ("kd", "mocov2"), ("align_uniform", "mocov2"), ("align_uniform", "simclrv2"),
    ("crd", "mocov2"), ("crd", "simclr"), ("srrl", "mocov2")])
def test_gradients_reach_student_and_trainable_heads_never_the_teacher(name, projector):
    torch.manual_seed(0)
    head = nn.Linear(6, 3)
    settings = DistillerSettings(crd_k=5, w_kd=1.0, projector=projector)
    distiller = build_distiller(name, settings, s_dim=4, t_dim=6,
                                num_classes=3, train_labels=torch.arange(12) % 3,
                                teacher_head=head, steps_per_epoch=10)
    s_feat = torch.randn(4, 4, requires_grad=True)
    s_logits = torch.randn(4, 3, requires_grad=True)
    t_feat = torch.randn(4, 6, requires_grad=True)
    t_logits = torch.randn(4, 3, requires_grad=True)
    total, _ = distiller(s_feat, s_logits, torch.tensor([0, 1, 2, 0]), t_feat, t_logits,
                         index=torch.tensor([0, 1, 2, 3]))
    total.backward()
    assert t_feat.grad is None and t_logits.grad is None
    assert head.weight.grad is None and head.bias.grad is None
    assert s_logits.grad.abs().sum() > 0
    if name != "kd":
        assert s_feat.grad.abs().sum() > 0
    params = dict(distiller.named_parameters())
    assert bool(params) == (name != "kd")
    for pname, param in params.items():
        assert param.grad is not None and param.grad.abs().sum() > 0, pname


# --- crd ------------------------------------------------------------------------------------

def test_crd_negatives_come_from_other_classes_and_are_deterministic():
    labels = torch.randint(0, 5, (50,), generator=torch.Generator().manual_seed(3))
    index = torch.tensor([0, 7, 13, 21, 49, 7])

    def draw(seed):
        return NegativeSampler(labels).sample(index, 20, torch.Generator().manual_seed(seed))

    negatives = draw(1)
    assert negatives.shape == (6, 20) and negatives.dtype == torch.long
    assert (labels[negatives] != labels[index].unsqueeze(1)).all()
    assert torch.equal(negatives, draw(1)) and not torch.equal(negatives, draw(2))


def test_negative_sampler_reaches_every_other_class_sample_and_rejects_one_class():
    sampler = NegativeSampler(torch.tensor([1, 0, 1, 2, 1, 0]))
    drawn = sampler.sample(torch.tensor([2]), 500, torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {1, 3, 5}
    drawn = sampler.sample(torch.tensor([3]), 500, torch.Generator().manual_seed(0))
    assert set(drawn.flatten().tolist()) == {0, 1, 2, 4, 5}
    with pytest.raises(DaptError, match="two classes"):
        NegativeSampler(torch.zeros(4, dtype=torch.long))


def nce_by_hand(bank: np.ndarray, v: np.ndarray, rows: list[list[int]], z: float, n: int) -> float:
    """ContrastLoss on scores exp(<bank row, v>/T)/Z written out term by term."""
    k_noise, eps, total = (len(rows[0]) - 1) / n, 1e-7, 0.0
    for b, row in enumerate(rows):
        probs = [math.exp(float(bank[r] @ v[b]) / 0.07) / z for r in row]
        total += math.log(probs[0] / (probs[0] + k_noise + eps))
        total += sum(math.log(k_noise / (p + k_noise + eps)) for p in probs[1:])
    return -total / len(rows)


def test_crd_loss_normalisation_and_bank_update_on_tiny_bank():
    # Labels 0,0,0,1: the negatives of samples 0 and 1 can only be sample 3. Momentum 0.25,
    # not the default 0.5, so that swapping the old and new weights would show.
    settings = DistillerSettings(projector="linear", proj_dim=3, crd_k=2, w_kd=0.0,
                                 crd_momentum=0.25)
    assert DistillerSettings().crd_momentum == 0.5
    distiller = build_distiller("crd", settings, s_dim=3,
                                t_dim=3, num_classes=2, train_labels=torch.tensor([0, 0, 0, 1]))
    distiller = distiller.double()
    crd = distiller.criterion
    bank_s = unit([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]])
    bank_t = unit([[0, 1, 1], [1, 0, 1], [1, 1, 1], [0, 0, 1]])
    with torch.no_grad():
        for embed in (crd.embed_student, crd.embed_teacher):
            embed[0].weight.copy_(torch.eye(3))
            embed[0].bias.zero_()
        crd.memory.bank_student.copy_(torch.tensor(bank_s))
        crd.memory.bank_teacher.copy_(torch.tensor(bank_t))
    f_s = np.array([[2.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
    f_t = np.array([[1.0, 0.0, 0.0], [1.0, 2.0, 2.0]])
    v_s, v_t = unit(f_s), unit(f_t)
    rows = [[0, 3, 3], [1, 3, 3]]

    def z_by_hand(bank, v):
        scores = [math.exp(float(bank[r] @ v[b]) / 0.07) for b, row in enumerate(rows) for r in row]
        return sum(scores) / len(scores) * 4

    z_s, z_t = z_by_hand(bank_t, v_s), z_by_hand(bank_s, v_t)
    expected = nce_by_hand(bank_t, v_s, rows, z_s, 4) + nce_by_hand(bank_s, v_t, rows, z_t, 4)
    def call():
        no_logits = torch.zeros(2, 2, dtype=torch.float64)
        return distiller(torch.tensor(f_s), no_logits, torch.tensor([0, 0]), torch.tensor(f_t),
                         no_logits, torch.tensor([0, 1]))

    _, parts = call()
    assert parts["embed"] == pytest.approx(expected, rel=1e-9)
    assert crd.memory.z_student.item() == pytest.approx(z_s, rel=1e-12)
    assert crd.memory.z_teacher.item() == pytest.approx(z_t, rel=1e-12)

    moved_s, moved_t = bank_s.copy(), bank_t.copy()
    moved_s[:2] = unit(0.25 * bank_s[:2] + 0.75 * v_s)
    moved_t[:2] = unit(0.25 * bank_t[:2] + 0.75 * v_t)
    np.testing.assert_allclose(crd.memory.bank_student.numpy(), moved_s, rtol=1e-12)
    np.testing.assert_allclose(crd.memory.bank_teacher.numpy(), moved_t, rtol=1e-12)

    # Second batch: Z stays fixed, the scores use the moved banks.
    _, parts = call()
    assert crd.memory.z_student.item() == pytest.approx(z_s, rel=1e-12)
    expected = nce_by_hand(moved_t, v_s, rows, z_s, 4) + nce_by_hand(moved_s, v_t, rows, z_t, 4)
    assert parts["embed"] == pytest.approx(expected, rel=1e-9)


def test_crd_state_dict_restores_banks_z_and_negative_stream():
    labels = torch.arange(40) % 4
    def make(seed):
        return build_distiller("crd", DistillerSettings(crd_k=8, proj_dim=5), s_dim=4, t_dim=6,
                               num_classes=4, train_labels=labels, seed=seed)

    batch = (torch.randn(4, 4), torch.randn(4, 4), torch.tensor([0, 1, 2, 3]), torch.randn(4, 6),
             torch.randn(4, 4), torch.tensor([0, 9, 18, 27]))
    first = make(0)
    first(*batch)
    restored = make(1)
    restored.load_state_dict(first.state_dict())
    assert first(*batch)[0].item() == pytest.approx(restored(*batch)[0].item(), rel=1e-6)
    assert torch.equal(first.criterion.memory.bank_teacher, restored.criterion.memory.bank_teacher)


@pytest.mark.parametrize("projector, widths", [
    ("mocov2", {"student": [(4, 4), (4, 7)], "teacher": [(6, 6), (6, 7)]}),
    ("linear", {"student": [(4, 7)], "teacher": [(6, 7)]}),
])
def test_crd_embeds_with_the_chosen_projector_and_banks_have_proj_dim(projector, widths):
    crd = build("crd", projector=projector, proj_dim=7).criterion
    for side in ("student", "teacher"):
        embed = getattr(crd, f"embed_{side}")
        linears = [(m.in_features, m.out_features) for m in embed if isinstance(m, nn.Linear)]
        assert linears == widths[side]
        assert isinstance(embed[-1], L2Normalize)
        assert getattr(crd.memory, f"bank_{side}").shape == (12, 7)


# --- distillation warm-up -------------------------------------------------------------------

def test_distill_warmup_ramps_the_teacher_terms_linearly_per_step_and_never_ce():
    """With distill_warmup=W epochs of S steps, step s (from 0) weighs the teacher terms by
    min(1, (s+1)/(W·S)); CE keeps its weight; evaluation-mode calls do not count as steps."""
    rng = np.random.default_rng(3)
    zs, zt, y = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), np.array([0, 2, 1, 1])
    args = (torch.zeros(4, 4), torch.tensor(zs), torch.tensor(y))
    settings = DistillerSettings(distill_warmup=0.5, w_kd=2.0)
    distiller = build_distiller("kd", settings, s_dim=4, t_dim=6, num_classes=3,
                                steps_per_epoch=8).double().train()
    ce, kd = np_cross_entropy(zs, y), 2.0 * np_kd(zs, zt, 4.0)
    for step, ramp in enumerate([0.25, 0.5, 0.75, 1.0, 1.0]):  # W·S = 0.5·8 = 4 steps
        _, parts = distiller(*args, t_logits=torch.tensor(zt))
        assert parts == {"ce": pytest.approx(ce), "kd": pytest.approx(ramp * kd)}, step
    assert int(distiller.steps_done) == 5
    # The step count is state: a distiller restored from a checkpoint continues the ramp.
    restored = build_distiller("kd", settings, s_dim=4, t_dim=6, num_classes=3,
                               steps_per_epoch=8).double()
    restored.load_state_dict({"steps_done": torch.tensor(2)})
    restored.eval()
    _, parts = restored(*args, t_logits=torch.tensor(zt))
    assert parts["kd"] == pytest.approx(0.75 * kd) and int(restored.steps_done) == 2
    # Without warm-up, the full weight from the first step.
    _, parts = build("kd", w_kd=2.0).double()(*args, t_logits=torch.tensor(zt))
    assert parts["kd"] == pytest.approx(kd)


def test_distill_warmup_null_is_the_distillers_default_one_epoch_for_srrl_and_dkd_only():
    head = nn.Linear(6, 3)
    for name in DISTILLERS.names():
        distiller = build_distiller(name, DistillerSettings(), s_dim=4, t_dim=6, num_classes=3,
                                    train_labels=torch.arange(12) % 3, teacher_head=head,
                                    steps_per_epoch=10)
        assert distiller.warmup_steps == (10 if name in ("srrl", "dkd") else 0), name
    srrl = build_distiller("srrl", DistillerSettings(distill_warmup=0.0), s_dim=4, t_dim=6,
                           num_classes=3, teacher_head=head, steps_per_epoch=10)
    assert srrl.warmup_steps == 0 and srrl.ramp() == 1.0


def test_distill_warmup_needs_the_steps_per_epoch_and_is_non_negative():
    with pytest.raises(DaptError, match="steps_per_epoch"):
        build_distiller("kd", DistillerSettings(distill_warmup=1.0), s_dim=4, t_dim=6,
                        num_classes=3)
    with pytest.raises(DaptError, match="srrl.*1 epochs.*steps_per_epoch"):  # its default warm-up
        build_distiller("srrl", DistillerSettings(), s_dim=4, t_dim=6, num_classes=3,
                        teacher_head=nn.Linear(6, 3))
    with pytest.raises(DaptError, match="distill_warmup=-1.0 must be >= 0"):
        DistillerSettings(distill_warmup=-1.0)


# --- settings -------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, message", [
    ("kd_T", -1, "kd_T=-1 must be > 0"),
    ("crd_momentum", 1.0, "crd_momentum=1.0 must be in [0, 1)"),
    ("proj_dim", 0, "proj_dim=0 must be >= 1"),
    ("crd_T", float("nan"), "crd_T=nan must be > 0"),
    ("crd_k", "many", "crd_k='many' must be >= 1"),
])
def test_out_of_range_settings_give_one_clear_message(key, value, message):
    with pytest.raises(DaptError) as raised:
        DistillerSettings(**{key: value})
    assert str(raised.value) == message
    # A settings object changed after construction is checked again when a distiller is built.
    settings = DistillerSettings()
    setattr(settings, key, value)
    with pytest.raises(DaptError, match=f"^{key}="):
        build_distiller("kd", settings, s_dim=4, t_dim=6, num_classes=3)


def test_check_ranges_passes_defaults_and_null_weights_and_sees_inherited_fields():
    @dataclasses.dataclass
    class RunConfig(DistillerSettings):  # what a run's config looks like
        epochs: int = 3

    check_ranges(DistillerSettings(w_ce=None, w_kd=0.0, crd_momentum=0.0))
    config = RunConfig()
    config.kd_T = 0.0
    with pytest.raises(DaptError, match=r"^kd_T=0.0 must be > 0$"):
        check_ranges(config)


def test_every_setting_says_which_distiller_uses_it_and_names_are_registries():
    names = set(DISTILLERS.names()) | {"every distiller"}
    for f in dataclasses.fields(DistillerSettings):
        assert any(name in help_of(f) for name in names), f.name
    by_name = {f.name: f for f in dataclasses.fields(DistillerSettings)}
    assert choices_of(by_name["projector"]) == PROJECTORS.names()
    assert choices_of(by_name["srrl_connector"]) == CONNECTORS.names()
    assert "crd_dim" not in by_name


# --- the contract is open: a new distiller with a new kind of loss term -----------------------

class ToyL1(Distiller):
    """Toy: CE + mean absolute difference of the student's and the teacher's logits

    ``L = w_ce·CE(z_s, y) + w_l1·mean|z_s − z_t|``; a loss term no library distiller has.
    """

    name = "toy_l1"

    def losses(self, s_feat, s_logits, y, t_feat, t_logits, index):
        return {"ce": nn.functional.cross_entropy(s_logits, y), "l1": (s_logits - t_logits).abs().mean()}


@pytest.fixture
def toy_registered():
    """The toy registered in this process only for the test: the settings were built before it, so it has
    none of its own (the test below declares one in a fresh process, where they are)."""
    declaration = DistillerDeclaration(terms={"ce": 1.0, "l1": 0.5}, term_help={}, reads=("logits",))
    DISTILLERS.register("toy_l1", facts=declaration)(ToyL1)
    yield
    DISTILLERS.unregister("toy_l1")


def test_a_toy_distiller_with_a_new_loss_term_needs_no_edit_of_the_base(toy_registered):
    """One class and one registration: the base weighs its own term by its own default weight,
    and it trains."""
    assert needs_teacher("toy_l1") and DISTILLERS.summary("toy_l1").startswith("Toy: CE")
    rng = np.random.default_rng(5)
    zt, y = rng.normal(size=(4, 3)), np.array([0, 2, 1, 1])
    student = nn.Linear(4, 3).double()
    x = torch.tensor(rng.normal(size=(4, 4)))
    distiller = build("toy_l1", w_ce=0.25).double()
    assert distiller.weights == {"ce": 0.25, "l1": 0.5}
    total, parts = distiller(x, student(x), torch.tensor(y), t_logits=torch.tensor(zt))
    zs = student(x).detach().numpy()
    expected = {"ce": 0.25 * np_cross_entropy(zs, y), "l1": 0.5 * float(np.mean(np.abs(zs - zt)))}
    assert parts == {term: pytest.approx(value, rel=1e-12) for term, value in expected.items()}
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-12)
    before = student.weight.detach().clone()
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    optimizer.zero_grad()
    total.backward()
    optimizer.step()
    assert not torch.equal(student.weight, before)
    # the library's distillers refuse a weight for the new term, as for any term they lack
    settings = DistillerSettings()
    settings.w_l1 = 1.0
    with pytest.raises(DaptError, match="distiller 'kd' has no l1 loss but w_l1=1.0"):
        build_distiller("kd", settings, s_dim=4, t_dim=6, num_classes=3)


def test_the_toy_distiller_is_gone_after_its_test():
    assert "toy_l1" not in DISTILLERS.names()


TOY_MODULE = '''
"""A distiller outside dapt: one module, and one declaration where the catalog's would stand."""
import torch.nn.functional as F

from dapt.distillers.base import Distiller


class ToyL1(Distiller):
    """Toy 2024: CE + toy_scale times the mean absolute difference of student and teacher logits

    ``L = w_ce·CE(z_s, y) + w_l1·toy_scale·mean|z_s − z_t|``.
    """

    name = "toy_l1"

    def losses(self, s_feat, s_logits, y, t_feat, t_logits, index):
        return {"ce": F.cross_entropy(s_logits, y),
                "l1": self.settings.toy_scale * (s_logits - t_logits).abs().mean()}
'''

TOY_SESSION = '''
import json
from dapt.distillers import Setting, Term, declare_distiller

declare_distiller("toy_l1", "toy_distiller:ToyL1", reads=("logits",),
                  terms={"ce": 1.0, "l1": Term(0.5, "the mean absolute difference of the logits")},
                  knobs=(Setting("toy_scale", 2.0, "factor on the l1 term"),))

import torch
from torch import nn
from dapt.cli import main
from dapt.distillers.base import build_distiller
from dapt.pipeline import config
from dapt.ui import explore

main(["list"])
main(["params", "distill"])
cfg = config.validate(config.DistillConfig, {"distiller": "toy_l1", "teacher": "t", "w_l1": 0.25, "toy_scale": 3.0})
torch.manual_seed(0)
student, x, y = nn.Linear(4, 3), torch.randn(8, 4), torch.arange(8) % 3
distiller = build_distiller("toy_l1", cfg, s_dim=4, t_dim=None, num_classes=3)
before = student.weight.detach().clone()
optimizer = torch.optim.SGD(student.parameters(), lr=0.5)
total, parts = distiller(x, student(x), y, t_logits=torch.randn(8, 3))
total.backward()
optimizer.step()
print("RESULT", json.dumps({"knobs": explore.knob_fields("distill"), "weights": distiller.weights, "parts": parts,
                            "trained": not torch.equal(before, student.weight)}))
'''


@pytest.mark.slow  # a subprocess imports torch and trains a step
def test_a_new_distiller_is_one_module_and_one_declaration(tmp_path):
    """A fresh process with a toy distiller (a module outside dapt, one declaration): `dapt list`, `dapt
    params distill`, validation, the explorer's knobs and a training step all know it, its own loss term and
    its knob."""
    (tmp_path / "toy_distiller.py").write_text(textwrap.dedent(TOY_MODULE), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    result = subprocess.run([sys.executable, "-c", TOY_SESSION], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    listed = next(line for line in out.splitlines() if line.startswith("  toy_l1 "))
    assert "Toy 2024: CE + toy_scale times" in listed
    params = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ")}
    assert "toy_l1: weight of the mean absolute difference of the logits" in params["w_l1"]
    assert "toy_l1: factor on the l1 term" in params["toy_scale"]
    assert "toy_l1" in params["distiller"]  # among its choices
    report = json.loads(out.split("RESULT ", 1)[1])
    assert "w_l1" in report["knobs"] and "w_kd" in report["knobs"]
    assert report["weights"] == {"ce": 1.0, "l1": 0.25} and report["trained"]
    assert set(report["parts"]) == {"ce", "l1"} and all(math.isfinite(v) for v in report["parts"].values())


def test_a_declaration_after_the_settings_are_built_is_refused():
    from dapt.distillers import declare_distiller

    DistillerSettings()  # built
    with pytest.raises(DaptError, match="before importing dapt.distillers.settings"):
        declare_distiller("late", "dapt.distillers.kd:KD", terms={"ce": 1.0})
    assert "late" not in DISTILLERS.names()


# --- dkd and dist: logit distillers of their own terms ----------------------------------------

def np_dkd(zs: np.ndarray, zt: np.ndarray, y: np.ndarray, T: float) -> tuple[float, float]:
    """TCKD and NCKD from the paper's definitions: b = (p_y, Σ_{j≠y} p_j) and p̂_j = p_j / Σ_{k≠y} p_k
    over the non-target classes j ≠ y, each KL(teacher ‖ student)·T² averaged over the batch."""
    tckd, nckd = [], []
    for s_row, t_row, target in zip(softmax_rows(zs / T), softmax_rows(zt / T), y):
        others = [j for j in range(len(s_row)) if j != target]
        b_s = np.array([s_row[target], sum(s_row[j] for j in others)])
        b_t = np.array([t_row[target], sum(t_row[j] for j in others)])
        tckd.append(np.sum(b_t * np.log(b_t / b_s)))
        hat_s = np.array([s_row[j] for j in others]) / b_s[1]
        hat_t = np.array([t_row[j] for j in others]) / b_t[1]
        nckd.append(np.sum(hat_t * np.log(hat_t / hat_s)))
    return T * T * float(np.mean(tckd)), T * T * float(np.mean(nckd))


def softmax_rows(z: np.ndarray) -> np.ndarray:
    return np.array([np.exp(row - row.max()) / np.exp(row - row.max()).sum() for row in z])


def np_pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson's correlation of two vectors, with the reference's 1e-8 added to the denominator."""
    da, db = a - a.mean(), b - b.mean()
    return float(np.dot(da, db) / (math.sqrt(np.dot(da, da)) * math.sqrt(np.dot(db, db)) + 1e-8))


def np_dist(zs: np.ndarray, zt: np.ndarray, T: float) -> tuple[float, float]:
    """DIST's inter (per sample, over classes) and intra (per class, over the batch) relation losses."""
    ps, pt = softmax_rows(zs / T), softmax_rows(zt / T)
    inter = 1 - np.mean([np_pearson(ps[i], pt[i]) for i in range(ps.shape[0])])
    intra = 1 - np.mean([np_pearson(ps[:, c], pt[:, c]) for c in range(ps.shape[1])])
    return T * T * float(inter), T * T * float(intra)


def logit_batch(seed: int, b=6, c=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(b, c)) * 3, rng.normal(size=(b, c)) * 3, rng.integers(0, c, size=b)


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dkd_matches_the_papers_tckd_and_nckd(T):
    zs, zt, y = logit_batch(10)
    tckd, nckd = np_dkd(zs, zt, y, T)
    distiller = build("dkd", num_classes=5, kd_T=T, distill_warmup=0.0, w_tckd=0.5).double()
    total, parts = distiller(torch.zeros(6, 4), torch.tensor(zs), torch.tensor(y), t_logits=torch.tensor(zt))
    expected = {"ce": np_cross_entropy(zs, y), "tckd": 0.5 * tckd, "nckd": 8.0 * nckd}
    assert parts == {term: pytest.approx(value, rel=1e-10) for term, value in expected.items()}
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-10)


def test_dkd_decomposes_hinton_kd_and_masks_the_target_class():
    zs, zt, y = logit_batch(11, b=1)
    T = 2.0
    tckd, nckd = np_dkd(zs, zt, y, T)
    # Zhao et al. eq. (1)-(5): KD = TCKD + (1 − p_t,y)·NCKD, sample by sample
    p_target = softmax_rows(zt / T)[0, y[0]]
    assert tckd + (1 - p_target) * nckd == pytest.approx(np_kd(zs, zt, T), rel=1e-10)
    distiller = build("dkd", num_classes=5, kd_T=T, distill_warmup=0.0).double()

    def parts_of(s, t):
        return distiller(torch.zeros(1, 4), torch.tensor(s), torch.tensor(y), t_logits=torch.tensor(t))[1]

    parts = parts_of(zs, zt)
    # NCKD never reads the target logits; TCKD does
    moved_s, moved_t = zs.copy(), zt.copy()
    moved_s[0, y[0]] += 5.0
    moved_t[0, y[0]] -= 3.0
    moved = parts_of(moved_s, moved_t)
    assert moved["nckd"] == pytest.approx(parts["nckd"], rel=1e-12)
    assert moved["tckd"] != pytest.approx(parts["tckd"], rel=1e-3)
    # a student whose target probability is 1 in float32: both terms stay finite, and right
    zs_sure = zs.copy()
    zs_sure[0, y[0]] = 200.0
    _, parts = build("dkd", num_classes=5, kd_T=1.0, distill_warmup=0.0)(
        torch.zeros(1, 4), torch.tensor(zs_sure, dtype=torch.float32), torch.tensor(y),
        t_logits=torch.tensor(zt, dtype=torch.float32))
    tckd, nckd = np_dkd(zs_sure, zt, y, 1.0)
    assert parts["tckd"] == pytest.approx(tckd, rel=1e-5)
    assert parts["nckd"] == pytest.approx(8.0 * nckd, rel=1e-5)


def test_dkd_warms_its_terms_up_over_one_epoch_by_default_never_ce():
    zs, zt, y = logit_batch(12)
    tckd, nckd = np_dkd(zs, zt, y, 4.0)
    distiller = build("dkd", num_classes=5).double().train()  # 10 steps per epoch
    for step in range(12):
        _, parts = distiller(torch.zeros(6, 4), torch.tensor(zs), torch.tensor(y), t_logits=torch.tensor(zt))
        ramp = min(1.0, (step + 1) / 10)
        assert parts == {"ce": pytest.approx(np_cross_entropy(zs, y)), "tckd": pytest.approx(ramp * tckd),
                         "nckd": pytest.approx(ramp * 8.0 * nckd)}, step


@pytest.mark.parametrize("T", [1.0, 4.0])
def test_dist_matches_pearson_correlations_of_rows_and_columns(T):
    zs, zt, y = logit_batch(13)
    inter, intra = np_dist(zs, zt, T)
    distiller = build("dist", num_classes=5, kd_T=T, w_intra=0.5).double()
    total, parts = distiller(torch.zeros(6, 4), torch.tensor(zs), torch.tensor(y), t_logits=torch.tensor(zt))
    expected = {"ce": np_cross_entropy(zs, y), "inter": 2.0 * inter, "intra": 0.5 * intra}
    assert parts == {term: pytest.approx(value, rel=1e-10) for term, value in expected.items()}
    assert total.item() == pytest.approx(sum(expected.values()), rel=1e-10)
    # the teacher's own logits are perfectly correlated: 0, up to the 1e-8 in the denominator (at T = 4
    # the softened rows vary little, so it shows)
    same = build("dist", num_classes=5, kd_T=T).double()(
        torch.zeros(6, 4), torch.tensor(zt), torch.tensor(y), t_logits=torch.tensor(zt))[1]
    assert same["inter"] == pytest.approx(0.0, abs=1e-4) and same["intra"] == pytest.approx(0.0, abs=1e-4)


def test_dist_on_a_batch_of_one_counts_each_class_as_uncorrelated():
    # one sample: every class column has zero variance; the 1e-8 makes its correlation 0, not NaN
    zs, zt, y = logit_batch(14, b=1)
    inter, intra = np_dist(zs, zt, 4.0)
    assert intra == pytest.approx(16.0)
    _, parts = build("dist", num_classes=5).double()(torch.zeros(1, 4), torch.tensor(zs), torch.tensor(y),
                                                    t_logits=torch.tensor(zt))
    assert parts["inter"] == pytest.approx(2.0 * inter, rel=1e-10)
    assert parts["intra"] == pytest.approx(2.0 * 16.0, rel=1e-10)


def test_dkd_and_dist_weights_refuse_other_terms_and_leave_out_zero_weight_terms():
    assert build("dkd", w_nckd=0.5).weights == {"ce": 1.0, "tckd": 1.0, "nckd": 0.5}
    assert build("dist", w_inter=1.0, w_intra=1.0).weights == {"ce": 1.0, "inter": 1.0, "intra": 1.0}
    with pytest.raises(DaptError, match="distiller 'dkd' has no kd loss but w_kd=1.0"):
        build("dkd", w_kd=1.0)
    with pytest.raises(DaptError, match="distiller 'kd' has no tckd loss"):
        build("kd", w_tckd=1.0)
    with pytest.raises(DaptError, match="distiller 'dkd' has no inter loss"):
        build("dkd", w_inter=1.0)
    zs, zt, y = logit_batch(15, c=3)
    args = (torch.zeros(6, 4), torch.tensor(zs), torch.tensor(y))
    assert set(build("dkd", w_tckd=0.0).double()(*args, t_logits=torch.tensor(zt))[1]) == {"ce", "nckd"}
    assert set(build("dist", w_ce=0.0, w_intra=0.0).double()(*args, t_logits=torch.tensor(zt))[1]) == {"inter"}


@pytest.mark.parametrize("name", ["dkd", "dist"])
def test_dkd_and_dist_train_the_student_only_and_need_no_features(name):
    distiller = build(name, distill_warmup=0.0)
    assert not list(distiller.parameters())
    assert needs_teacher(name) and not needs_features(name) and not distiller.needs_index
    torch.manual_seed(0)
    s_logits = torch.randn(4, 3, requires_grad=True)
    t_logits = torch.randn(4, 3, requires_grad=True)
    total, _ = distiller(torch.zeros(4, 4), s_logits, torch.tensor([0, 1, 2, 0]), t_logits=t_logits)
    total.backward()
    assert t_logits.grad is None and s_logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="t_logits"):
        distiller(torch.zeros(4, 4), s_logits, torch.tensor([0, 1, 2, 0]))


def test_dapt_list_shows_dkd_and_dist(capsys):
    from dapt.cli import main

    assert main(["list"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")}
    for name in ("dkd", "dist"):
        assert DISTILLERS.summary(name) in lines[name]


# dkd and dist through papermill: tests/test_holdout.py's study distils with both
