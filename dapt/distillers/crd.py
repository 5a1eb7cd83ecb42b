"""Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020).

Follows the reference code (``kd_losses/crd.py``, from RepDistiller: ``ContrastMemory`` +
``ContrastLoss``, mode ``exact``): one memory bank of unit embeddings per side, one row per
training sample; each sample is scored against its own row (the positive) and K rows of samples
from other classes (the negatives). Student and teacher features are embedded by the same kind
of projector as align_uniform's (``projector``, ``proj_dim``), as in the reference.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dapt.core import distributed
from dapt.core.errors import DaptError
from dapt.distillers.kd import KD
from dapt.distillers.projectors import build_projector


class NegativeSampler:
    """Draws CRD negatives: for each sample, indices of training samples of *other* classes.

    Indices are sorted by class once, so the samples of class c fill one contiguous block;
    drawing uniformly among the N − n_c positions outside that block needs no per-class pools.
    """

    def __init__(self, labels: Tensor):
        labels = torch.as_tensor(labels).detach().cpu().long()
        if labels.dim() != 1 or labels.numel() == 0 or int(labels.min()) < 0:
            raise DaptError("CRD needs the training labels as a non-empty 1-D tensor of class "
                            "indices ≥ 0; pass train_labels in dataset order")
        counts = torch.bincount(labels)
        if int(counts.max()) == labels.numel():
            raise DaptError("CRD needs at least two classes in the training labels to draw "
                            "negatives; use another distiller or a dataset with several classes")
        self.labels = labels
        self.by_class = torch.argsort(labels, stable=True)
        self.class_count = counts
        self.class_start = torch.cumsum(counts, 0) - counts

    def sample(self, index: Tensor, k: int, generator: torch.Generator | None = None) -> Tensor:
        """[B, k] indices drawn with replacement among samples whose class differs from index's."""
        index = torch.as_tensor(index).detach().cpu().long()
        n = self.labels.numel()
        if index.numel() and (int(index.min()) < 0 or int(index.max()) >= n):
            raise ValueError(f"CRD sample indices must lie in [0, {n}); "
                             f"got {int(index.min())}..{int(index.max())}")
        classes = self.labels[index]
        count = self.class_count[classes].unsqueeze(1)
        start = self.class_start[classes].unsqueeze(1)
        n_other = n - count
        # float64 draws keep floor(u·n_other) exact for any realistic dataset size.
        u = torch.rand(index.numel(), k, generator=generator, dtype=torch.float64)
        position = torch.minimum((u * n_other).long(), n_other - 1)
        position = position + torch.where(position >= start, count, torch.zeros_like(count))
        return self.by_class[position]


def nce_loss(probs: Tensor, n_data: int, eps: float = 1e-7) -> Tensor:
    """CRD's NCE loss (Tian et al. 2020, ``ContrastLoss``) on normalised scores [B, 1+K].

    Column 0 is the positive, the rest the K negatives; with noise probability Pn = 1/N:
    ``−mean_b[ log(P_pos/(P_pos + K·Pn + eps)) + Σ_neg log(K·Pn/(P_neg + K·Pn + eps)) ]``.
    """
    k_noise = (probs.shape[1] - 1) / n_data
    positive, negatives = probs[:, 0], probs[:, 1:]
    log_d1 = torch.log(positive / (positive + k_noise + eps))
    log_d0 = torch.log(k_noise / (negatives + k_noise + eps))
    return -(log_d1.sum() + log_d0.sum()) / probs.shape[0]


class ContrastMemory(nn.Module):
    """The two memory banks and their normalisation constants (reference ``ContrastMemory``).

    Buffers, not parameters: banks move by momentum, not by the optimizer, yet they follow
    ``.to(device)`` and are saved with the state dict, so a resumed run continues the same banks.
    """

    def __init__(self, n_samples: int, dim: int, *, temperature: float, momentum: float,
                 generator: torch.Generator):
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        stdv = 1.0 / math.sqrt(dim / 3)
        for side in ("student", "teacher"):
            bank = torch.rand(n_samples, dim, generator=generator).mul_(2 * stdv).sub_(stdv)
            self.register_buffer(f"bank_{side}", bank)
            # Z < 0 means "not estimated yet": the first batch sets it, then it stays fixed.
            self.register_buffer(f"z_{side}", torch.tensor(-1.0))

    def forward(self, v_s: Tensor, v_t: Tensor, rows: Tensor) -> tuple[Tensor, Tensor]:
        """Normalised scores [B, 1+K] of each side's embedding against the other side's bank.

        ``rows[:, 0]`` are the samples' own indices (positives), the rest their negatives.
        Returns (student embedding vs teacher bank, teacher embedding vs student bank), then
        moves the positives' bank rows towards this batch's embeddings. Under DDP (``dapt.core.distributed``)
        each rank holds a slice of the global batch; every rank moves the rows of the whole global
        batch (gathered), so the banks stay identical on all ranks and equal to one process's.
        """
        p_s = self._scores(self.bank_teacher, v_s, rows, self.z_student)
        p_t = self._scores(self.bank_student, v_t, rows, self.z_teacher)
        # Out of place: autograd keeps the pre-update banks, which the scores' backward needs.
        with torch.no_grad():
            positives = distributed.gather_rows(rows[:, 0].contiguous())
            self.bank_student = self._moved(self.bank_student, distributed.gather_rows(v_s.detach()), positives)
            self.bank_teacher = self._moved(self.bank_teacher, distributed.gather_rows(v_t.detach()), positives)
        return p_s, p_t

    def _scores(self, bank: Tensor, v: Tensor, rows: Tensor, z: Tensor) -> Tensor:
        # One [B, N] matmul then a gather: at these dataset sizes far cheaper in time and memory
        # than gathering the B·(1+K) bank rows first (≈270 MB per side at B=128, K=4096).
        scores = torch.exp((v @ bank.T).gather(1, rows) / self.temperature)
        if bool(z < 0):  # the global batch's mean, the same on every rank
            z.fill_(distributed.mean_across(scores.detach().mean()) * bank.shape[0])
        return scores / z

    def _moved(self, bank: Tensor, v: Tensor, positives: Tensor) -> Tensor:
        """``bank`` with the positives' rows set to normalise(m·old + (1−m)·v)."""
        moved = bank[positives] * self.momentum + v.detach().to(bank.dtype) * (1 - self.momentum)
        return bank.index_copy(0, positives, F.normalize(moved, dim=1))


