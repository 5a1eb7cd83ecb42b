"""The distill stage (``notebooks/distill.ipynb``): a random-init student learns from a frozen teacher.

The teacher is the finished teacher run named by ``cfg.teacher`` (checked against the dataset and
classes); it sees the student's augmented view resized to the size it was trained at. Every epoch
the student is evaluated on the eval images together with its agreement with the teacher; at the
end the full agreement metrics (split agreement, KL, ECE of both, CKA) on all test images go into
``metrics.json``.

With ``synthetic`` (a generate run) the training set is the real images followed by a class-balanced
sample of the generated ones (``synset_size`` 1x or 2x the real set); with ``diffaug`` every view
is DiffAugmented after its crop/flip. Either way the student and the teacher see the same pixels,
and every per-image structure (views, teacher cache, CRD memory banks) has one row per image.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from dapt.training import agreement as A
from dapt.core import distributed
from dapt.training.checkpoint import load_model
from dapt.data import ImageSet
from dapt.data.augment import make_views
from dapt.data.diffaug import make_diffaug_views, view_pixels
from dapt.data.synthetic import load_synthetic, sample_synthetic, with_synthetic
from dapt.training.device import Placement
from dapt.distillers import build_distiller
from dapt.pipeline.config import DEFAULT_VIEWS
from dapt.core.errors import DaptError
from dapt.models import Net, create_model
from dapt.core.records import RunRecord
from dapt.core.files import read_json, rel
from dapt.training.teacher_cache import TeacherTargets, file_digest, outputs_on_test_set
from dapt.training.loop import Trainee, eval_index, model_meta, predict, prepare, train


def load_teacher(folder: str | Path, ds: ImageSet) -> tuple[Net, dict]:
    """The trained teacher of run ``folder``, frozen and in eval mode, checked against the student's dataset.

    Returns (model, meta); meta adds the teacher run's own final test accuracy (``run_test_acc``).
    """
    folder = Path(folder)
    where = folder.as_posix()
    metrics = read_json(folder / "metrics.json")
    if metrics is None:
        raise DaptError(f"teacher {where}: no metrics.json; run its teacher stage first "
                        f"(e.g. `dapt run params/fashion_quick.yaml --only lite2_ft`)")
    if metrics.get("status") != "done":
        raise DaptError(f"teacher run {where} is {metrics.get('status')!r}, not done; finish it first "
                        f"(dapt run on its study)")
    if not (folder / "model.pt").is_file():
        raise DaptError(f"teacher run {where} has its report but no model.pt (a fresh clone holds only the "
                        f"reports); train it first: dapt run on its study (e.g. params/fashion_quick.yaml)")
    model, meta = load_model(folder / "model.pt")
    if meta.get("dataset") != ds.name or meta.get("num_classes") != ds.num_classes:
        raise DaptError(f"teacher {where} was trained on {meta.get('dataset')} ({meta.get('num_classes')} "
                        f"classes) but this run uses {ds.name} ({ds.num_classes} classes); pick a teacher of {ds.name}")
    for p in model.parameters():
        p.requires_grad_(False)
    return model, {**meta, "run_test_acc": metrics.get("test_acc")}


def view_count(cache_views: int | None, epochs: int) -> int:
    """Augmented views per image the run replays: ``cache_views``, or by default min(epochs, DEFAULT_VIEWS):
    a fresh view every epoch up to that many epochs (one fixed view cost a kd student 2.2 points at 8
    epochs, params/fashion_views.yaml), then replayed, as the cache's size and build time grow per view."""
    return cache_views or min(epochs, DEFAULT_VIEWS)


@dataclass
class DistillResult:
    """The trained student and both models' outputs on all test images, for the notebook's plots."""

    student: Net
    student_logits: torch.Tensor
    student_features: torch.Tensor
    teacher_logits: Optional[torch.Tensor]
    teacher_features: Optional[torch.Tensor]


