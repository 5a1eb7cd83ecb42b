"""What the trainer and the stages share around a training loop: a run's data (``load_data``), the model
file's meta, batches as the model takes them (``prepare``), shuffled epochs, the epochs that evaluate,
frozen-model predictions (``predict``) and precise BatchNorm statistics.

The loop itself is ``dapt.training.trainer``. Data stay uint8 tensors in memory; each batch is augmented
on tensors, turned into floats in [0, 1] by ``prepare`` and handed to the model, which normalises it itself.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dapt.data import imageset as D
from dapt.data.augment import augment
from dapt.training.device import device_of, to_device
from dapt.models.nets import Net


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


def calibration_images(cfg, ds: D.ImageSet, epoch: int) -> torch.Tensor:
    """``cfg.precise_bn`` training images, augmented as in training, drawn afresh each epoch."""
    generator = epoch_generator(cfg.seed, epoch, stream=2)
    index = torch.randperm(len(ds.train_y), generator=generator)[:cfg.precise_bn]
    return augment(ds.train_x[index], generator) if cfg.augment else ds.train_x[index]
