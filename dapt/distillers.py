"""Distillers: the student's training loss, from plain cross-entropy to learning from a teacher.

``L = w_ce·CE(z_s, y) + w_embed·L_embed + w_kd·L_kd + w_srrl·L_srrl`` (DESIGN.md, "Algorithms").
A distiller is an ``nn.Module`` whose parameters are exactly the extra trainable pieces
(projectors, connectors, CRD embeddings) the optimizer must train besides the student. The
teacher is frozen: its features and logits are detached here, whether they come live or from
a cache, so no gradient can ever reach it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from .crd import CRDCriterion
from .errors import DaptError
from .losses import align_loss, kd_loss, uniform_loss
# PROJECTORS is re-exported: config validates projector names through this module.
from .projectors import CONNECTORS, PROJECTORS, build_projector
from .registry import Registry

TERMS = ("ce", "embed", "kd", "srrl")
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "none": {"ce": 1.0, "embed": 0.0, "kd": 0.0, "srrl": 0.0},
    "kd": {"ce": 1.0, "embed": 0.0, "kd": 1.0, "srrl": 0.0},
    "srrl": {"ce": 1.0, "embed": 1.0, "kd": 0.0, "srrl": 1.0},
    "align_uniform": {"ce": 1.0, "embed": 1.0, "kd": 1.0, "srrl": 0.0},
    "crd": {"ce": 1.0, "embed": 1.0, "kd": 1.0, "srrl": 0.0},
}


def _require(ok: bool, key: str, value: object, rule: str) -> None:
    if not ok:
        raise DaptError(f"distiller setting {key}={value!r} is invalid: it must be {rule}")


@dataclass
class DistillerSettings:
    """Every distiller knob a params file may set; a ``None`` weight = the distiller's default."""

    w_ce: float | None = None
    w_embed: float | None = None
    w_kd: float | None = None
    w_srrl: float | None = None
    kd_T: float = 4.0
    projector: str = "mocov2"
    proj_dim: int = 128
    align_alpha: float = 2.0
    unif_t: float = 2.0
    w_align: float = 1.0
    w_unif: float = 1.0
    crd_dim: int = 128
    crd_k: int = 4096
    crd_T: float = 0.07
    crd_momentum: float = 0.5
    srrl_connector: str = "mlp"

    def __post_init__(self) -> None:
        for term in TERMS:
            w = getattr(self, f"w_{term}")
            _require(w is None or (math.isfinite(w) and w >= 0), f"w_{term}", w, "≥ 0 or null")
        for key in ("kd_T", "unif_t", "align_alpha", "crd_T"):
            _require(getattr(self, key) > 0, key, getattr(self, key), "> 0")
        for key in ("w_align", "w_unif"):
            _require(getattr(self, key) >= 0, key, getattr(self, key), "≥ 0")
        for key in ("proj_dim", "crd_dim", "crd_k"):
            _require(getattr(self, key) >= 1, key, getattr(self, key), "a positive integer")
        _require(0 <= self.crd_momentum < 1, "crd_momentum", self.crd_momentum, "in [0, 1)")
        PROJECTORS.get(self.projector)
        CONNECTORS.get(self.srrl_connector)


DISTILLERS: Registry[type["Distiller"]] = Registry("distiller")


class Distiller(nn.Module):
    """Plain cross-entropy; the base of every distiller (subclasses add teacher terms)."""

    name = "none"
    needs_teacher = False
    needs_features = False
    needs_index = False
    terms: tuple[str, ...] = ("ce",)

    def __init__(self, settings: DistillerSettings, *, s_dim: int, t_dim: int | None,
                 num_classes: int, train_labels: Tensor | None, teacher_head: nn.Linear | None,
                 seed: int):
        super().__init__()
        self.settings = settings
        self.weights = self._resolve_weights(settings)
        if self.needs_features and t_dim is None:
            raise DaptError(f"distiller {self.name!r} needs the teacher's feature width; "
                            "pass t_dim (the teacher model's feat_dim)")

    def _resolve_weights(self, settings: DistillerSettings) -> dict[str, float]:
        weights = dict(DEFAULT_WEIGHTS[self.name])
        for term in TERMS:
            override = getattr(settings, f"w_{term}")
            if override is not None:
                weights[term] = float(override)
            if weights[term] and term not in self.terms:
                raise DaptError(f"distiller {self.name!r} has no {term} loss but w_{term}="
                                f"{weights[term]}; set w_{term} to 0 or null")
        if not any(weights.values()):
            raise DaptError(f"distiller {self.name!r}: every loss weight is 0; "
                            "give at least one of w_ce, w_embed, w_kd, w_srrl a positive value")
        return weights

    def forward(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor | None = None,
                t_logits: Tensor | None = None, index: Tensor | None = None
                ) -> tuple[Tensor, dict[str, float]]:
        """Total loss of a batch and the float value of each weighted part (``{"ce": .., ...}``)."""
        self._check_inputs(s_logits, t_feat, t_logits, index)
        # Cached teacher outputs may be fp16; the teacher never trains, hence detach.
        if t_feat is not None:
            t_feat = t_feat.detach().to(s_feat.dtype)
        if t_logits is not None:
            t_logits = t_logits.detach().to(s_logits.dtype)
        losses: dict[str, Tensor] = {}
        if self.weights["ce"]:
            losses["ce"] = F.cross_entropy(s_logits, y)
        if self.weights["kd"]:
            losses["kd"] = kd_loss(s_logits, t_logits, self.settings.kd_T)
        losses.update(self.teacher_terms(s_feat, t_feat, t_logits, index))
        weighted = {term: self.weights[term] * loss for term, loss in losses.items()}
        total = sum(weighted.values())
        return total, {term: float(value.detach()) for term, value in weighted.items()}

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor | None, t_logits: Tensor | None,
                      index: Tensor | None) -> dict[str, Tensor]:
        """Unweighted ``embed``/``srrl`` losses of the terms with a non-zero weight."""
        return {}

    def _check_inputs(self, s_logits: Tensor, t_feat: Tensor | None, t_logits: Tensor | None,
                      index: Tensor | None) -> None:
        wanted = (("t_logits", self.needs_teacher, t_logits),
                  ("t_feat", self.needs_features, t_feat), ("index", self.needs_index, index))
        missing = [name for name, needed, given in wanted if needed and given is None]
        if missing:
            raise ValueError(f"distiller {self.name!r} needs {', '.join(missing)}; pass the "
                             "teacher outputs (and, for crd, the samples' dataset indices)")
        if t_logits is not None and t_logits.shape != s_logits.shape:
            raise ValueError(f"teacher logits {tuple(t_logits.shape)} and student logits "
                             f"{tuple(s_logits.shape)} differ; teacher and student must share "
                             "the classes")


