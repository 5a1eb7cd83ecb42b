"""Augmented views of uint8 batches, and their deterministic replay.

A view is the random part of an augmentation drawn once (crop offsets, flips), so that the very
same pixels can be produced again: the teacher cache computes a frozen teacher's outputs once
per (image, view) and the student replays those views epoch after epoch.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import torch
import torch.nn.functional as F


@dataclass
class AugmentParams:
    """Per-sample crop offsets (into the padded image, 0..2·pad) and flip flags of one augmented view."""

    offset_y: torch.Tensor  # int64 [n]
    offset_x: torch.Tensor  # int64 [n]
    flip: torch.Tensor  # bool [n]
    pad: int
    image_size: int

    def select(self, index: torch.Tensor) -> "AugmentParams":
        """The same view restricted to the images ``index`` (a batch of a replayed view)."""
        return AugmentParams(self.offset_y[index], self.offset_x[index], self.flip[index], self.pad, self.image_size)


def sample_augment(n: int, image_size: int, generator: torch.Generator, pad: int = 4, flip: bool = True) -> AugmentParams:
    """Draw the random crop offsets and flips for ``n`` images; the same generator state gives the same view."""
    offset_y = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    offset_x = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    flips = torch.rand(n, generator=generator) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    return AugmentParams(offset_y, offset_x, flips, pad, image_size)


def apply_augment(x_uint8: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Zero-pad by ``pad``, crop back to S at each sample's offset, mirror flagged samples (as
    torchvision's RandomCrop(padding) + RandomHorizontalFlip). Two gathers, no per-sample loop."""
    n, c, size, width = x_uint8.shape
    if n != len(params.flip) or size != params.image_size or width != size:
        raise ValueError(f"augment params for {len(params.flip)}x{params.image_size}px do not fit a batch of shape {tuple(x_uint8.shape)}")
    p = params.pad
    padded = F.pad(x_uint8, (p, p, p, p))
    steps = torch.arange(size)
    rows = (params.offset_y[:, None] + steps)[:, None, :, None].expand(n, c, size, size + 2 * p)
    cols = torch.where(params.flip[:, None], params.offset_x[:, None] + steps.flip(0), params.offset_x[:, None] + steps)
    return padded.gather(2, rows).gather(3, cols[:, None, None, :].expand(n, c, size, size))


def augment(x_uint8: torch.Tensor, generator: torch.Generator, pad: int = 4, flip: bool = True) -> torch.Tensor:
    """Random padded crop and horizontal flip of a uint8 batch (``sample_augment`` + ``apply_augment``)."""
    return apply_augment(x_uint8, sample_augment(len(x_uint8), x_uint8.shape[-1], generator, pad, flip))


View = TypeVar("View")


class Views(Sequence, Generic[View]):
    """``count`` views drawn when asked for, each by ``draw(v)`` from its own seed, so view ``v`` is the
    same whatever ``count`` is: a run of more epochs extends a shorter run's views and can share its
    teacher cache. A fresh view per epoch at paper scale (250 views of 50,000 images) would hold GBs
    of draws as a list; here only the view in use is kept (an epoch reads one view, batch after batch)."""

    def __init__(self, count: int, draw: Callable[[int], View]):
        self.count, self.draw = count, draw
        self.kept: tuple[int, View] | None = None

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, v: int) -> View:  # type: ignore[override]
        if not 0 <= v < self.count:
            raise IndexError(f"view {v} of {self.count}")
        if self.kept is None or self.kept[0] != v:
            self.kept = (v, self.draw(v))
        return self.kept[1]


def make_views(n: int, image_size: int, count: int, seed: int, augment: bool) -> Views[AugmentParams]:
    """``count`` deterministic augmented views of ``n`` images; without augmentation every view is the
    identity (identical views share one teacher-cache entry, keyed by their draws)."""
    if not augment:
        return Views(count, lambda v: sample_augment(n, image_size, torch.Generator(), pad=0, flip=False))
    return Views(count, lambda v: sample_augment(n, image_size, torch.Generator().manual_seed(seed * 7919 + 17 * v + 1)))