class CRDCriterion(nn.Module):
    """CRD's embedding loss: NCE of the student against the teacher bank plus the reverse.

    Owns the trainable embeddings (one unit-norm projector per side), the memory banks and the
    negative sampler with its own seeded generator, whose state is part of the state dict.
    """

    def __init__(self, embed_student: nn.Module, embed_teacher: nn.Module, train_labels: Tensor,
                 *, dim: int, k: int, temperature: float, momentum: float, seed: int):
        super().__init__()
        self.k = k
        self.sampler = NegativeSampler(train_labels)
        self.generator = torch.Generator().manual_seed(seed)
        self.embed_student = embed_student
        self.embed_teacher = embed_teacher
        self.memory = ContrastMemory(self.sampler.labels.numel(), dim, temperature=temperature,
                                     momentum=momentum, generator=self.generator)

    def forward(self, s_feat: Tensor, t_feat: Tensor, index: Tensor) -> Tensor:
        """Loss for a batch of student/teacher features of training samples ``index``.

        Under DDP ``index`` is this rank's slice of the global batch: every rank draws the negatives of
        the whole global batch from its copy of the generator (the copies stay in step) and keeps its
        slice, so the draws are those of one process on the global batch.
        """
        index = torch.as_tensor(index).long()
        everyone = distributed.gather_rows(index)
        negatives = distributed.shard(self.sampler.sample(everyone, self.k, self.generator))
        device = self.memory.bank_student.device
        rows = torch.cat([torch.as_tensor(index).long().view(-1, 1).cpu(), negatives], 1).to(device)
        p_s, p_t = self.memory(self.embed_student(s_feat), self.embed_teacher(t_feat), rows)
        n_data = self.memory.bank_student.shape[0]
        return nce_loss(p_s, n_data) + nce_loss(p_t, n_data)

    def get_extra_state(self) -> dict:
        return {"generator": self.generator.get_state()}

    def set_extra_state(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class CRD(KD):
    """Tian et al. 2020: CE + KD + contrastive NCE against memory banks of other-class samples

    With unit embeddings ``v_s = proj_s(f_s)``, ``v_t = proj_t(f_t)`` (``projector``,
    ``proj_dim``), banks ``M_s``, ``M_t`` and scores ``P(i, j) = exp(v·M[j]/τ)/Z``:
    ``L_embed = NCE(v_s vs M_t) + NCE(v_t vs M_s)`` over the own row and ``crd_k`` negatives,
    and ``L = w_ce·CE + w_embed·L_embed + w_kd·L_kd``. Y. Tian, D. Krishnan, P. Isola,
    "Contrastive Representation Distillation", ICLR 2020.
    """

    name = "crd"

    def __init__(self, settings: Any, *, s_dim: int, t_dim: int | None,
                 num_classes: int, train_labels: Tensor | None, seed: int, **rest):
        super().__init__(settings, s_dim=s_dim, t_dim=t_dim, num_classes=num_classes,
                         train_labels=train_labels, seed=seed, **rest)
        if train_labels is None:
            raise DaptError("distiller 'crd' needs the training labels, one per sample in "
                            "dataset order; pass train_labels")
        if train_labels.numel() and int(train_labels.max()) >= num_classes:
            raise DaptError(f"train_labels hold class {int(train_labels.max())} but num_classes="
                            f"{num_classes}; pass the labels of this dataset")
        dim = settings.proj_dim
        self.criterion = CRDCriterion(
            build_projector(settings.projector, s_dim, dim),
            build_projector(settings.projector, t_dim, dim), train_labels, dim=dim,
            k=settings.crd_k, temperature=settings.crd_T, momentum=settings.crd_momentum,
            seed=seed)

    def losses(self, s_feat: Tensor, s_logits: Tensor, y: Tensor, t_feat: Tensor,
               t_logits: Tensor, index: Tensor) -> dict[str, Tensor]:
        losses = super().losses(s_feat, s_logits, y, t_feat, t_logits, index)
        if self.weights["embed"]:
            losses["embed"] = self.criterion(s_feat, t_feat, index)
        return losses
