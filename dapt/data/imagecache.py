"""Folders of images decoded once and cached: JPEG decoding on a 2-core CPU takes minutes,
loading the cached uint8 tensors a second.

A folder dataset is decoded with PIL exactly once per (dataset, image size, file list; for a user's own
folder also the files' sizes and mtimes) and cached as a ``.pt`` of uint8 tensors, written atomically
and loaded with ``weights_only``.
"""
from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dapt.core.errors import CorruptImageError, DatasetMissingError
from dapt.core.files import atomic_path
from dapt.data.formats import FolderIndex

# Bump when the decoding below changes, so that old caches are not mistaken for new ones.
_CACHE_FORMAT = 1


def decode_image(path: Path, size: int) -> np.ndarray:
    """Decode to RGB, resize the shorter side to ``size`` (bilinear), centre-crop to a square.

    ``draft`` lets the JPEG decoder downscale by a power of two on the fly, never below ``size``.
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))
            img = img.convert("RGB")
            scale = size / min(img.size)
            w, h = max(size, round(img.width * scale)), max(size, round(img.height * scale))
            img = img.resize((w, h), Image.Resampling.BILINEAR)
            left, top = (w - size) // 2, (h - size) // 2
            img = img.crop((left, top, left + size, top + size))
            return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)
    except FileNotFoundError:
        raise DatasetMissingError(f"image {path} listed in the split files is missing; restore the dataset folder") from None
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(f"cannot decode image {path}: {exc}; replace or re-download that file") from None


def _decode_all(image_dir: Path, entries: list[tuple[str, int]], size: int) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.empty(len(entries), 3, size, size, dtype=torch.uint8)
    target = images.numpy()  # shares memory: filled in place, no second copy of the dataset

    def decode_into(i: int) -> None:
        target[i] = decode_image(image_dir / entries[i][0], size)

    # PIL releases the GIL while decoding, so threads use both cores without pickling images.
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        list(pool.map(decode_into, range(len(entries))))
    finally:
        pool.shutdown(cancel_futures=True)  # a corrupt image stops the work at once
    return images, _labels(entries)


def _labels(entries: list[tuple[str, int]]) -> torch.Tensor:
    return torch.tensor([label for _, label in entries], dtype=torch.int64)


def cache_path(cache_dir: Path, name: str, size: int, index: FolderIndex) -> Path:
    """Cache file named by dataset, size and a short hash of the file list and labels (``FolderIndex.identity``)."""
    digest = hashlib.sha256(repr((_CACHE_FORMAT, *index.identity())).encode()).hexdigest()
    return cache_dir / f"{name}-{size}px-{digest[:12]}.pt"


def _load_cache(path: Path, index: FolderIndex, size: int) -> dict[str, torch.Tensor] | None:
    try:
        cached = torch.load(path, weights_only=True)
        labels_match = all(
            torch.equal(cached[f"{split}_y"], _labels(entries))
            and cached[f"{split}_x"].shape == (len(entries), 3, size, size) and cached[f"{split}_x"].dtype == torch.uint8
            for split, entries in index.splits().items()
        )
        if labels_match:
            return cached
    except Exception:  # any unreadable cache (truncated, foreign, old format) is simply rebuilt
        pass
    return None


def load_folder_dataset(name: str, index: FolderIndex, size: int, cache_dir: Path) -> dict[str, torch.Tensor]:
    """Decoded ``train_x/train_y/test_x/test_y`` (and ``val_x/val_y`` when the index has a val split) of a folder
    dataset, from the cache when it is valid."""
    path = cache_path(cache_dir, name, size, index)
    if path.is_file() and (cached := _load_cache(path, index, size)) is not None:
        return cached
    if not index.image_dir.is_dir():
        raise DatasetMissingError(f"image folder {index.image_dir} not found; restore the dataset folder")
    tensors = {}
    for split, entries in index.splits().items():
        tensors[f"{split}_x"], tensors[f"{split}_y"] = _decode_all(index.image_dir, entries, size)
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)
    return tensors
