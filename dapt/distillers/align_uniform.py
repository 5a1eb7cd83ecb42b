"""Alignment and uniformity of projected features (Farhat & Chen 2024, after Wang & Isola 2020)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from dapt.core.fields import NON_NEGATIVE, POSITIVE, param
from dapt.distillers.base import DISTILLERS, Distiller
from dapt.distillers.losses import align_loss, uniform_loss
from dapt.distillers.projectors import build_projector


@dataclass
class AlignUniformSettings:
    """The knobs of the align_uniform feature term (reference ``kd_losses/align_uniform.py``)."""

    align_alpha: float = param(2.0, "align_uniform: exponent α of the alignment distance",
                               rule=POSITIVE)
    unif_t: float = param(2.0, "align_uniform: temperature t of the uniformity term",
                          rule=POSITIVE)
    w_align: float = param(1.0, "align_uniform: weight of alignment inside the feature term",
                           rule=NON_NEGATIVE)
    w_unif: float = param(1.0, "align_uniform: weight of uniformity inside the feature term",
                          rule=NON_NEGATIVE)


@DISTILLERS.register("align_uniform")
class AlignUniform(Distiller):
    """Farhat & Chen 2024: CE + KD + alignment/uniformity of projected student and teacher features

    With ``p_s = proj_s(f_s)`` and ``p_t = proj_t(f_t)`` on the unit sphere (``projector``,
    ``proj_dim``; both heads trained, the teacher frozen):
    ``L_embed = w_align·L_align(p_s, p_t; α) + w_unif·(L_unif(p_s; t) + L_unif(p_t; t))/2``
    and ``L = w_ce·CE + w_embed·L_embed + w_kd·L_kd``. S. Farhat, D. Chen, "On the Surprising
    Efficacy of Distillation as an Alternative to Pre-Training Small Models", 2024; the terms
    from T. Wang, P. Isola, ICML 2020.
    """

    name = "align_uniform"
    default_weights = {"ce": 1.0, "embed": 1.0, "kd": 1.0, "srrl": 0.0}
    needs_teacher = needs_features = True
    terms = ("ce", "embed", "kd")

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, **rest)
        self.student_projector = build_projector(settings.projector, s_dim, settings.proj_dim)
        self.teacher_projector = build_projector(settings.projector, t_dim, settings.proj_dim)

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor, t_logits: Tensor,
                      index: Tensor | None) -> dict[str, Tensor]:
        if not self.weights["embed"]:
            return {}
        s = self.settings
        p_s, p_t = self.student_projector(s_feat), self.teacher_projector(t_feat)
        uniformity = (uniform_loss(p_s, s.unif_t) + uniform_loss(p_t, s.unif_t)) / 2
        return {"embed": s.w_align * align_loss(p_s, p_t, s.align_alpha) + s.w_unif * uniformity}
