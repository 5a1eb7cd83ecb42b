"""DiffAugment (Zhao & Bilen, "Dataset Condensation with Differentiable Siamese Augmentation",
ICML 2021) on batched float images in [0, 1], with its random part drawn once per view and replayed.

The reference code (``utils/augment.py`` of sfarhat/dapt, after mit-han-lab/data-efficient-gans)
runs strategy ``flip_color_crop_rotate_scale_cutout`` on ImageNet-normalised tensors
``z = (x − m) / σ`` with m = (0.485, 0.456, 0.406), σ = (0.229, 0.224, 0.225); each image draws
its own magnitudes (``seed = -1``: no batch-wise sharing). Per image, with u ~ U[0, 1):

- flip: mirror if u < 0.5;
- color: brightness z + (u − 0.5)·1.0, then saturation z̄_c + (z − z̄_c)·2u with z̄_c the mean over
  channels, then contrast z̄ + (z − z̄)·(u + 0.5) with z̄ the mean over the whole image;
- crop: translate by t ∈ {−⌊S/8 + ½⌋, …, ⌊S/8 + ½⌋} pixels per axis, filling with 0;
- rotate: by (u − 0.5)·2·15°; scale: each axis by 1/1.2 + u·(1.2 − 1/1.2); both bilinear
  (``affine_grid`` / ``grid_sample``, ``align_corners=True``), filling with 0;
- cutout: zero a ⌊S/2 + ½⌋ square centred at a random pixel (clipped to the image).

Here images are [0, 1] pixels and the models normalise them themselves, so every magnitude is
restated in pixel units, exactly (pixel = m + σ·z, per channel):

- the fill value 0 of crop, rotate, scale and cutout is the ImageNet mean colour m in pixels;
- brightness offsets of ±0.5 normalised units are ±0.5·σ_c pixels (±0.115, ±0.112, ±0.113);
- saturation and contrast factors (2u ∈ [0, 2), u + 0.5 ∈ [0.5, 1.5)) are ratios and unchanged;
  the grey level they scale around is the reference's mean in normalised units mapped back to
  channel c, g_c = m_c + σ_c·z̄;
- no clipping to [0, 1] (the reference does not clip either).

Modes: ``M`` applies all six in order. ``S`` applies one of them: the reference draws that choice
once per *batch*; here it is drawn per *image*, because a view must give an image the same pixels
whichever batch it lands in (the teacher's outputs are cached per image and view). Each image
still gets one uniformly chosen transform, as in the reference; only the choices of images that
share a batch are no longer tied.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

from dapt.data.imageset import NORMALISATIONS, to_float
from dapt.data.augment import AugmentParams, Views, apply_augment

GROUPS = ("flip", "color", "crop", "rotate", "scale", "cutout")  # the reference strategy's order
MODES = ("S", "M")
MEAN, STD = (torch.tensor(v).view(1, 3, 1, 1) for v in NORMALISATIONS["imagenet"])
FLIP_P, BRIGHTNESS, SATURATION, CONTRAST = 0.5, 1.0, 2.0, 0.5
CROP_RATIO, ROTATE_DEGREES, SCALE_RATIO, CUTOUT_RATIO = 0.125, 15.0, 1.2, 0.5


@dataclass
class DiffAugParams:
    """The random draws of one DiffAugment view, per image (the reference's draws, unmapped)."""

    choice: torch.Tensor  # int64 [n]: index into GROUPS (mode S), -1 = all of them (mode M)
    flip: torch.Tensor  # float [n] uniforms
    brightness: torch.Tensor
    saturation: torch.Tensor
    contrast: torch.Tensor
    shift_y: torch.Tensor  # int64 [n]: crop translation along rows
    shift_x: torch.Tensor  # along columns
    rotate: torch.Tensor  # float [n] uniforms
    scale_cols: torch.Tensor  # float [n] uniforms; the reference's sx, affine_grid's first coordinate
    scale_rows: torch.Tensor
    cutout_y: torch.Tensor  # int64 [n]: cutout centre row
    cutout_x: torch.Tensor

    def select(self, index: torch.Tensor) -> "DiffAugParams":
        """The same view restricted to the images ``index``."""
        return DiffAugParams(*(getattr(self, f.name)[index] for f in fields(self)))

    def key_tensors(self) -> list[torch.Tensor]:
        """Every draw, for cache keys."""
        return [getattr(self, f.name) for f in fields(self)]


def sample_diffaug(n: int, image_size: int, mode: str, generator: torch.Generator) -> DiffAugParams:
    """Draw one view for ``n`` images. Mode ``S`` first draws each image's transform; the magnitudes
    follow in the reference's order of draws (flip, brightness, saturation, contrast, crop rows and
    columns, rotation, scale, cutout rows and columns), so that the same seed gives the same numbers."""
    if mode not in MODES:
        raise ValueError(f"DiffAugment mode must be one of {MODES}, got {mode!r}")
    choice = (torch.randint(0, len(GROUPS), (n,), generator=generator) if mode == "S"
              else torch.full((n,), -1, dtype=torch.int64))
    uniform = [torch.rand(n, generator=generator) for _ in range(4)]
    shift = int(image_size * CROP_RATIO + 0.5)
    shifts = [torch.randint(-shift, shift + 1, (n,), generator=generator) for _ in range(2)]
    rotate = torch.rand(n, generator=generator)
    scales = [torch.rand(n, generator=generator) for _ in range(2)]
    cut = int(image_size * CUTOUT_RATIO + 0.5)
    centres = [torch.randint(0, image_size + (1 - cut % 2), (n,), generator=generator) for _ in range(2)]
    return DiffAugParams(choice, *uniform, *shifts, rotate, *scales, *centres)


def make_diffaug_views(n: int, image_size: int, count: int, seed: int, mode: str) -> Views[DiffAugParams]:
    """``count`` deterministic DiffAugment views of ``n`` images (a stream apart from the crop views'),
    each drawn when asked for (``Views``)."""
    return Views(count, lambda v: sample_diffaug(n, image_size, mode,
                                                 torch.Generator().manual_seed(seed * 7919 + 17 * v + 2**40)))


def _grey(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """The reference's mean in normalised units over ``dims``, mapped back to each channel's pixels."""
    m, s = MEAN.to(x), STD.to(x)
    return m + s * ((x - m) / s).mean(dim=dims, keepdim=True)


def _flip(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    return torch.where((p.flip < FLIP_P).view(-1, 1, 1, 1), x.flip(3), x)


def _color(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    x = x + (p.brightness.view(-1, 1, 1, 1).to(x) - 0.5) * BRIGHTNESS * STD.to(x)
    g = _grey(x, (1,))
    x = g + (x - g) * (p.saturation.view(-1, 1, 1, 1).to(x) * SATURATION)
    g = _grey(x, (1, 2, 3))
    return g + (x - g) * (p.contrast.view(-1, 1, 1, 1).to(x) + CONTRAST)


def _crop(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    """out[i, j] = x[i + t_y, j + t_x] inside the image, the mean colour outside."""
    n, _, h, w = x.shape
    rows = torch.arange(h, device=x.device) + p.shift_y.view(-1, 1).to(x.device)  # [n, h]
    cols = torch.arange(w, device=x.device) + p.shift_x.view(-1, 1).to(x.device)  # [n, w]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    picked = x.gather(2, rows.clamp(0, h - 1)[:, None, :, None].expand(n, x.shape[1], h, w))
    picked = picked.gather(3, cols.clamp(0, w - 1)[:, None, None, :].expand(n, x.shape[1], h, w))
    return torch.where(inside[:, None], picked, MEAN.to(x))


def _warp(x: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling by the affine map ``theta`` [n, 2, 3], the mean colour outside the image."""
    m = MEAN.to(x)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=True)
    return F.grid_sample(x - m, grid, align_corners=True) + m


def _rotate(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    angle = (p.rotate - 0.5) * 2 * ROTATE_DEGREES / 180 * torch.pi
    cos, sin, zero = torch.cos(angle), torch.sin(angle), torch.zeros_like(angle)
    return _warp(x, torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1))


def _scale(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    low = 1.0 / SCALE_RATIO
    s_cols, s_rows = (u * (SCALE_RATIO - low) + low for u in (p.scale_cols, p.scale_rows))
    zero = torch.zeros_like(s_cols)
    return _warp(x, torch.stack([torch.stack([s_cols, zero, zero], 1), torch.stack([zero, s_rows, zero], 1)], 1))


def _cutout(x: torch.Tensor, p: DiffAugParams) -> torch.Tensor:
    """The mean colour over a ⌊S/2 + ½⌋ square starting half its size before the drawn centre."""
    _, _, h, w = x.shape
    size_y, size_x = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    top = (p.cutout_y - size_y // 2).view(-1, 1).to(x.device)
    left = (p.cutout_x - size_x // 2).view(-1, 1).to(x.device)
    rows, cols = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    hole = (((rows >= top) & (rows < top + size_y))[:, :, None]
            & ((cols >= left) & (cols < left + size_x))[:, None, :])
    return torch.where(hole[:, None], MEAN.to(x), x)


_APPLY = {"flip": _flip, "color": _color, "crop": _crop, "rotate": _rotate, "scale": _scale, "cutout": _cutout}


def diff_augment(x: torch.Tensor, params: DiffAugParams) -> torch.Tensor:
    """DiffAugment a float batch [n, 3, S, S] in [0, 1] with the draws ``params`` (one view of these
    images); differentiable in ``x``, and the same params give the same pixels."""
    if x.dtype == torch.uint8 or len(params.choice) != len(x):
        raise ValueError(f"diff_augment needs a float batch matching its {len(params.choice)} draws, "
                         f"got {x.dtype} {tuple(x.shape)}")
    out = x
    for k, group in enumerate(GROUPS):
        chosen = (params.choice == -1) | (params.choice == k)
        if bool(chosen.all()):
            out = _APPLY[group](out, params)
        elif bool(chosen.any()):
            index = torch.nonzero(chosen).flatten()
            out = out.index_copy(0, index.to(x.device), _APPLY[group](out[index], params.select(index)))
    return out.contiguous()


def view_pixels(x_uint8: torch.Tensor, crop: AugmentParams, diff: DiffAugParams | None) -> torch.Tensor:
    """A batch under one view: crop/flip on the uint8 pixels, then DiffAugment on [0, 1] floats if
    ``diff`` is given (uint8 out without it, so runs without DiffAugment see exactly what they did)."""
    x = apply_augment(x_uint8, crop)
    return x if diff is None else diff_augment(to_float(x), diff)
