"""DiffAugment (dapt.data.diffaug) against the reference implementation, for fixed seeds.

The functions under "reference" below are the reference code's algorithm (sfarhat/dapt
``utils/augment.py``: ``DiffAugment``, ``ParamDiffAug`` and the ``rand_*`` transforms) transcribed
for testing, unchanged except for layout. They work on ImageNet-normalised tensors and draw from
torch's global generator; dapt works on [0, 1] pixels with draws from its own generator in the
same order, so with the same seed both must give the same images (pixel = mean + std · z).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dapt.data.diffaug import GROUPS, DiffAugParams, diff_augment, make_diffaug_views, sample_diffaug

STRATEGY = "flip_color_crop_rotate_scale_cutout"
# The reference normalises with ImageNet statistics (utils/datasets.py)
MEAN = torch.tensor((0.485, 0.456, 0.406)).view(1, 3, 1, 1)
STD = torch.tensor((0.229, 0.224, 0.225)).view(1, 3, 1, 1)


# --- reference (transcribed for testing) ---------------------------------------------------------

class ParamDiffAug:
    def __init__(self):
        self.aug_mode = 'S'
        self.prob_flip = 0.5
        self.ratio_scale = 1.2
        self.ratio_rotate = 15.0
        self.ratio_crop_pad = 0.125
        self.ratio_cutout = 0.5
        self.ratio_noise = 0.05
        self.brightness = 1.0
        self.saturation = 2.0
        self.contrast = 0.5


def set_seed_DiffAug(param):
    if param.latestseed == -1:
        return
    torch.random.manual_seed(param.latestseed)
    param.latestseed += 1


def DiffAugment(x, strategy='', seed=-1, param=None):
    param.batchmode = seed != -1
    param.latestseed = seed
    if strategy in ('None', 'none'):
        return x
    if strategy:
        if param.aug_mode == 'M':
            for p in strategy.split('_'):
                for f in AUGMENT_FNS[p]:
                    x = f(x, param)
        elif param.aug_mode == 'S':
            pbties = strategy.split('_')
            set_seed_DiffAug(param)
            p = pbties[torch.randint(0, len(pbties), size=(1,)).item()]
            for f in AUGMENT_FNS[p]:
                x = f(x, param)
        x = x.contiguous()
    return x


def rand_scale(x, param):
    ratio = param.ratio_scale
    set_seed_DiffAug(param)
    sx = torch.rand(x.shape[0]) * (ratio - 1.0/ratio) + 1.0/ratio
    set_seed_DiffAug(param)
    sy = torch.rand(x.shape[0]) * (ratio - 1.0/ratio) + 1.0/ratio
    theta = [[[sx[i], 0, 0], [0, sy[i], 0]] for i in range(x.shape[0])]
    theta = torch.tensor(theta, dtype=torch.float)
    if param.batchmode:
        theta[:] = theta[0]
    grid = F.affine_grid(theta, x.shape, align_corners=True).to(x.device)
    return F.grid_sample(x, grid, align_corners=True)


def rand_rotate(x, param):
    ratio = param.ratio_rotate
    set_seed_DiffAug(param)
    theta = (torch.rand(x.shape[0]) - 0.5) * 2 * ratio / 180 * float(np.pi)
    theta = [[[torch.cos(theta[i]), torch.sin(-theta[i]), 0],
              [torch.sin(theta[i]), torch.cos(theta[i]), 0]] for i in range(x.shape[0])]
    theta = torch.tensor(theta, dtype=torch.float)
    if param.batchmode:
        theta[:] = theta[0]
    grid = F.affine_grid(theta, x.shape, align_corners=True).to(x.device)
    return F.grid_sample(x, grid, align_corners=True)


def rand_flip(x, param):
    prob = param.prob_flip
    set_seed_DiffAug(param)
    randf = torch.rand(x.size(0), 1, 1, 1, device=x.device)
    if param.batchmode:
        randf[:] = randf[0]
    return torch.where(randf < prob, x.flip(3), x)


def rand_brightness(x, param):
    ratio = param.brightness
    set_seed_DiffAug(param)
    randb = torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)
    if param.batchmode:
        randb[:] = randb[0]
    return x + (randb - 0.5)*ratio


def rand_saturation(x, param):
    ratio = param.saturation
    x_mean = x.mean(dim=1, keepdim=True)
    set_seed_DiffAug(param)
    rands = torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)
    if param.batchmode:
        rands[:] = rands[0]
    return (x - x_mean) * (rands * ratio) + x_mean


def rand_contrast(x, param):
    ratio = param.contrast
    x_mean = x.mean(dim=[1, 2, 3], keepdim=True)
    set_seed_DiffAug(param)
    randc = torch.rand(x.size(0), 1, 1, 1, dtype=x.dtype, device=x.device)
    if param.batchmode:
        randc[:] = randc[0]
    return (x - x_mean) * (randc + ratio) + x_mean


def rand_crop(x, param):
    ratio = param.ratio_crop_pad
    shift_x, shift_y = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    set_seed_DiffAug(param)
    translation_x = torch.randint(-shift_x, shift_x + 1, size=[x.size(0), 1, 1], device=x.device)
    set_seed_DiffAug(param)
    translation_y = torch.randint(-shift_y, shift_y + 1, size=[x.size(0), 1, 1], device=x.device)
    if param.batchmode:
        translation_x[:] = translation_x[0]
        translation_y[:] = translation_y[0]
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(x.size(2), dtype=torch.long, device=x.device),
        torch.arange(x.size(3), dtype=torch.long, device=x.device),
    )
    grid_x = torch.clamp(grid_x + translation_x + 1, 0, x.size(2) + 1)
    grid_y = torch.clamp(grid_y + translation_y + 1, 0, x.size(3) + 1)
    x_pad = F.pad(x, [1, 1, 1, 1, 0, 0, 0, 0])
    return x_pad.permute(0, 2, 3, 1).contiguous()[grid_batch, grid_x, grid_y].permute(0, 3, 1, 2)


def rand_cutout(x, param):
    ratio = param.ratio_cutout
    cutout_size = int(x.size(2) * ratio + 0.5), int(x.size(3) * ratio + 0.5)
    set_seed_DiffAug(param)
    offset_x = torch.randint(0, x.size(2) + (1 - cutout_size[0] % 2), size=[x.size(0), 1, 1], device=x.device)
    set_seed_DiffAug(param)
    offset_y = torch.randint(0, x.size(3) + (1 - cutout_size[1] % 2), size=[x.size(0), 1, 1], device=x.device)
    if param.batchmode:
        offset_x[:] = offset_x[0]
        offset_y[:] = offset_y[0]
    grid_batch, grid_x, grid_y = torch.meshgrid(
        torch.arange(x.size(0), dtype=torch.long, device=x.device),
        torch.arange(cutout_size[0], dtype=torch.long, device=x.device),
        torch.arange(cutout_size[1], dtype=torch.long, device=x.device),
    )
    grid_x = torch.clamp(grid_x + offset_x - cutout_size[0] // 2, min=0, max=x.size(2) - 1)
    grid_y = torch.clamp(grid_y + offset_y - cutout_size[1] // 2, min=0, max=x.size(3) - 1)
    mask = torch.ones(x.size(0), x.size(2), x.size(3), dtype=x.dtype, device=x.device)
    mask[grid_batch, grid_x, grid_y] = 0
    return x * mask.unsqueeze(1)


AUGMENT_FNS = {
    'color': [rand_brightness, rand_saturation, rand_contrast],
    'crop': [rand_crop],
    'cutout': [rand_cutout],
    'flip': [rand_flip],
    'scale': [rand_scale],
    'rotate': [rand_rotate],
}

# --- end of reference ----------------------------------------------------------------------------


def normalised(x: torch.Tensor) -> torch.Tensor:
    return (x - MEAN) / STD


def pixels(z: torch.Tensor) -> torch.Tensor:
    return z * STD + MEAN


def images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(autouse=True)
def quiet_meshgrid():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the reference's meshgrid without indexing=
        yield


@pytest.mark.parametrize("size, seed", [(16, 3), (15, 11), (32, 2024)])
def test_mode_m_equals_the_reference_for_the_same_seed(size, seed):
    x = images(8, size, seed)
    param = ParamDiffAug()
    param.aug_mode = "M"
    torch.manual_seed(seed)
    expected = pixels(DiffAugment(normalised(x), STRATEGY, param=param))
    got = diff_augment(x, sample_diffaug(len(x), size, "M", torch.Generator().manual_seed(seed)))
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=0)
    assert not torch.allclose(got, x, atol=1e-2), "the augmentation changed nothing"


def test_mode_s_gives_each_image_the_reference_transform_it_drew():
    """Mode S: each image gets exactly one group, with the magnitudes the reference would draw for
    that group at the same place in the stream (the groups before it consume theirs on a dummy)."""
    n, size, seed = 48, 16, 7
    x = images(n, size, seed)
    params = sample_diffaug(n, size, "S", torch.Generator().manual_seed(seed))
    got = diff_augment(x, params)
    assert len(set(params.choice.tolist())) == len(GROUPS)
    param = ParamDiffAug()
    param.batchmode, param.latestseed = False, -1
    for k, group in enumerate(GROUPS):
        torch.manual_seed(seed)
        torch.randint(0, len(GROUPS), (n,))  # the per-image choice, drawn first
        for before in GROUPS[:k]:
            for f in AUGMENT_FNS[before]:
                f(torch.zeros(n, 3, size, size), param)
        z = normalised(x)
        for f in AUGMENT_FNS[group]:
            z = f(z, param)
        mine = params.choice == k
        torch.testing.assert_close(got[mine], pixels(z)[mine], atol=2e-5, rtol=0, msg=group)


def test_colour_magnitudes_in_pixel_units_by_hand():
    """Brightness u = 1 (the top of its range) with neutral saturation and contrast (u = 0.5): every
    pixel moves by +0.5 normalised units, i.e. +0.5·std of its channel."""
    x = torch.full((1, 3, 4, 4), 0.3)
    half = torch.tensor([0.5])
    params = DiffAugParams(torch.tensor([GROUPS.index("color")]), half, torch.tensor([1.0]), half, half,
                           *(torch.zeros(1, dtype=torch.int64),) * 2, half, half, half,
                           *(torch.zeros(1, dtype=torch.int64),) * 2)
    torch.testing.assert_close(diff_augment(x, params), x + 0.5 * STD.expand(1, 3, 4, 4), atol=1e-6, rtol=0)


def test_crop_and_cutout_fill_with_the_mean_colour_by_hand():
    x = torch.arange(16.0).view(1, 1, 4, 4).expand(1, 3, 4, 4) / 16
    zero = torch.zeros(1, dtype=torch.int64)
    half = torch.tensor([0.5])

    def view(group: str, **ints) -> DiffAugParams:
        values = {**dict(shift_y=zero, shift_x=zero, cutout_y=zero, cutout_x=zero), **ints}
        return DiffAugParams(torch.tensor([GROUPS.index(group)]), half, half, half, half, values["shift_y"],
                             values["shift_x"], half, half, half, values["cutout_y"], values["cutout_x"])

    shifted = diff_augment(x, view("crop", shift_y=torch.tensor([1])))  # row i shows row i + 1
    assert torch.equal(shifted[0, :, :3], x[0, :, 1:])
    assert torch.allclose(shifted[0, :, 3], MEAN.view(3, 1).expand(3, 4))
    holed = diff_augment(x, view("cutout", cutout_y=torch.tensor([0]), cutout_x=torch.tensor([3])))
    hole = torch.zeros(4, 4, dtype=torch.bool)
    hole[0, 2:4] = True  # a 2x2 square from (0 - 1, 3 - 1), clipped to the image
    assert torch.allclose(holed[0][:, hole], MEAN.view(3, 1).expand(3, 2))
    assert torch.equal(holed[0][:, ~hole], x[0][:, ~hole])


@pytest.mark.parametrize("mode", ["S", "M"])
def test_views_replay_exactly_whatever_the_batch(mode):
    """The teacher cache relies on it: an image's pixels under a view do not depend on its batch."""
    x = images(20, 16)
    first, again = (make_diffaug_views(20, 16, 3, seed=5, mode=mode) for _ in range(2))
    assert all(torch.equal(a, b) for u, v in zip(first, again) for a, b in zip(u.key_tensors(), v.key_tensors()))
    assert not torch.equal(first[0].rotate, first[1].rotate)
    whole = diff_augment(x, first[1])
    index = torch.tensor([17, 2, 9, 4])
    torch.testing.assert_close(diff_augment(x[index], first[1].select(index)), whole[index], atol=1e-6, rtol=0)
    assert whole.shape == x.shape and whole.dtype == torch.float32


def test_geometric_groups_stay_within_the_pixels_and_fill_and_gradients_flow():
    x = images(12, 16).requires_grad_()
    params = sample_diffaug(12, 16, "S", torch.Generator().manual_seed(1))
    params.choice = torch.tensor([GROUPS.index(g) for g in ("flip", "crop", "rotate", "scale", "cutout")] * 2 + [0, 2])
    out = diff_augment(x, params)
    assert out.min() >= 0 and out.max() <= 1  # bilinear mixes of pixels in [0, 1] and the mean colour
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="float batch"):
        diff_augment((x.detach() * 255).to(torch.uint8), params)
