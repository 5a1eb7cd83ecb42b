"""The distill stage (``notebooks/distill.ipynb``): a random-init student learns from a frozen teacher.

The teacher is the finished teacher run named by ``cfg.teacher`` (checked against the dataset and
classes); it sees the student's augmented view resized to the size it was trained at. Every evaluated
epoch the student is measured on the run's validation images (``val_acc``, ``val_agreement`` and
``val_kl`` with the teacher), never on the test set; at the end the full agreement metrics (split
agreement, KL, ECE of both, CKA) on all test images go into ``metrics.json``.

With ``synthetic`` (a generate run) the training set is the real images followed by a class-balanced
sample of the generated ones (``synset_size`` 1x to 10x the real set); with ``diffaug`` every view
is DiffAugmented after its crop/flip. Either way the student and the teacher see the same pixels,
and every per-image structure (views, teacher cache, CRD memory banks) has one row per image.

``StudentTrainer`` says what the shared ``Trainer`` trains; from the notebook's cell to the distiller's
loss is ``distill`` → ``Trainer.fit`` → ``StudentTrainer.step`` → ``Distiller.forward`` → its ``losses``.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from dapt.training import agreement as A
from dapt.core import distributed
from dapt.training.checkpoint import load_teacher
from dapt.data.imageset import ImageSet
from dapt.data.augment import AugmentParams, Views, make_views
from dapt.data.diffaug import DiffAugParams, make_diffaug_views, view_pixels
from dapt.data.synthetic import (SyntheticSet, check_outside_subset, load_synthetic, sample_synthetic,
                                  with_synthetic)
from dapt.training.device import Placement, device_of, teacher_dtype
from dapt.distillers import needs_features
from dapt.distillers.base import Distiller, build_distiller
from dapt.models.nets import Net, create_model
from dapt.core.errors import DaptError
from dapt.core.records import RunRecord
from dapt.core.files import read_json, rel
from dapt.training.teacher_cache import TeacherTargets, file_digest, outputs_on_images
from dapt.training.loop import model_meta, predict, prepare, subset_seed
from dapt.training.trainer import Trainer


def view_count(cache_views: int | None, epochs: int) -> int:
    """Augmented views per image: ``cache_views``, or by default one per epoch, the fresh augmentation a live
    teacher and the teacher stage's students see; fewer views are replayed, which costs the student accuracy
    (``docs/performance.md``, "How many views")."""
    return cache_views or epochs


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
    check_outside_subset(generated, ds)  # generator holdout: none of its real images may be in this run's subset
    check_outside_validation(generated, ds, cfg)
    warn_if_the_teacher_may_know_them(generated, cfg)
    keep = sample_synthetic(generated, ds.train_y, cfg.synset_size or "1x", cfg.seed, ds.classes)
    return with_synthetic(ds, generated.x[keep], generated.y[keep])


def warn_if_the_teacher_may_know_them(synthetic: SyntheticSet, cfg) -> None:
    """Print one warning when a ``holdout`` set may hold images the teacher trained on: the teacher run's
    training subset (its recorded ``train_subset`` and subset seed) is not this run's, whose images the set
    is known to avoid. Its targets on them would then be a teacher's on its own training images, not on
    unseen ones, as an ideal generator's images would be. Not an error: a study may mean it."""
    if synthetic.train_index is None or not cfg.teacher:
        return
    params = (read_json(Path(cfg.teacher) / "metrics.json") or {}).get("params") or {}
    theirs = (params.get("dataset"), params.get("train_subset"),
              subset_seed(params.get("seed", 0), params.get("subset_seed")))
    mine = (cfg.dataset, cfg.train_subset, subset_seed(cfg.seed, cfg.subset_seed))
    if theirs != mine:
        print(f"warning: teacher {rel(cfg.teacher)} trained on train_subset {theirs[1]} drawn with seed {theirs[2]}, "
              f"this run on {mine[1]} with {mine[2]}: it may have trained on some of the held-out images of "
              f"{rel(synthetic.folder)}, so they are not new to it as an ideal generator's would be; train the "
              f"teacher on this run's subset for that control", file=sys.stderr)


