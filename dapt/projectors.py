"""Small trainable heads that sit on penultimate features: projectors and SRRL connectors.

Projectors end in an L2 normalisation because the losses that use them (alignment/uniformity,
CRD's NCE) compare points on the unit sphere. Connectors do not: SRRL regresses raw teacher
features and feeds the result to the teacher's classifier.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

HeadFactory = Callable[[int, int], nn.Module]

PROJECTORS: Registry[HeadFactory] = Registry("projector")
CONNECTORS: Registry[HeadFactory] = Registry("srrl connector")


class L2Normalized(nn.Module):
    """Runs ``body`` and puts each output row on the unit sphere."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.body(x), dim=1)


@PROJECTORS.register("linear", "Linear(d, out), L2-normalised")
def linear_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, out) → L2-normalise."""
    return L2Normalized(nn.Linear(in_dim, out_dim))


@PROJECTORS.register("mocov2", "Linear(d, d) → ReLU → Linear(d, out), L2-normalised (MoCo v2)")
def mocov2_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, d) → ReLU → Linear(d, out) → L2-normalise (Chen et al. 2020, MoCo v2)."""
    return L2Normalized(nn.Sequential(
        nn.Linear(in_dim, in_dim), nn.ReLU(inplace=True), nn.Linear(in_dim, out_dim)))


@PROJECTORS.register("simclr", "Linear(d, d) → BN → ReLU → Linear(d, out), L2-normalised (SimCLR)")
def simclr_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """Linear(d, d) → BN → ReLU → Linear(d, out) → L2-normalise (Chen et al. 2020, SimCLR)."""
    return L2Normalized(nn.Sequential(
        nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
        nn.Linear(in_dim, out_dim)))


@PROJECTORS.register("simclrv2",
                     "(Linear(d, d) → BN → ReLU) ×2 → Linear(d, out), L2-normalised (SimCLR v2)")
def simclrv2_projector(in_dim: int, out_dim: int = 128) -> nn.Module:
    """(Linear(d, d) → BN → ReLU) ×2 → Linear(d, out) → L2-normalise (Chen et al. 2020, v2)."""
    return L2Normalized(nn.Sequential(
        nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
        nn.Linear(in_dim, in_dim), nn.BatchNorm1d(in_dim), nn.ReLU(inplace=True),
        nn.Linear(in_dim, out_dim)))


def build_projector(name: str, in_dim: int, out_dim: int = 128) -> nn.Module:
    """Projector ``name`` from ``in_dim`` features to unit vectors of size ``out_dim``."""
    return PROJECTORS.get(name)(in_dim, out_dim)


@CONNECTORS.register("mlp", "Linear(s, (s+t)//2) → ReLU → Linear((s+t)//2, t)")
def mlp_connector(s_dim: int, t_dim: int) -> nn.Module:
    """Linear(s, (s+t)//2) → ReLU → Linear((s+t)//2, t): student width to teacher width."""
    hidden = (s_dim + t_dim) // 2
    return nn.Sequential(nn.Linear(s_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, t_dim))


@CONNECTORS.register("linear", "Linear(s, t)")
def linear_connector(s_dim: int, t_dim: int) -> nn.Module:
    """Linear(s, t): student width to teacher width."""
    return nn.Linear(s_dim, t_dim)
