"""The one training skeleton every stage runs on: seed → build → optimizer/scheduler → tracker →
record → fit → save → final evaluation.

A stage (``teacher``, ``distill``) only says what it trains, as a ``Trainee``: the model, its
parameter groups, one training step, the per-epoch evaluation (on the validation images: it
chooses ``best.pt``) and the final one (on all test images, the only time the test set is read).
Data stay uint8 tensors in memory; each batch is augmented on tensors, turned into floats in
[0, 1] and handed to the model, which normalises it itself. Every epoch appends to the run's
``metrics.json`` and writes ``last.pt`` (with ``checkpoint_every``, every N steps too), so
``resume: true`` continues where a run stopped, also in the middle of an epoch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from dapt.data import imageset as D
from dapt.core import distributed
from dapt.data.augment import augment
from dapt.core.torch_files import atomic_save, safe_load
from dapt.training.checkpoint import save_model
from dapt.training.device import Placement, device_of, to_device
from dapt.core.errors import DaptError
from dapt.models.nets import Net
from dapt.training.optim import build_optimizer, build_scheduler
from dapt.core.records import RunRecord
from dapt.core.progress import progress
from dapt.core.tracking import Tracker


def subset_seed(seed: int, subset_seed: int | None) -> int:
    """The seed a run's training subset is drawn with: ``subset_seed``, or the run's ``seed`` when it is null."""
    return seed if subset_seed is None else subset_seed


def load_data(cfg) -> D.ImageSet:
    """The run's dataset at its working size, with its seeded stratified training subset and, for a training
    run, its validation images (``eval_subset``), drawn with the same seed."""
    # a generate run has no subset_seed: its one seed draws the subset its ddpm learns from; nor
    # eval_subset: it selects no classifier, so it keeps every training image and draws no validation set
    return D.load_dataset(cfg.dataset, cfg.image_size, data_root=cfg.data_root, train_subset=cfg.train_subset,
                          seed=subset_seed(cfg.seed, getattr(cfg, "subset_seed", None)), download=cfg.download,
                          validation=getattr(cfg, "eval_subset", False), folder=cfg.folder)


def model_meta(cfg, ds: D.ImageSet, model: Net, **extra) -> dict:
    """What a model file carries beside its weights: enough to rebuild it and check it against a task."""
    return {"model": model.name, "num_classes": ds.num_classes, "classes": list(ds.classes),
            "dataset": cfg.dataset, "image_size": cfg.image_size, **extra}


def prepare(x_uint8: torch.Tensor, size: int | None = None, channels_last: bool = True) -> torch.Tensor:
    """uint8 images → float [0, 1] (float images, e.g. DiffAugment's, pass as they are), resized to
    ``size`` if given, in the memory format the model runs in."""
    x = D.to_float(x_uint8) if x_uint8.dtype == torch.uint8 else x_uint8
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=size < x.shape[-1], align_corners=False)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def inference_batch(size: int, device: torch.device) -> int:
    """Images per forward pass when a frozen model runs over many images (evaluation, teacher-cache
    builds) at input ``size``. On the CPU the fastest batch keeps one batch's activations in the
    processor's caches: 64 images at 64 px, scaled inversely with the pixels, 8 to 256 (the timings that
    chose these sizes: ``benchmarks/results/inference_batch.md``). An accelerator wants large batches:
    500 up to 64 px, fewer in proportion to the pixels (40 at 224 px), so one batch's activations stay
    about the same size instead of growing with size²."""
    per_64px_image = 64 * 64 / (size * size)
    if device.type == "cpu":
        return max(8, min(256, int(64 * per_64px_image)))
    return max(16, min(500, int(500 * per_64px_image)))


@torch.inference_mode()
def predict(model: Net, x_uint8: torch.Tensor, *, batch_size: int | None = None, size: int | None = None,
            channels_last: bool = True, features: bool = False) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Logits (and penultimate features) of ``model`` in eval mode over all of ``x_uint8``, computed in
    float32 on the model's device (batch by batch from host memory) and returned on the CPU, in batches
    of ``batch_size`` (default: ``inference_batch`` at the input size)."""
    was_training = model.training
    model.eval()
    device = device_of(model)
    batch_size = batch_size or inference_batch(size or x_uint8.shape[-1], device)
    logits, feats = [], []
    for start in range(0, len(x_uint8), batch_size):
        x = to_device(x_uint8[start:start + batch_size], device)
        f, z = model.forward_features(prepare(x, size, channels_last))
        logits.append(z.float().cpu())  # .cpu() of a CPU tensor is the tensor itself: no copy
        if features:
            feats.append(f.float().cpu())
    model.train(was_training)
    return torch.cat(logits), (torch.cat(feats) if features else None)


def batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled epoch of index batches; the ragged tail is dropped (BatchNorm dislikes tiny batches)."""
    order = torch.randperm(n, generator=generator)
    count = max(1, n // batch_size)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(count)]


def evaluates_after(epoch: int, cfg) -> bool:
    """Whether the 1-based ``epoch`` ends with an evaluation: every ``eval_every``-th, and the last."""
    return epoch % cfg.eval_every == 0 or epoch == cfg.epochs


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int, channels_last: bool) -> int:
    """Precise BN (Wu & Johnson 2021): set the running statistics of the BatchNorm layers that are
    training to their plain average over ``images`` (uint8, augmented as in training), computed
    with the current weights, on the model's device. Returns how many layers it re-estimated.

    Why: a running variance keeps 0.9^steps of its initial 1.0. MobileNetV2's depthwise layers
    start so small (torchvision's fan_out init counts 9·C inputs) that after a short epoch that
    leftover still outweighs their true variance: the eval-mode signal vanishes and every image gets
    the same class, while the same weights classify well with re-estimated statistics (the figures:
    ``benchmarks/results/precise_bn.md``). Layers in eval mode (a linear probe's frozen body) keep theirs.
    """
    layers = [m for m in model.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats]
    momenta = [m.momentum for m in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # None: a cumulative average over the batches below
    stop = len(images) // batch_size * batch_size or len(images)  # no ragged tail: BN needs >1 value
    # The body only (no head dropout), and a forked RNG: stochastic depth in the body must not
    # shift the random stream training continues with (on CUDA, the device's stream).
    device = device_of(model)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        for start in range(0, stop if layers else 0, batch_size):
            model.features(prepare(to_device(images[start:start + batch_size], device), channels_last=channels_last))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum
    return len(layers)


def epoch_generator(seed: int, epoch: int, stream: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, epoch, stream): a resumed run replays the same epochs."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch * 101 + stream)


@dataclass
class Trainee:
    """What a stage trains, in the terms the skeleton needs."""

    model: Net  # saved as model.pt (last epoch) and best.pt (best validation accuracy of the evaluated epochs)
    meta: dict  # saved beside the weights: architecture, classes, dataset, image size, ...
    param_groups: list[dict]
    modules: dict[str, nn.Module]  # name -> module whose state last.pt keeps for resume
    set_train_mode: Callable[[], None]
    # (batch indices, epoch, augmentation generator) -> (loss, logits, weighted loss parts)
    step: Callable[[torch.Tensor, int, torch.Generator], tuple[torch.Tensor, torch.Tensor, dict]]
    # after each evaluated epoch (eval_every), on the validation images, never the test set: at least val_acc
    evaluate: Callable[[], dict]
    final: Callable[[], dict]  # after the last epoch, on all test images: the run's final numbers
    # device, autocast and loss scaling of the steps; the stage moves its modules to place.device
    place: Placement = field(default_factory=Placement)
    # what the trained model is to the study, the key of its precision in the run's provenance
    role: str = "student"


def train(cfg, ds: D.ImageSet, record: RunRecord, build: Callable[[], Trainee]) -> Trainee:
    """Seed, build the trainee, train it for ``cfg.epochs`` and record everything in ``record``.

    ``ds`` holds the run's validation images (``load_data``): the evaluated epochs read them, the test set is
    read once, by ``trainee.final()`` on the last epoch's model. The run stays ``running`` until the
    notebook calls ``record.finish()`` after its figures; an exception marks it ``failed`` (``interrupted``
    on Ctrl-C) and is re-raised.
    """
    with record.recording():
        if ds.val_y is None:
            raise DaptError(f"the {ds.name} images of this run hold no validation set, which the evaluated epochs "
                            f"and best.pt read; load them with dapt.training.loop.load_data(cfg)")
        distributed.check_batch_size(cfg.batch_size)
        torch.manual_seed(cfg.seed)
        trainee = build()
        trainee.place.compile_model(trainee.model)
        record.update(device=str(trainee.place.device))
        record.complete_provenance(**trainee.place.describe(), **{trainee.role: trainee.place.precision})
        optimizer = build_optimizer(cfg.optimizer, trainee.param_groups, cfg.lr, cfg.weight_decay)
        steps = max(1, len(ds.train_y) // cfg.batch_size)
        scheduler = build_scheduler(cfg.scheduler, optimizer, steps, cfg.epochs, cfg.step_size, cfg.step_gamma)
        record.update(val_images=len(ds.val_y), val_source=ds.val_source, test_images=len(ds.test_y))
        _fit(cfg, record, trainee, optimizer, scheduler, ds, record.tracker)  # the record finishes the tracker
        if distributed.is_main():
            save_model(record.path("model.pt"), trainee.model, trainee.meta)
        record.update(**trainee.final())
    return trainee


def calibration_images(cfg, ds: D.ImageSet, epoch: int) -> torch.Tensor:
    """``cfg.precise_bn`` training images, augmented as in training, drawn afresh each epoch."""
    generator = epoch_generator(cfg.seed, epoch, stream=2)
    index = torch.randperm(len(ds.train_y), generator=generator)[:cfg.precise_bn]
    return augment(ds.train_x[index], generator) if cfg.augment else ds.train_x[index]


def _resume_state(last_path, trainee: Trainee, optimizer, scheduler, record: RunRecord, steps: int) -> dict:
    """Load ``last.pt`` into the trainee, optimizer, scheduler and global RNG; returns the checkpoint.

    A mid-epoch checkpoint (``step`` > 0) also holds the epoch's running totals and the state of its
    augmentation generator, which ``_fit`` picks up where they were.
    """
    state = safe_load(last_path, "resume checkpoint", "run it again without resume (--resume) to start afresh")
    if int(state.get("steps_per_epoch", steps)) != steps:
        raise DaptError(f"{last_path.as_posix()} was written with {state['steps_per_epoch']} steps per epoch, this run "
                        f"has {steps}: its data or batch size changed; run it again without resume")
    if any("test_acc" in entry for entry in state["history"]):
        raise DaptError(f"{last_path.as_posix()} was written when the evaluated epochs read test images, this run "
                        f"reads validation images; run it again without resume")
    for name, module in trainee.modules.items():
        module.load_state_dict(state["modules"][name])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    record.metrics["history"] = list(state["history"])
    torch.set_rng_state(state["rng"])  # dropout and stochastic depth draw from the global stream
    trainee.place.load_resume_state(state)
    return state


def _fit(cfg, record: RunRecord, trainee: Trainee, optimizer, scheduler, ds: D.ImageSet, tracker: Tracker) -> None:
    """Run the epochs: train, evaluate, log, checkpoint; resumes from ``last.pt`` if asked.

    ``last.pt`` is written at each epoch end and, with ``cfg.checkpoint_every = N``, after every N-th
    training step as well; a run resumed from a mid-epoch checkpoint skips the batches already done
    and continues with the very state an uninterrupted run had at that step.
    """
    train_y = ds.train_y
    last_path = record.path("last.pt")
    n = len(train_y)
    steps = max(1, n // cfg.batch_size)
    resumed: dict = {"epoch": 0, "step": 0, "best": -1.0, "best_epoch": 0}
    if cfg.resume and last_path.is_file():
        resumed = _resume_state(last_path, trainee, optimizer, scheduler, record, steps)
    start_epoch, best, best_epoch = int(resumed["epoch"]), float(resumed["best"]), int(resumed["best_epoch"])
    start_step = int(resumed.get("step", 0))
    place = trainee.place

    def save_resume_state(epoch_done: int, step: int, totals: dict, augment_generator: torch.Generator) -> None:
        if not distributed.is_main():  # the totals are global sums, every rank holds the same state
            return
        state = {"epoch": epoch_done, "step": step, "steps_per_epoch": steps, "best": best, "best_epoch": best_epoch,
                 "history": record.metrics["history"],
                 "modules": {k: m.state_dict() for k, m in trainee.modules.items()},
                 "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "rng": torch.get_rng_state(), **place.resume_state()}
        if step:  # in the middle of an epoch: where its sums and its augmentation stream stand
            state.update(totals=totals, augment_rng=augment_generator.get_state())
        atomic_save(state, last_path)

    bar = progress(total=steps * cfg.epochs, initial=steps * start_epoch + start_step, desc=record.folder.name,
                   unit="batch")
    for epoch in range(start_epoch, cfg.epochs):
        trainee.set_train_mode()
        totals: dict = {"loss": 0.0, "correct": 0, "seen": 0, "parts": {}}
        augment_generator = epoch_generator(cfg.seed, epoch, stream=1)
        order = batches(n, cfg.batch_size, epoch_generator(cfg.seed, epoch))
        done = start_step if epoch == start_epoch else 0
        if done:
            totals = {**resumed["totals"], "parts": dict(resumed["totals"]["parts"])}
            augment_generator.set_state(resumed["augment_rng"])
        for step, index in enumerate(order[done:], done + 1):
            index = distributed.shard(index)  # several processes: this one's slice of the global batch
            with place.autocast():
                loss, logits, parts = trainee.step(index, epoch, augment_generator)
            sums = distributed.sum_across({"loss": loss.item() * len(index), "seen": len(index),
                                           "correct": (logits.argmax(1).cpu() == train_y[index]).sum().item(),
                                           **{key: part * len(index) for key, part in parts.items()}})
            value = sums["loss"] / sums["seen"]  # the global batch's: every rank stops alike on a bad one
            if not math.isfinite(value):
                raise FloatingPointError(f"training loss became {value} at epoch {epoch + 1}; lower lr")
            optimizer.zero_grad(set_to_none=True)
            place.backward(loss)
            place.step(optimizer)
            scheduler.step()
            totals["loss"] += sums["loss"]
            totals["correct"] += int(sums["correct"])
            totals["seen"] += int(sums["seen"])
            for key in parts:
                totals["parts"][key] = totals["parts"].get(key, 0.0) + sums[key]
            bar.update(1)
            record.step_done()
            bar.set_postfix_str(f"epoch {epoch + 1}/{cfg.epochs} loss {value:.3f}", refresh=False)
            if cfg.checkpoint_every and step < steps and (epoch * steps + step) % cfg.checkpoint_every == 0:
                save_resume_state(epoch, step, totals, augment_generator)
        entry = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"],
                 "train_loss": totals["loss"] / totals["seen"], "train_acc": totals["correct"] / totals["seen"]}
        entry.update({f"loss_{k}": v / totals["seen"] for k, v in totals["parts"].items()})
        if evaluates_after(epoch + 1, cfg):
            if cfg.precise_bn:
                recalibrate_batchnorm(trainee.model, calibration_images(cfg, ds, epoch), cfg.batch_size,
                                      cfg.channels_last)
            entry.update(trainee.evaluate())
            if entry["val_acc"] > best:
                best, best_epoch = entry["val_acc"], epoch + 1
                if distributed.is_main():
                    save_model(record.path("best.pt"), trainee.model, trainee.meta)
            record.metrics.update(best_val_acc=best, best_epoch=best_epoch)
        record.log_epoch(entry)  # one write of metrics.json per epoch
        tracker.log(entry, step=epoch + 1)
        bar.write(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v:.4f}" for k, v in entry.items()
                                                      if k not in ("epoch", "lr") and isinstance(v, float)))
        save_resume_state(epoch + 1, 0, totals, augment_generator)
    bar.close()