def check_outside_validation(synthetic: SyntheticSet, ds: ImageSet, cfg) -> None:
    """Refuse, in one line, a ``holdout`` set holding any of ``ds``'s validation images: the student would be
    trained on the images that choose its best epoch. Holdout takes each class's first images outside the
    subset, the validation set its last ones (``dapt.data.imageset.outside_order``), so on the subset the
    generate run excluded they meet only when the two do not fit in a class together."""
    if synthetic.train_index is None or ds.val_index is None:
        return
    overlap = int(torch.isin(synthetic.train_index, ds.val_index).sum())
    if overlap:
        settings = synthetic.settings or {}
        raise DaptError(f"synthetic run {synthetic.folder.as_posix()} holds {overlap} of this run's "
                        f"{len(ds.val_y):,} validation images (eval_subset {cfg.eval_subset}): its images and the "
                        f"validation set are disjoint when this run trains on the subset it excludes (train_subset "
                        f"{settings.get('train_subset')}, subset seed {settings.get('subset_seed')}; here "
                        f"{cfg.train_subset} and {subset_seed(cfg.seed, cfg.subset_seed)}) and both fit in each "
                        f"class outside it; train on that subset, or lower eval_subset or that run's images_per_class")


def distill(cfg, ds: ImageSet, record: RunRecord) -> DistillResult:
    """Train ``cfg.student`` from random init with ``cfg.distiller`` from the teacher run ``cfg.teacher``,
    on ``ds``'s training images and, with ``cfg.synthetic``, the synthetic sample (``training_set``)."""
    ds = recorded_training_set(cfg, ds, record)
    return StudentTrainer(cfg, ds, record).fit().result()


def recorded_training_set(cfg, ds: ImageSet, record: RunRecord) -> ImageSet:
    """The run's training set (``training_set``), and in its record how many real and synthetic images it
    holds, from which generate run, with which DiffAugment. A generate run that is missing or unreadable
    marks this run failed, with the reason, before anything is trained."""
    with record.recording():
        ds = training_set(cfg, ds)
    record.update(n_real=ds.n_real, n_synthetic=ds.n_synthetic, diffaug=cfg.diffaug,
                  **({"synthetic_run": rel(cfg.synthetic), "synset_size": cfg.synset_size or "1x"}
                     if cfg.synthetic else {}))
    return ds


def placed_teacher(cfg, ds: ImageSet, place: Placement) -> tuple[Optional[Net], Optional[dict]]:
    """The teacher run's frozen model and meta (``load_teacher``), on the run's device and in its memory
    format; (None, None) for a student trained without a teacher."""
    if not cfg.teacher:
        return None, None
    teacher, meta = load_teacher(cfg.teacher, ds)
    teacher.to(place.device)
    if cfg.channels_last:
        teacher.to(memory_format=torch.channels_last)
    return teacher, meta


def build_student(cfg, ds: ImageSet, place: Placement) -> Net:
    """The student from random init (its weights drawn from the seeded global RNG), on the run's device
    and in its memory format."""
    student = create_model(cfg.student, ds.num_classes, pretrained=False, image_size=cfg.image_size)
    student.to(place.device)
    if cfg.channels_last:
        student.to(memory_format=torch.channels_last)
    return student


