"""The distill stage: a random-init student learns from a frozen, trained teacher.

The teacher comes from a finished teacher run (checked against the dataset and classes); it
sees the student's augmented view resized to the size it was trained at. Every epoch the
student is evaluated on the test set together with its agreement with the teacher; at the end
the full agreement metrics (split agreement, KL, ECE of both, CKA) go into ``metrics.json``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Optional

import torch

from . import agreement as A
from . import data as D
from .checkpoint import load_model, save_model
from .distillers import DistillerSettings, build_distiller
from .errors import DaptError
from .models import Net, create_model
from .optim import build_optimizer, build_scheduler
from .runs import RunRecord, read_json, rel
from .teacher_cache import TeacherTargets, file_digest, make_views, outputs_on_test_set
from .tracking import Tracker
from .train import Loop, eval_index, fit, model_meta, predict, prepare


def load_teacher(folder: str | Path, ds: D.ImageSet) -> tuple[Net, dict]:
    """The trained teacher of run ``folder``, in eval mode, checked against the student's dataset."""
    folder = Path(folder)
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        raise DaptError(f"teacher {folder.as_posix()}: no metrics.json; run its teacher stage first")
    if metrics.get("status") != "done":
        raise DaptError(f"teacher run {folder.as_posix()} is {metrics.get('status')!r}, not done; "
                        f"finish it first (dapt run on its study)")
    model, meta = load_model(folder / "model.pt")
    if meta.get("dataset") != ds.name or meta.get("num_classes") != ds.num_classes:
        raise DaptError(f"teacher {folder.as_posix()} was trained on {meta.get('dataset')} "
                        f"({meta.get('num_classes')} classes) but this run uses {ds.name} ({ds.num_classes} classes)")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, meta


@dataclass
class DistillResult:
    student: Net
    student_logits: torch.Tensor
    student_features: torch.Tensor
    teacher_logits: Optional[torch.Tensor]
    teacher_features: Optional[torch.Tensor]


def _settings(cfg) -> DistillerSettings:
    return DistillerSettings(**{f.name: getattr(cfg, f.name) for f in fields(DistillerSettings)})


def distill(cfg, ds: D.ImageSet, record: RunRecord, teacher: Optional[Net] = None,
            teacher_meta: Optional[dict] = None) -> DistillResult:
    """Train ``cfg.student`` from random init with ``cfg.distiller``; the teacher may be None only for ``none``."""
    torch.manual_seed(cfg.seed)
    student = create_model(cfg.student, ds.num_classes, pretrained=False, image_size=cfg.image_size)
    if cfg.channels_last:
        student = student.to(memory_format=torch.channels_last)
        teacher = teacher.to(memory_format=torch.channels_last) if teacher is not None else None
    distiller = build_distiller(
        cfg.distiller, _settings(cfg), s_dim=student.feat_dim, t_dim=teacher.feat_dim if teacher else None,
        num_classes=ds.num_classes, train_labels=ds.train_y,
        teacher_head=teacher.head if teacher is not None else None, seed=cfg.seed)
    if distiller.needs_teacher and teacher is None:
        raise DaptError(f"distiller {cfg.distiller!r} needs a teacher: set teacher: <teacher run>")
    t_size = int(teacher_meta["image_size"]) if teacher_meta else cfg.image_size

    n = len(ds.train_y)
    views = make_views(n, cfg.image_size, cfg.cache_views or cfg.epochs, cfg.seed, cfg.augment)
    targets = t_logits = t_feats = None
    if teacher is not None:
        cache_dir = Path(cfg.teacher) / "cache" if cfg.teacher_cache == "on" else None
        key = (file_digest(Path(cfg.teacher) / "model.pt"), ds.name, cfg.image_size) if cache_dir else ()
        t_logits, t_feats = outputs_on_test_set(teacher, ds.test_x, t_size, cache_dir=cache_dir, key_parts=key,
                                                channels_last=cfg.channels_last)
        if distiller.needs_teacher:
            # the views (drawn from the seed) are part of the key, so the seed itself need not be
            targets = TeacherTargets(teacher, t_size, ds.train_x, views, cache_dir=cache_dir,
                                     key_parts=key, channels_last=cfg.channels_last)
        teacher_acc = A.accuracy(t_logits, ds.test_y)
        record.update(teacher_test_acc=teacher_acc, teacher_run=rel(cfg.teacher),
                      teacher_model=teacher_meta["model"], teacher_init=teacher_meta.get("init"))

    groups = [{"params": list(student.parameters()) + list(distiller.parameters()), "lr": cfg.lr}]
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay)
    scheduler = build_scheduler(cfg.scheduler, optimizer, max(1, n // cfg.batch_size), cfg.epochs,
                                cfg.step_size, cfg.step_gamma)

    def set_train_mode() -> None:
        student.train()
        distiller.train()

    def step(index: torch.Tensor, epoch: int, generator: torch.Generator):
        view = epoch % len(views)
        x = D.apply_augment(ds.train_x[index], views[view].select(index))
        s_feat, s_logits = student.forward_features(prepare(x, channels_last=cfg.channels_last))
        t_z, t_f = targets.get(view, index) if targets is not None else (None, None)
        loss, parts = distiller(s_feat, s_logits, ds.train_y[index], t_feat=t_f, t_logits=t_z, index=index)
        return loss, s_logits, parts

    watch = eval_index(ds.test_y, cfg.eval_subset)

    def evaluate() -> dict:
        s_logits, _ = predict(student, ds.test_x[watch], channels_last=cfg.channels_last)
        entry = {"test_acc": A.accuracy(s_logits, ds.test_y[watch])}
        if t_logits is not None:
            entry.update(agreement=A.top1_agreement(t_logits[watch], s_logits),
                         kl=A.predictive_kl(t_logits[watch], s_logits),
                         teacher_test_acc=A.accuracy(t_logits[watch], ds.test_y[watch]))
        return entry

    meta = model_meta(cfg, ds, student, stage="distill", distiller=cfg.distiller)
    tracker = Tracker(cfg.wandb, record.folder, record.folder.name, record.metrics["params"])
    with record.recording():
        fit(cfg, record, Loop(step, evaluate, set_train_mode, {"student": student, "distiller": distiller}),
            optimizer, scheduler, ds.train_y, tracker, lambda: save_model(record.path("best.pt"), student, meta))
        save_model(record.path("model.pt"), student, meta)
        s_logits, s_feats = predict(student, ds.test_x, channels_last=cfg.channels_last, features=True)
        final = {"test_acc": A.accuracy(s_logits, ds.test_y), "ece": A.expected_calibration_error(s_logits, ds.test_y)}
        if t_logits is not None:
            final = A.agreement_metrics(t_logits, s_logits, ds.test_y, t_feats, s_feats)
        record.update(student=cfg.student, distiller=cfg.distiller, weights=distiller.weights,
                      eval_images=len(watch), test_images=len(ds.test_y),
                      num_classes=ds.num_classes, classes=list(ds.classes), **final)
    tracker.finish()
    return DistillResult(student.eval(), s_logits, s_feats, t_logits, t_feats)
