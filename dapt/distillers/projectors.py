"""Small trainable heads on penultimate features: projectors and SRRL connectors.

The ``catalog`` names them (``PROJECTORS``, ``CONNECTORS``). Projectors (reference
``models/projector.py``, ``Embed``) map a feature vector to a point on the unit sphere, where align_uniform's alignment/uniformity and CRD's NCE compare student and
teacher; student and teacher each get one, of the same kind and output width. Connectors
(reference ``distill.py``) map student features to the teacher's width for SRRL, which regresses
raw teacher features and feeds the result to the teacher's classifier, so they do not normalise.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dapt.distillers.catalog import PROJECTORS


class L2Normalize(nn.Module):
    """Puts each row on the unit sphere: ``x / max(‖x‖₂, ε)`` (reference ``_Normalize``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1)


def _block(in_dim: int, out_dim: int) -> list[nn.Module]:
    """Linear without bias → BatchNorm → ReLU: a SimCLR hidden layer (the BN makes bias moot)."""
    return [nn.Linear(in_dim, out_dim, bias=False), nn.BatchNorm1d(out_dim), nn.ReLU()]


def mocov2_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, d) → ReLU → Linear(d, out) → L2 (MoCo v2)

    Chen, Fan, Girshick, He 2020, "Improved Baselines with Momentum Contrastive Learning".
    """
    return nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim),
                         L2Normalize())


def simclr_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, d) → BN → ReLU → Linear(d, out) → BN(out, no affine) → L2 (SimCLR)

    Chen, Kornblith, Norouzi, Hinton 2020, "A Simple Framework for Contrastive Learning of
    Visual Representations", as the reference builds it. Linear layers have no bias; the last
    BN only standardises.
    """
    return nn.Sequential(*_block(in_dim, in_dim), nn.Linear(in_dim, out_dim, bias=False),
                         nn.BatchNorm1d(out_dim, affine=False), L2Normalize())


def simclrv2_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """(Linear(d, d) → BN → ReLU) ×2 → Linear(d, out) → BN(out, no affine) → L2 (SimCLR v2)

    Chen, Kornblith, Swersky, Norouzi, Hinton 2020, "Big Self-Supervised Models are Strong
    Semi-Supervised Learners". Linear layers have no bias; the last BN only standardises.
    """
    return nn.Sequential(*_block(in_dim, in_dim), *_block(in_dim, in_dim),
                         nn.Linear(in_dim, out_dim, bias=False),
                         nn.BatchNorm1d(out_dim, affine=False), L2Normalize())


def linear_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, out) → L2 (RepDistiller's CRD embedding)

    Tian, Krishnan, Isola 2020, "Contrastive Representation Distillation" (``Embed``).
    """
    return nn.Sequential(nn.Linear(in_dim, out_dim), L2Normalize())


def build_projector(name: str, in_dim: int, out_dim: int = 128) -> nn.Module:
    """Projector ``name`` from ``in_dim`` features to unit vectors of size ``out_dim``."""
    return PROJECTORS.get(name)(in_dim, out_dim)


def mlp_connector(s_dim: int, t_dim: int) -> nn.Module:
    """Linear(s, t) → ReLU

    Student width to teacher width for SRRL (Yang et al. 2021), as reference ``distill.py``.
    """
    return nn.Sequential(nn.Linear(s_dim, t_dim), nn.ReLU(inplace=True))


def mlp2_connector(s_dim: int, t_dim: int) -> nn.Module:
    """Linear(s, (s+t)//2) → ReLU → Linear((s+t)//2, t) → ReLU

    Student width to teacher width for SRRL (Yang et al. 2021), as reference ``distill.py``
    (its default connector).
    """
    hidden = (s_dim + t_dim) // 2
    return nn.Sequential(nn.Linear(s_dim, hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, t_dim), nn.ReLU(inplace=True))