def distiller_for(cfg, ds: ImageSet, student: Net, teacher: Optional[Net], place: Placement) -> Distiller:
    """``cfg.distiller`` between this student and teacher: its projectors are sized by both models'
    features, CRD's memory banks by the training labels, SRRL reuses the teacher's head."""
    return build_distiller(
        cfg.distiller, cfg, s_dim=student.feat_dim, t_dim=teacher.feat_dim if teacher is not None else None,
        num_classes=ds.num_classes, train_labels=ds.train_y,
        teacher_head=teacher.head if teacher is not None else None, seed=cfg.seed,
        steps_per_epoch=max(1, len(ds.train_y) // cfg.batch_size)).to(place.device)


def training_views(cfg, n: int) -> tuple[Views[AugmentParams], Optional[Views[DiffAugParams]]]:
    """The crop/flip views of the ``n`` training images and, with ``cfg.diffaug``, their DiffAugment
    views: ``view_count`` of each, epoch ``e`` using view ``e mod count``, each drawn from the seed and
    its index alone, so the teacher cache can key on them and a resumed run replays them."""
    count = view_count(cfg.cache_views, cfg.epochs)
    views = make_views(n, cfg.image_size, count, cfg.seed, cfg.augment)
    if cfg.diffaug == "none":
        return views, None
    return views, make_diffaug_views(n, cfg.image_size, count, cfg.seed, cfg.diffaug)


@dataclass
class TeacherOutputs:
    """What the student's training uses of its frozen teacher."""

    meta: dict  # its model file's meta and its run's own test accuracy (``load_teacher``)
    test_logits: torch.Tensor  # on all test images, at the teacher's own image size
    test_features: torch.Tensor
    val_logits: torch.Tensor  # on the run's validation images, at the teacher's own image size
    targets: Optional[TeacherTargets]  # per training image and view; None when the distiller needs none
    precision: str  # of the teacher's forward for the targets: float32, bfloat16 or float16


def teacher_outputs(cfg, ds: ImageSet, teacher: Net, meta: dict, views: Views[AugmentParams],
                    diff_views: Optional[Views[DiffAugParams]], needs_targets: bool) -> TeacherOutputs:
    """The teacher's outputs (float32) on the validation images, which every evaluated epoch compares the student
    with, and on all test images, which the final numbers do; and, when the distiller learns from the teacher, its
    targets on exactly the student's training views, in ``teacher_amp``'s precision: logits, and features when
    the distiller reads them. With ``teacher_cache: on`` all are read from the teacher run's ``cache/`` (written
    there first if missing, with features also when ``cache_features``), keyed by the teacher's weights, the
    dataset, the image size and the images or each view, so the students of one teacher share them; off, the
    validation and test outputs are computed here and the targets live."""
    size = int(meta["image_size"])
    cache_dir = Path(cfg.teacher) / "cache" if cfg.teacher_cache == "on" else None
    key = (file_digest(Path(cfg.teacher) / "model.pt"), ds.name, cfg.image_size) if cache_dir else ()
    test_logits, test_features = outputs_on_images(teacher, ds.test_x, size, part="test", cache_dir=cache_dir,
                                                   key_parts=key, channels_last=cfg.channels_last)
    val_logits, _ = outputs_on_images(teacher, ds.val_x, size, part="validation", cache_dir=cache_dir,
                                      key_parts=key, channels_last=cfg.channels_last)
    targets, dtype = None, teacher_dtype(cfg.teacher_amp, device_of(teacher))
    if needs_targets:
        # the views (drawn from the seed) are part of the key, so the seed itself need not be
        targets = TeacherTargets(teacher, size, ds.train_x, views, cache_dir=cache_dir, key_parts=key,
                                 channels_last=cfg.channels_last, diff_views=diff_views,
                                 features=needs_features(cfg.distiller), store_features=cfg.cache_features,
                                 dtype=dtype)
    return TeacherOutputs(meta, test_logits, test_features, val_logits, targets, str(dtype).removeprefix("torch."))


def record_teacher(record: RunRecord, cfg, ds: ImageSet, teacher: TeacherOutputs) -> None:
    """The teacher in the run's record: its run, model, init and image size, its run's own test accuracy,
    its accuracy on this run's test images (``teacher_test_acc``) and on its validation images
    (``teacher_val_acc``), which the student's per-epoch curves are read against."""
    t_logits = teacher.test_logits
    record.update(teacher_run=rel(cfg.teacher), teacher_model=teacher.meta["model"],
                  teacher_init=teacher.meta.get("init"), teacher_image_size=int(teacher.meta["image_size"]),
                  teacher_precision=teacher.precision,
                  teacher_run_test_acc=teacher.meta.get("run_test_acc"),
                  teacher_test_acc=A.accuracy(t_logits, ds.test_y),
                  teacher_val_acc=A.accuracy(teacher.val_logits, ds.val_y))
    record.complete_provenance(teacher=teacher.precision)


class StudentTrainer(Trainer):
    """The student and the distiller's own layers, trained on the distiller's loss against the frozen
    teacher's outputs; keeps both models' outputs on all test images for the notebook's plots."""

    teacher: Optional[TeacherOutputs] = None  # None: a distiller that learns without a teacher
    student_logits: Optional[torch.Tensor] = None  # on all test images, after the last epoch
    student_features: Optional[torch.Tensor] = None

    def build(self) -> None:
        # ``fit`` calls this right after seeding the global RNG; the student's initial weights, then the
        # distiller's own layers, are drawn from it in this order, so the order is part of the results.
        cfg, ds, place = self.cfg, self.ds, self.place
        teacher, teacher_meta = placed_teacher(cfg, ds, place)
        self.model = self.student = student = build_student(cfg, ds, place)
        self.distiller = distiller = distiller_for(cfg, ds, student, teacher, place)
        self.views, self.diff_views = training_views(cfg, len(ds.train_y))
        if teacher is not None:
            self.teacher = teacher_outputs(cfg, ds, teacher, teacher_meta, self.views, self.diff_views,
                                           distiller.needs_teacher)
            record_teacher(self.record, cfg, ds, self.teacher)
        # the teacher's outputs on each training view (cached or live); None when the distiller learns without them
        self.targets = self.teacher.targets if self.teacher is not None else None
        self.meta = model_meta(cfg, ds, student, stage="distill", distiller=cfg.distiller)
        self.param_groups = [{"params": list(student.parameters()) + list(distiller.parameters()), "lr": cfg.lr}]
        self.resumable = {"student": student, "distiller": distiller}
        # train accuracy on real and on synthetic images, over the epoch so far: [correct, seen] each
        self.by_source = {"real": [0, 0], "synthetic": [0, 0]}
        # Several processes: DDP averages the student's gradients; ``backward`` those of the distiller's own
        # layers (projectors, CRD embeddings), which the step calls directly, not through a DDP wrapper, so
        # that the distiller's loss stays a few calls from the notebook. CRD's banks sync themselves (crd.py).
        self.student_step = distributed.wrap(distributed.FeaturesAndLogits(student))
        distributed.share_from_main(distiller)

    def set_train_mode(self) -> None:
        self.student.train()
        self.distiller.train()
        for counts in self.by_source.values():
            counts[:] = [0, 0]

    def step(self, index: torch.Tensor, epoch: int, generator: torch.Generator):
        """The distiller's loss on one batch, under this epoch's view of its images."""
        cfg, ds = self.cfg, self.ds
        view = epoch % len(self.views)
        x = view_pixels(ds.train_x[index], self.views[view].select(index),
                        self.diff_views[view].select(index) if self.diff_views else None)
        s_feat, s_logits = self.student_step(prepare(self.place.to_device(x), channels_last=cfg.channels_last))
        # the losses in float32 also under autocast (.float() of a float32 tensor is the tensor itself)
        s_feat, s_logits = s_feat.float(), s_logits.float()
        t_z, t_f = self.targets.get(view, index) if self.targets is not None else (None, None)
        loss, parts = self.distiller(s_feat, s_logits, self.place.to_device(ds.train_y[index]), t_feat=t_f,
                                     t_logits=t_z, index=index)
        if ds.n_synthetic:
            self.count_by_source(index, s_logits)
        return loss, s_logits, parts

    def count_by_source(self, index: torch.Tensor, s_logits: torch.Tensor) -> None:
        """Add the batch's right answers to the epoch's train accuracy on real and on synthetic images."""
        right, synthetic = s_logits.detach().argmax(1).cpu() == self.ds.train_y[index], index >= self.ds.n_real
        for source, rows in (("real", ~synthetic), ("synthetic", synthetic)):
            self.by_source[source][0] += int(right[rows].sum())
            self.by_source[source][1] += int(rows.sum())

    def backward(self, loss: torch.Tensor) -> None:
        """The gradients of ``loss``, several processes' averaged: the student's by DDP, the distiller's here."""
        super().backward(loss)
        distributed.average_gradients(self.distiller)

    def evaluate(self) -> dict:
        """After an evaluated epoch, on the validation images: accuracy, and agreement and KL with the teacher."""
        ds = self.ds
        s_logits, _ = predict(self.student, ds.val_x, channels_last=self.cfg.channels_last)
        entry = {"val_acc": A.accuracy(s_logits, ds.val_y)}
        if ds.n_synthetic:
            for source, counts in self.by_source.items():
                right, seen = distributed.sum_across({"right": counts[0], "seen": counts[1]}).values()
                entry[f"train_acc_{source}"] = right / max(1, seen)
        if self.teacher is not None:
            t_logits = self.teacher.val_logits
            entry.update(val_agreement=A.top1_agreement(t_logits, s_logits), val_kl=A.predictive_kl(t_logits, s_logits))
        return entry

    def final(self) -> dict:
        """After the last epoch, on all test images: the run's final numbers, with the teacher's the full
        agreement metrics (split agreement, KL, ECE of both, CKA)."""
        cfg, ds = self.cfg, self.ds
        s_logits, s_feats = predict(self.student, ds.test_x, channels_last=cfg.channels_last, features=True)
        self.student_logits, self.student_features = s_logits, s_feats
        numbers = {"test_acc": A.accuracy(s_logits, ds.test_y),
                   "ece": A.expected_calibration_error(s_logits, ds.test_y)}
        if self.teacher is not None:
            numbers = A.agreement_metrics(self.teacher.test_logits, s_logits, ds.test_y, self.teacher.test_features,
                                          s_feats)
        return {"student": cfg.student, "distiller": cfg.distiller, "weights": self.distiller.weights,
                "image_size": cfg.image_size, "num_classes": ds.num_classes, "classes": list(ds.classes),
                **numbers}

    def result(self) -> DistillResult:
        """The trained student in eval mode, with both models' outputs on all test images."""
        teacher = self.teacher
        return DistillResult(self.student.eval(), self.student_logits, self.student_features,
                             teacher.test_logits if teacher is not None else None,
                             teacher.test_features if teacher is not None else None)
