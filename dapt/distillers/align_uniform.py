"""Alignment and uniformity of projected features (Farhat & Chen 2024, after Wang & Isola 2020)."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from dapt.distillers.kd import KD
from dapt.distillers.losses import align_loss, uniform_loss
from dapt.distillers.projectors import build_projector


class AlignUniform(KD):
    """Farhat & Chen 2024: CE + KD + alignment/uniformity of projected student and teacher features

    With ``p_s = proj_s(f_s)`` and ``p_t = proj_t(f_t)`` on the unit sphere (``projector``,
    ``proj_dim``; both heads trained, the teacher frozen):
    ``L_embed = w_align·L_align(p_s, p_t; α) + w_unif·(L_unif(p_s; t) + L_unif(p_t; t))/2``
    and ``L = w_ce·CE + w_embed·L_embed + w_kd·L_kd``. S. Farhat, D. Chen, "On the Surprising
    Efficacy of Distillation as an Alternative to Pre-Training Small Models", 2024; the terms
    from T. Wang, P. Isola, ICML 2020.
    """

    name = "align_uniform"

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, **rest)
        self.student_projector = build_projector(settings.projector, s_dim, settings.proj_dim)
        self.teacher_projector = build_projector(settings.projector, t_dim, settings.proj_dim)

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor,
               t_logits: Tensor, index: Tensor | None) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if self.weights["embed"]:
            s = self.settings
            p_s, p_t = self.student_projector(s_feat), self.teacher_projector(t_feat)
            uniformity = (uniform_loss(p_s, s.unif_t) + uniform_loss(p_t, s.unif_t)) / 2
            losses["embed"] = s.w_align * align_loss(p_s, p_t, s.align_alpha) + s.w_unif * uniformity
        return losses
