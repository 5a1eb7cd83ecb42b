"""Augmented views: batched crop and flip against a per-sample reference, and bit-for-bit replay."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from dapt.data.augment import apply_augment, augment, make_views, sample_augment


def reference_augment(x: torch.Tensor, params) -> torch.Tensor:
    """Slow per-sample slicing, written independently of the gather in apply_augment."""
    p, s = params.pad, params.image_size
    out = []
    for image, oy, ox, flip in zip(x, params.offset_y.tolist(), params.offset_x.tolist(), params.flip.tolist()):
        crop = F.pad(image, (p, p, p, p))[:, oy : oy + s, ox : ox + s]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_augment_crop_and_flip_by_hand():
    image = torch.arange(1, 10, dtype=torch.uint8).view(1, 1, 3, 3).repeat(2, 3, 1, 1)
    params = sample_augment(2, 3, torch.Generator().manual_seed(0), pad=1)
    params.offset_y[:] = torch.tensor([0, 2])
    params.offset_x[:] = torch.tensor([0, 1])
    params.flip[:] = torch.tensor([False, True])
    out = apply_augment(image, params)
    assert out[0, 0].tolist() == [[0, 0, 0], [0, 1, 2], [0, 4, 5]]  # shifted down-right, zeros enter
    assert out[1, 2].tolist() == [[6, 5, 4], [9, 8, 7], [0, 0, 0]]  # shifted up, then mirrored


def test_augment_matches_reference_and_replays_bit_for_bit():
    x = torch.randint(0, 256, (64, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    params = sample_augment(64, 16, torch.Generator().manual_seed(7), pad=4)
    out = apply_augment(x, params)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, reference_augment(x, params))
    assert 0 < int(params.flip.sum()) < 64 and len(set(params.offset_x.tolist())) > 1
    assert torch.equal(augment(x, torch.Generator().manual_seed(7)), out)
    assert not torch.equal(augment(x, torch.Generator().manual_seed(8)), out)


def test_augment_without_pad_or_flip_is_identity():
    x = torch.randint(0, 256, (5, 3, 8, 8), dtype=torch.uint8)
    assert torch.equal(augment(x, torch.Generator().manual_seed(0), pad=0, flip=False), x)


def test_views_replay_the_same_pixels():
    a = make_views(50, 32, 2, seed=1, augment=True)
    b = make_views(50, 32, 2, seed=1, augment=True)
    assert all(torch.equal(u.offset_x, v.offset_x) and torch.equal(u.flip, v.flip) for u, v in zip(a, b))
    assert not torch.equal(a[0].offset_x, a[1].offset_x), "two views of one seed must differ"
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    identities = make_views(4, 32, 3, seed=1, augment=False)
    assert len(identities) == 3 and all(torch.equal(apply_augment(x, identity), x) for identity in identities)


def test_a_view_is_the_same_whatever_the_number_of_views():
    """A run of more epochs extends a shorter run's views, so their teacher caches share those views."""
    short, long = make_views(30, 16, 2, seed=3, augment=True), make_views(30, 16, 9, seed=3, augment=True)
    assert [torch.equal(long[v].offset_y, short[v].offset_y) and torch.equal(long[v].flip, short[v].flip)
            for v in range(2)] == [True, True]
    assert len(long) == 9 and not torch.equal(long[8].offset_y, long[1].offset_y)
    with pytest.raises(IndexError):
        short[2]