def training_set(cfg, ds: ImageSet) -> ImageSet:
    """``ds`` with the seeded, class-balanced sample of ``cfg.synthetic``'s images appended to its
    training images (``ds`` itself without ``synthetic``, or when they are already appended)."""
    if not cfg.synthetic or ds.n_synthetic:
        return ds
    generated = load_synthetic(cfg.synthetic, ds.name, ds.classes, ds.image_size)
    keep = sample_synthetic(generated, ds.train_y, cfg.synset_size or "1x", cfg.seed, ds.classes)
    return with_synthetic(ds, generated.x[keep], generated.y[keep])


def distill(cfg, ds: ImageSet, record: RunRecord) -> DistillResult:
    """Train ``cfg.student`` from random init with ``cfg.distiller`` from the teacher run ``cfg.teacher``,
    on ``ds``'s training images and, with ``cfg.synthetic``, the synthetic sample (``training_set``)."""
    outputs: dict = {}
    with record.recording():
        ds = training_set(cfg, ds)
    n_real = len(ds.train_y) - ds.n_synthetic
    record.update(n_real=n_real, n_synthetic=ds.n_synthetic, diffaug=cfg.diffaug,
                  **({"synthetic_run": rel(cfg.synthetic), "synset_size": cfg.synset_size or "1x"}
                     if cfg.synthetic else {}))

    place = Placement.of(cfg)

    def build() -> Trainee:
        teacher, teacher_meta = load_teacher(cfg.teacher, ds) if cfg.teacher else (None, None)
        student = create_model(cfg.student, ds.num_classes, pretrained=False, image_size=cfg.image_size)
        student.to(place.device)
        if teacher is not None:
            teacher.to(place.device)
        if cfg.channels_last:
            student.to(memory_format=torch.channels_last)
            if teacher is not None:
                teacher.to(memory_format=torch.channels_last)
        distiller = build_distiller(
            cfg.distiller, cfg, s_dim=student.feat_dim, t_dim=teacher.feat_dim if teacher else None,
            num_classes=ds.num_classes, train_labels=ds.train_y,
            teacher_head=teacher.head if teacher is not None else None, seed=cfg.seed,
            steps_per_epoch=max(1, len(ds.train_y) // cfg.batch_size)).to(place.device)
        n, count = len(ds.train_y), view_count(cfg.cache_views, cfg.epochs)
        views = make_views(n, cfg.image_size, count, cfg.seed, cfg.augment)
        diff_views = None
        if cfg.diffaug != "none":
            diff_views = make_diffaug_views(n, cfg.image_size, count, cfg.seed, cfg.diffaug)
            views = views * count if len(views) == 1 else views  # without crop/flip: identity crops
        # train accuracy on real and on synthetic images, over the epoch so far: [correct, seen] each
        by_source = {"real": [0, 0], "synthetic": [0, 0]}
        watch = eval_index(ds.test_y, cfg.eval_subset, len(ds.train_y))
        targets = None
        if teacher is not None:
            t_size = int(teacher_meta["image_size"])
            cache_dir = Path(cfg.teacher) / "cache" if cfg.teacher_cache == "on" else None
            key = (file_digest(Path(cfg.teacher) / "model.pt"), ds.name, cfg.image_size) if cache_dir else ()
            outputs["t_logits"], outputs["t_feats"] = outputs_on_test_set(
                teacher, ds.test_x, t_size, cache_dir=cache_dir, key_parts=key, channels_last=cfg.channels_last)
            if distiller.needs_teacher:
                # the views (drawn from the seed) are part of the key, so the seed itself need not be
                targets = TeacherTargets(teacher, t_size, ds.train_x, views, cache_dir=cache_dir,
                                         key_parts=key, channels_last=cfg.channels_last, diff_views=diff_views)
            t_logits = outputs["t_logits"]
            record.update(teacher_run=rel(cfg.teacher), teacher_model=teacher_meta["model"],
                          teacher_init=teacher_meta.get("init"), teacher_image_size=t_size,
                          teacher_run_test_acc=teacher_meta.get("run_test_acc"),
                          teacher_test_acc=A.accuracy(t_logits, ds.test_y),
                          teacher_eval_acc=A.accuracy(t_logits[watch], ds.test_y[watch]))

        # Several processes: the calls go through DDP, which averages the gradients of the student and of the
        # distiller's own parameters (projectors, CRD embeddings); CRD's banks sync themselves (crd.py).
        student_step = distributed.wrap(distributed.FeaturesAndLogits(student))
        distiller_step = distributed.wrap(distiller, sync_buffers=False, static_graph=True)

        def set_train_mode() -> None:  # at the start of every epoch
            student.train()
            distiller.train()
            for counts in by_source.values():
                counts[:] = [0, 0]

        def step(index: torch.Tensor, epoch: int, generator: torch.Generator):
            view = epoch % len(views)
            x = view_pixels(ds.train_x[index], views[view].select(index),
                            diff_views[view].select(index) if diff_views else None)
            s_feat, s_logits = student_step(prepare(place.to_device(x), channels_last=cfg.channels_last))
            # the losses in float32 also under autocast (.float() of a float32 tensor is the tensor itself)
            s_feat, s_logits = s_feat.float(), s_logits.float()
            t_z, t_f = targets.get(view, index) if targets is not None else (None, None)
            loss, parts = distiller_step(s_feat, s_logits, place.to_device(ds.train_y[index]), t_feat=t_f,
                                         t_logits=t_z, index=index)
            if ds.n_synthetic:
                right, synthetic = s_logits.detach().argmax(1).cpu() == ds.train_y[index], index >= n_real
                for source, rows in (("real", ~synthetic), ("synthetic", synthetic)):
                    by_source[source][0] += int(right[rows].sum())
                    by_source[source][1] += int(rows.sum())
            return loss, s_logits, parts

        def evaluate() -> dict:
            s_logits, _ = predict(student, ds.test_x[watch], channels_last=cfg.channels_last)
            entry = {"test_acc": A.accuracy(s_logits, ds.test_y[watch])}
            if ds.n_synthetic:
                for source, counts in by_source.items():
                    right, seen = distributed.sum_across({"right": counts[0], "seen": counts[1]}).values()
                    entry[f"train_acc_{source}"] = right / max(1, seen)
            if teacher is not None:
                t_logits = outputs["t_logits"][watch]
                entry.update(agreement=A.top1_agreement(t_logits, s_logits), kl=A.predictive_kl(t_logits, s_logits))
            return entry

        def final() -> dict:
            s_logits, s_feats = predict(student, ds.test_x, channels_last=cfg.channels_last, features=True)
            outputs["s_logits"], outputs["s_feats"] = s_logits, s_feats
            numbers = {"test_acc": A.accuracy(s_logits, ds.test_y),
                       "ece": A.expected_calibration_error(s_logits, ds.test_y)}
            if teacher is not None:
                numbers = A.agreement_metrics(outputs["t_logits"], s_logits, ds.test_y, outputs["t_feats"], s_feats)
            return {"student": cfg.student, "distiller": cfg.distiller, "weights": distiller.weights,
                    "image_size": cfg.image_size, "num_classes": ds.num_classes, "classes": list(ds.classes),
                    **numbers}

        meta = model_meta(cfg, ds, student, stage="distill", distiller=cfg.distiller)
        groups = [{"params": list(student.parameters()) + list(distiller.parameters()), "lr": cfg.lr}]
        return Trainee(student, meta, groups, {"student": student, "distiller": distiller},
                       set_train_mode, step, evaluate, final, place)

    trainee = train(cfg, ds, record, build)
    return DistillResult(trainee.model.eval(), outputs["s_logits"], outputs["s_feats"],
                         outputs.get("t_logits"), outputs.get("t_feats"))
