"""The torch-free catalogs of the distillers, projectors and SRRL connectors.

Each entry names the ``"module:attribute"`` of its implementation, imported with torch on first
use, and states what validation needs without it (``DistillerFacts``). Registration order is the
order ``dapt list`` shows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dapt.core.registry import Registry


@dataclass(frozen=True)
class DistillerFacts:
    """What the pipeline knows of a distiller before any torch is loaded."""

    needs_teacher: bool  # learns from a teacher run's outputs (``teacher`` must be set)
    needs_features: bool = False  # reads the teacher's penultimate features, not only its logits: the
    # teacher cache of a study stores features only when one of its students needs them


DISTILLERS: Registry[Any] = Registry("distiller")
DISTILLERS.declare("none", "dapt.distillers.none:LabelsOnly",
                   "No teacher: cross-entropy on the labels only (the from-scratch baseline)",
                   DistillerFacts(needs_teacher=False))
DISTILLERS.declare("kd", "dapt.distillers.kd:KD",
                   "Hinton et al. 2015: CE + T²·KL to the teacher's softened logits",
                   DistillerFacts(needs_teacher=True))
DISTILLERS.declare("align_uniform", "dapt.distillers.align_uniform:AlignUniform",
                   "Farhat & Chen 2024: CE + KD + alignment/uniformity of projected student and "
                   "teacher features", DistillerFacts(needs_teacher=True, needs_features=True))
DISTILLERS.declare("crd", "dapt.distillers.crd:CRD",
                   "Tian et al. 2020: CE + KD + contrastive NCE against memory banks of other-class "
                   "samples", DistillerFacts(needs_teacher=True, needs_features=True))
DISTILLERS.declare("srrl", "dapt.distillers.srrl:SRRL",
                   "Yang et al. 2021: CE + feature MSE through a connector + the teacher head's logit "
                   "MSE on it", DistillerFacts(needs_teacher=True, needs_features=True))
DISTILLERS.declare("dkd", "dapt.distillers.dkd:DKD",
                   "Zhao et al. 2022: CE + KD decoupled into its target (TCKD) and non-target (NCKD) "
                   "parts, weighed apart", DistillerFacts(needs_teacher=True))
DISTILLERS.declare("dist", "dapt.distillers.dist:DIST",
                   "Huang et al. 2022: CE + 1 − Pearson correlation of the softened outputs, per sample "
                   "and per class", DistillerFacts(needs_teacher=True))

PROJECTORS: Registry[Any] = Registry("projector")
for _name, _summary in [
    ("mocov2", "Linear(d, d) → ReLU → Linear(d, out) → L2 (MoCo v2)"),
    ("simclr", "Linear(d, d) → BN → ReLU → Linear(d, out) → BN(out, no affine) → L2 (SimCLR)"),
    ("simclrv2", "(Linear(d, d) → BN → ReLU) ×2 → Linear(d, out) → BN(out, no affine) → L2 (SimCLR v2)"),
    ("linear", "Linear(d, out) → L2 (RepDistiller's CRD embedding)"),
]:
    PROJECTORS.declare(_name, f"dapt.distillers.projectors:{_name}_projector", _summary)

CONNECTORS: Registry[Any] = Registry("srrl connector")
for _name, _summary in [
    ("mlp", "Linear(s, t) → ReLU"),
    ("mlp2", "Linear(s, (s+t)//2) → ReLU → Linear((s+t)//2, t) → ReLU"),
]:
    CONNECTORS.declare(_name, f"dapt.distillers.projectors:{_name}_connector", _summary)
del _name, _summary


def needs_teacher(name: str) -> bool:
    """Whether distiller ``name`` learns from a teacher (every one but ``none``)."""
    return DISTILLERS.facts(name).needs_teacher


def needs_features(name: str) -> bool:
    """Whether distiller ``name`` reads the teacher's features (crd, srrl, align_uniform), not only its logits."""
    return DISTILLERS.facts(name).needs_features