DISTILLERS.register("none", "no teacher: cross-entropy only (the from-scratch baseline)")(Distiller)


@DISTILLERS.register("kd", "Hinton et al. 2015: CE + KL to the teacher's softened logits (T=4)")
class KD(Distiller):
    name = "kd"
    needs_teacher = True
    terms = ("ce", "kd")


@DISTILLERS.register("align_uniform", "Farhat & Chen 2024: CE + KD + alignment/uniformity "
                     "of projected student and teacher features")
class AlignUniform(Distiller):
    name = "align_uniform"
    needs_teacher = needs_features = True
    terms = ("ce", "embed", "kd")

    def __init__(self, settings: DistillerSettings, *, s_dim: int, t_dim: int | None, **rest):
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


@DISTILLERS.register("crd", "Tian et al. 2020: CE + KD + contrastive NCE against memory banks "
                     "(K=4096 other-class negatives)")
class CRD(Distiller):
    name = "crd"
    needs_teacher = needs_features = needs_index = True
    terms = ("ce", "embed", "kd")

    def __init__(self, settings: DistillerSettings, *, s_dim: int, t_dim: int | None,
                 num_classes: int, train_labels: Tensor | None, seed: int, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                         train_labels=train_labels, seed=seed, **rest)
        if train_labels is None:
            raise DaptError("distiller 'crd' needs the training labels, one per sample in "
                            "dataset order; pass train_labels")
        if train_labels.numel() and int(train_labels.max()) >= num_classes:
            raise DaptError(f"train_labels hold class {int(train_labels.max())} but num_classes="
                            f"{num_classes}; pass the labels of this dataset")
        self.criterion = CRDCriterion(s_dim, t_dim, train_labels, dim=settings.crd_dim,
                                      k=settings.crd_k, temperature=settings.crd_T,
                                      momentum=settings.crd_momentum, seed=seed)

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor, t_logits: Tensor,
                      index: Tensor | None) -> dict[str, Tensor]:
        return {"embed": self.criterion(s_feat, t_feat, index)} if self.weights["embed"] else {}


@DISTILLERS.register("srrl", "Yang et al. 2021: CE + feature MSE through a connector + MSE of "
                     "the frozen teacher head's logits on it")
class SRRL(Distiller):
    name = "srrl"
    needs_teacher = needs_features = True
    terms = ("ce", "embed", "kd", "srrl")

    def __init__(self, settings: DistillerSettings, *, s_dim: int, t_dim: int | None,
                 num_classes: int, teacher_head: nn.Linear | None, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                         teacher_head=teacher_head, **rest)
        if not isinstance(teacher_head, nn.Linear):
            raise DaptError("distiller 'srrl' needs the teacher's classifier; pass "
                            "teacher_head=<the teacher's nn.Linear head>")
        if (teacher_head.in_features, teacher_head.out_features) != (t_dim, num_classes):
            raise DaptError(f"teacher head maps {teacher_head.in_features}→"
                            f"{teacher_head.out_features} but t_dim={t_dim}, num_classes="
                            f"{num_classes}; pass the head of the same teacher")
        self.connector = CONNECTORS.get(settings.srrl_connector)(s_dim, t_dim)
        # A frozen copy as buffers: out of parameters() by construction, yet moved by .to()
        # and saved; gradient still flows through F.linear to the connector and the student.
        self.register_buffer("head_weight", teacher_head.weight.detach().clone())
        bias = teacher_head.bias
        self.register_buffer("head_bias", None if bias is None else bias.detach().clone())

    def teacher_terms(self, s_feat: Tensor, t_feat: Tensor, t_logits: Tensor,
                      index: Tensor | None) -> dict[str, Tensor]:
        mapped = self.connector(s_feat)
        losses = {}
        if self.weights["embed"]:
            losses["embed"] = F.mse_loss(mapped, t_feat)
        if self.weights["srrl"]:
            head_logits = F.linear(mapped, self.head_weight, self.head_bias)
            losses["srrl"] = F.mse_loss(head_logits, t_logits)
        return losses


def build_distiller(name: str, settings: DistillerSettings, *, s_dim: int, t_dim: int | None,
                    num_classes: int, train_labels: Tensor | None = None,
                    teacher_head: nn.Linear | None = None, seed: int = 0) -> Distiller:
    """Distiller ``name`` for a student of feature width ``s_dim`` and a teacher of ``t_dim``.

    ``train_labels`` (crd: one label per training sample, in the order of the indices passed to
    ``forward``) and ``teacher_head`` (srrl) are required where the distiller uses them;
    ``seed`` seeds what the distiller draws itself (CRD's bank init and negatives).
    """
    return DISTILLERS.get(name)(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                                train_labels=train_labels, teacher_head=teacher_head, seed=seed)
