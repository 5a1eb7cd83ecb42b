"""Training loops: the shared epoch loop, evaluation, and the teacher stage (fr / lp / ft).

Data stay uint8 tensors in memory; each batch is augmented on tensors, turned into floats in
[0, 1] and handed to the model, which normalises it itself. Every epoch appends to the run's
``metrics.json`` and writes ``last.pt`` so ``resume: true`` continues where a run stopped.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from tqdm import tqdm

from . import data as D
from .checkpoint import atomic_save, safe_load, save_model
from .models import Net, create_model
from .optim import build_optimizer, build_scheduler
from .runs import RunRecord
from .tracking import Tracker


def prepare(x_uint8: torch.Tensor, size: int | None = None, channels_last: bool = True) -> torch.Tensor:
    """uint8 images → float [0, 1], resized to ``size`` if given, in the memory format the model runs in."""
    x = D.to_float(x_uint8)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=size < x.shape[-1], align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


@torch.inference_mode()
def predict(model: Net, x_uint8: torch.Tensor, *, batch_size: int = 500, size: int | None = None,
            channels_last: bool = True, features: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits (and penultimate features) of ``model`` in eval mode over all of ``x_uint8``."""
    was_training = model.training
    model.eval()
    logits, feats = [], []
    for start in range(0, len(x_uint8), batch_size):
        f, z = model.forward_features(prepare(x_uint8[start:start + batch_size], size, channels_last))
        logits.append(z.float())
        if features:
            feats.append(f.float())
    model.train(was_training)
    return torch.cat(logits), (torch.cat(feats) if features else None)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches; the ragged tail is dropped (BatchNorm dislikes tiny batches)."""
    order = torch.randperm(n, generator=generator)
    count = max(1, n // batch_size)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def eval_index(test_y: torch.Tensor, eval_subset: int | None) -> torch.Tensor:
    """The test images evaluated after each epoch: a fixed stratified subset, or all of them."""
    if eval_subset is None or eval_subset >= len(test_y):
        return torch.arange(len(test_y))
    return D.stratified_subset(test_y, eval_subset, seed=0)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): a resumed run replays the same epochs."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


@dataclass
class Loop:
    """What the epoch loop needs from a stage. ``step`` returns (loss, logits, extra values to average)."""

    step: Callable[[torch.Tensor, int, torch.Generator], tuple[torch.Tensor, torch.Tensor, dict]]
    evaluate: Callable[[], dict]
    set_train_mode: Callable[[], None]
    modules: dict  # name -> module whose state is checkpointed


def fit(cfg, record: RunRecord, loop: Loop, optimizer, scheduler, train_y: torch.Tensor, tracker: Tracker,
        save_best: Callable[[], None]) -> None:
    """Run ``cfg.epochs`` epochs: train, evaluate, log, checkpoint; resumes from ``last.pt`` if asked."""
    last_path = record.path("last.pt")
    start_epoch, best = 0, -1.0
    if cfg.resume and last_path.is_file():
        state = safe_load(last_path, "resume checkpoint")
        for name, module in loop.modules.items():
            module.load_state_dict(state["modules"][name])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, best = int(state["epoch"]), float(state["best"])
        record.metrics["history"] = list(state["history"])
    n = len(train_y)
    steps = max(1, n // cfg.batch_size)
    bar = tqdm(total=steps * cfg.epochs, initial=steps * start_epoch, desc=record.folder.name, unit="batch",
               file=sys.stdout, mininterval=2.0, dynamic_ncols=False, ncols=100)
    for epoch in range(start_epoch, cfg.epochs):
        loop.set_train_mode()
        totals = {"loss": 0.0, "correct": 0, "seen": 0}
        extra_totals: dict = {}
        augment_generator = epoch_generator(cfg.seed, epoch, stream=1)
        for index in batches(n, cfg.batch_size, epoch_generator(cfg.seed, epoch)):
            loss, logits, extra = loop.step(index, epoch, augment_generator)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {epoch + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            totals["loss"] += value * len(index)
            totals["correct"] += (logits.argmax(1) == train_y[index]).sum().item()
            totals["seen"] += len(index)
            for key, value in extra.items():
                extra_totals[key] = extra_totals.get(key, 0.0) + value * len(index)
            bar.update(1)
            bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs} loss {value:.3f}", refresh=False)
        entry = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                 "train_loss": totals["loss"] / totals["seen"], "train_acc": totals["correct"] / totals["seen"]}
        entry.update({f"loss_{k}": v / totals["seen"] for k, v in extra_totals.items()})
        entry.update(loop.evaluate())
        if entry["test_acc"] > best:
            best = entry["test_acc"]
            save_best()
        record.log_epoch(entry)
        tracker.log(entry, step=epoch + 1)
        bar.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                      if k not in ("epoch", "lr") and isinstance(v, float)))
        atomic_save({"epoch": epoch + 1, "best": best, "history": record.metrics["history"],
                     "modules": {k: m.state_dict() for k, m in loop.modules.items()},
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}, last_path)
    bar.close()
    record.update(best_test_acc=best)  # over the per-epoch evaluations (see eval_subset)


def model_meta(cfg, data: D.ImageSet, model: Net, **extra) -> dict:
    return {"model": model.name, "num_classes": data.num_classes, "classes": list(data.classes),
            "dataset": cfg.dataset, "image_size": cfg.image_size, **extra}


def build_teacher(cfg, num_classes: int) -> Net:
    """The teacher network for ``cfg.init``: random (fr) or ImageNet-initialised (lp, ft), LP body frozen."""
    pretrained = False if cfg.init == "fr" else (cfg.pretrained_weights or True)
    model = create_model(cfg.model, num_classes, pretrained=pretrained, image_size=cfg.image_size)
    if cfg.init == "lp":
        for p in model.body_parameters():
            p.requires_grad_(False)
    return model.to(memory_format=torch.channels_last) if cfg.channels_last else model


def train_teacher(cfg, data: D.ImageSet, record: RunRecord) -> Net:
    """Train a teacher as ``cfg`` says; writes ``model.pt`` (last epoch), ``best.pt`` and ``metrics.json``.

    The run stays ``running`` until the notebook calls ``record.finish()`` after its figures.
    """
    torch.manual_seed(cfg.seed)
    model = build_teacher(cfg, data.num_classes)
    if cfg.init == "ft":
        groups = [{"params": list(model.body_parameters()), "lr": cfg.lr},
                  {"params": list(model.head_parameters()), "lr": cfg.lr * cfg.head_lr_mult}]
    else:
        groups = [{"params": list(model.parameters()), "lr": cfg.lr}]
    optimizer = build_optimizer(cfg.optimizer, groups, cfg.lr, cfg.weight_decay)
    steps = max(1, len(data.train_y) // cfg.batch_size)
    scheduler = build_scheduler(cfg.scheduler, optimizer, steps, cfg.epochs, cfg.step_size, cfg.step_gamma)

    def set_train_mode() -> None:
        model.train()
        if cfg.init == "lp":  # a linear probe keeps the pre-trained BatchNorm statistics too
            model.body.eval()

    def step(index: torch.Tensor, epoch: int, generator: torch.Generator):
        x = data.train_x[index]
        if cfg.augment:
            x = D.augment(x, generator)
        logits = model(prepare(x, channels_last=cfg.channels_last))
        return F.cross_entropy(logits, data.train_y[index]), logits, {}

    watch = eval_index(data.test_y, cfg.eval_subset)

    def evaluate() -> dict:
        logits, _ = predict(model, data.test_x[watch], channels_last=cfg.channels_last)
        return {"test_acc": (logits.argmax(1) == data.test_y[watch]).float().mean().item()}

    meta = model_meta(cfg, data, model, init=cfg.init, stage="teacher")
    tracker = Tracker(cfg.wandb, record.folder, record.folder.name, record.metrics["params"])
    with record.recording():
        fit(cfg, record, Loop(step, evaluate, set_train_mode, {"model": model}), optimizer, scheduler,
            data.train_y, tracker, lambda: save_model(record.path("best.pt"), model, meta))
        save_model(record.path("model.pt"), model, meta)
        logits, _ = predict(model, data.test_x, channels_last=cfg.channels_last)
        record.update(test_acc=(logits.argmax(1) == data.test_y).float().mean().item(), model=cfg.model,
                      init=cfg.init, num_classes=data.num_classes, classes=list(data.classes),
                      eval_images=len(watch), test_images=len(data.test_y))
    tracker.finish()
    return model.eval()
