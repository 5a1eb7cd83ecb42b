"""The teacher stage (``notebooks/teacher.ipynb``): train a teacher on the task.

``fr`` trains every weight from random init; ``lp`` trains a new head on the frozen ImageNet body,
whose BatchNorm statistics stay frozen too; ``ft`` fine-tunes body and new head, the head at
``head_lr_mult`` times the body's learning rate (the reference code's 10×). ``TeacherTrainer`` says
what the shared ``Trainer`` trains: cross-entropy on each augmented batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from dapt.training import agreement as A
from dapt.core import distributed
from dapt.data.imageset import ImageSet
from dapt.data.augment import augment
from dapt.models.nets import Net, create_model
from dapt.core.records import RunRecord
from dapt.training.loop import model_meta, predict, prepare
from dapt.training.trainer import Trainer


def build_teacher(cfg, num_classes: int) -> Net:
    """The teacher network for ``cfg.init``: random (fr) or ImageNet-initialised (lp, ft), LP body frozen."""
    pretrained = False if cfg.init == "fr" else (cfg.pretrained_weights or True)
    model = create_model(cfg.model, num_classes, pretrained=pretrained, image_size=cfg.image_size)
    if cfg.init == "lp":
        for p in model.body_parameters():
            p.requires_grad_(False)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def train_teacher(cfg, ds: ImageSet, record: RunRecord) -> Net:
    """Train a teacher as ``cfg`` says; writes ``model.pt`` (last epoch), ``best.pt`` (best validation accuracy)
    and ``metrics.json``."""
    return TeacherTrainer(cfg, ds, record).fit().model.eval()


class TeacherTrainer(Trainer):
    """The teacher on the labels: its parameter groups for ``cfg.init``, cross-entropy on each augmented batch."""

    role = "teacher"

    def build(self) -> None:
        cfg, ds = self.cfg, self.ds
        self.model = model = build_teacher(cfg, ds.num_classes).to(self.place.device)
        if cfg.init == "ft":
            self.param_groups = [{"params": list(model.body_parameters()), "lr": cfg.lr},
                                 {"params": list(model.head_parameters()), "lr": cfg.lr * cfg.head_lr_mult}]
        else:
            self.param_groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
        self.meta = model_meta(cfg, ds, model, init=cfg.init, stage="teacher")
        self.resumable = {"model": model}
        self.model_step = distributed.wrap(model)  # several processes: DDP averages the gradients

    def set_train_mode(self) -> None:
        self.model.train()
        if self.cfg.init == "lp":  # a linear probe keeps the pre-trained BatchNorm statistics too
            self.model.body.eval()

    def step(self, index: torch.Tensor, epoch: int, generator: torch.Generator):
        cfg, ds, place = self.cfg, self.ds, self.place
        x = ds.train_x[index]
        if cfg.augment:
            x = augment(x, generator)  # on the CPU, from the CPU generator: the same views on any device
        logits = self.model_step(prepare(place.to_device(x), channels_last=cfg.channels_last))
        # the loss in float32 also under autocast (.float() of float32 logits is the tensor itself)
        return F.cross_entropy(logits.float(), place.to_device(ds.train_y[index])), logits, {}

    def evaluate(self) -> dict:
        logits, _ = predict(self.model, self.ds.val_x, channels_last=self.cfg.channels_last)
        return {"val_acc": A.accuracy(logits, self.ds.val_y)}

    def final(self) -> dict:
        cfg, ds = self.cfg, self.ds
        logits, _ = predict(self.model, ds.test_x, channels_last=cfg.channels_last)
        return {"test_acc": A.accuracy(logits, ds.test_y), "ece": A.expected_calibration_error(logits, ds.test_y),
                "model": cfg.model, "init": cfg.init, "image_size": cfg.image_size, "n_real": len(ds.train_y),
                "num_classes": ds.num_classes, "classes": list(ds.classes)}
