"""Every dataset as an ``ImageSet``: uint8 tensors in memory at one image size, its loaders, subsets
and input normalisation.

Every dataset ends as ``ImageSet``: uint8 [N, 3, S, S] at the working image size ``S``, so the
training loop never waits on PIL. A training run's ``ImageSet`` also holds its validation images,
drawn from the training split and never from the test set (``validation_index``). On-disk formats live in ``formats``, decoded folder datasets
in ``imagecache``, augmented views and their replay in ``augment``. The loaders here are the
implementations the catalog ``dapt.data.DATASETS`` declares (``load_<name>``).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dapt.core.errors import DaptError
from dapt.data import DATASETS, OWN_FOLDER, files_root, formats, imagecache

# Output values per interpolate call: bounds the float copy to 256 MB (CIFAR at 224 px would need
# 36 GB at once), while chunks stay large because small interpolate calls are twice as slow.
_RESIZE_BUDGET = 2**26


@dataclass
class ImageSet:
    """A labelled image dataset held in memory at one square image size."""

    name: str
    classes: list[str]
    train_x: torch.Tensor  # uint8 [N, 3, S, S]
    train_y: torch.Tensor  # int64 [N]
    test_x: torch.Tensor  # uint8 [M, 3, S, S]
    test_y: torch.Tensor  # int64 [M]
    image_size: int
    n_synthetic: int = 0  # the last n_synthetic training images are generated ones (dapt.data.synthetic)
    # int64 [n_real]: each real training image's index in the dataset's whole training split (load_dataset
    # sets it; None when unknown), so a set drawn outside a subset (generator holdout) can be checked against it
    train_index: torch.Tensor | None = None
    # The validation images (load_dataset with ``validation``; None without): what every per-epoch number,
    # best.pt and every selection read, so the test set is read once, by the final evaluation. uint8 / int64
    # like train_x / train_y; val_index holds their indices in the training split, val_source where they come
    # from (VALIDATION_OUTSIDE or VALIDATION_SPLIT).
    val_x: torch.Tensor | None = None
    val_y: torch.Tensor | None = None
    val_index: torch.Tensor | None = None
    val_source: str | None = None
    # a user's folder's FolderIndex.fingerprint (its files' sizes and mtimes), "" for the official datasets, whose
    # files do not change: what is made from the images and kept (a generate run's ddpm and images) is made again
    # when it changes
    fingerprint: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def n_real(self) -> int:
        """Training images that are real: the first ones, before the ``n_synthetic`` generated ones."""
        return len(self.train_y) - self.n_synthetic


def resize_uint8(x: torch.Tensor, size: int) -> torch.Tensor:
    """Resize uint8 [N, C, H, W] to [N, 3, size, size]: bilinear (antialiased when shrinking), grey → 3 channels."""
    if x.shape[-1] != size or x.shape[-2] != size:
        shrink = size < min(x.shape[-2:])
        chunks = [
            F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)
            .round_().clamp_(0, 255).to(torch.uint8)
            for chunk in x.split(max(1, _RESIZE_BUDGET // (x.shape[1] * size * size)))
        ]
        x = torch.cat(chunks) if chunks else x.new_empty(0, x.shape[1], size, size)
    return x.expand(-1, 3, -1, -1).contiguous() if x.shape[1] == 1 else x.contiguous()


def _in_memory_set(name: str, classes: list[str], size: int, train: tuple, test: tuple) -> ImageSet:
    def as_tensors(images: np.ndarray, labels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.uint8))
        x = x[:, None] if x.ndim == 3 else x
        return resize_uint8(x, size), torch.from_numpy(np.asarray(labels, dtype=np.int64))

    (train_x, train_y), (test_x, test_y) = as_tensors(*train), as_tensors(*test)
    return ImageSet(name, [formats.clean_class_name(c) for c in classes], train_x, train_y, test_x, test_y, size)


def load_fashion_mnist(root: Path, size: int, download: bool, cache_dir: Path) -> ImageSet:
    train_x, train_y, test_x, test_y = formats.fashion_mnist_arrays(root, download)
    return _in_memory_set("fashion_mnist", formats.FASHION_MNIST_CLASSES, size, (train_x, train_y), (test_x, test_y))


def load_digits(root: Path, size: int, download: bool, cache_dir: Path) -> ImageSet:
    from sklearn import datasets
    from sklearn.model_selection import train_test_split

    bunch = datasets.load_digits()
    images = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)
    # The split's seed is fixed, not the run's, so that every run is scored on the same test images.
    train_x, test_x, train_y, test_y = train_test_split(images, bunch.target, test_size=0.2, stratify=bunch.target, random_state=0)
    return _in_memory_set("digits", [str(d) for d in range(10)], size, (train_x, train_y), (test_x, test_y))


def _cifar(name: str, root: Path, size: int, download: bool, cache_dir: Path) -> ImageSet:
    classes, train, test = formats.cifar_arrays(name, root, download)
    return _in_memory_set(name, classes, size, train, test)


def _decoded_set(name: str, index: formats.FolderIndex, size: int, cache_dir: Path) -> ImageSet:
    """The images ``index`` lists, decoded (or read from the cache); its val split, when it has one, as the
    validation images (``VALIDATION_FOLDER``)."""
    t = imagecache.load_folder_dataset(name, index, size, cache_dir)
    classes = [formats.clean_class_name(c) for c in index.classes]
    val = {"val_x": t["val_x"], "val_y": t["val_y"], "val_source": VALIDATION_FOLDER} if "val_x" in t else {}
    return ImageSet(name, classes, t["train_x"], t["train_y"], t["test_x"], t["test_y"], size, **val,
                    fingerprint=index.fingerprint)


def _folder_set(name: str, index_of: Callable[[Path, bool], formats.FolderIndex],
                root: Path, size: int, download: bool, cache_dir: Path) -> ImageSet:
    return _decoded_set(name, index_of(root, download), size, cache_dir)


def load_folder(root: Path, size: int, download: bool, cache_dir: Path) -> ImageSet:
    """A user's own images in ``root``, the run's ``folder`` (``formats.image_folder_index``); nothing downloads."""
    return _decoded_set(OWN_FOLDER, formats.image_folder_index(root), size, cache_dir)


load_cifar10 = partial(_cifar, "cifar10")
load_cifar100 = partial(_cifar, "cifar100")
load_dtd = partial(_folder_set, "dtd", formats.dtd_index)
load_caltech101 = partial(_folder_set, "caltech101", formats.caltech101_index)
load_mit_indoor = partial(_folder_set, "mit_indoor", formats.mit_indoor_index)
load_cub_2011 = partial(_folder_set, "cub_2011", formats.cub_index)


def proportional_quotas(counts: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` split over classes of sizes ``counts`` (each at least 1) in proportion to them: largest-remainder
    quotas, then every class gets at least one (taken from the largest quota); ``len(counts) <= n <= sum``."""
    exact = counts.double() * n / int(counts.sum())
    quota = exact.floor().long()
    remainder_order = torch.argsort(exact - quota, descending=True, stable=True)
    quota[remainder_order[: n - int(quota.sum())]] += 1
    while (quota == 0).any():
        quota[torch.argmax(quota)] -= 1
        quota[torch.nonzero(quota == 0)[0]] += 1
    return quota


def stratified_subset(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``n`` samples drawn per class in proportion to the class sizes.

    Quotas use the largest-remainder method, then every class keeps at least one sample (taken
    from the largest quota). Deterministic for a given ``(labels, n, seed)``.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    present, counts = torch.unique(labels, return_counts=True)
    if n < len(present):
        raise DaptError(f"train_subset={n} is smaller than the {len(present)} classes; set it to at least {len(present)}, or null for all")
    if n >= len(labels):
        return torch.arange(len(labels))
    quota = proportional_quotas(counts, n)
    return sample_per_class(labels, dict(zip(present.tolist(), quota.tolist())), seed)


def subset_of(labels: torch.Tensor, train_subset: int | None, seed: int) -> torch.Tensor:
    """Sorted training-split indices of the subset ``load_dataset(train_subset=..., seed=...)`` keeps."""
    if train_subset is None or train_subset >= len(labels):
        return torch.arange(len(labels))
    return stratified_subset(labels, train_subset, seed)


def sample_per_class(labels: torch.Tensor, quota: dict[int, int], seed: int) -> torch.Tensor:
    """Sorted indices of ``quota[c]`` samples of each class ``c`` (at most all of them), drawn
    without replacement by one seeded generator, classes in the order of ``quota``."""
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, k in quota.items():
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(len(members), generator=generator)[:k]])
    return torch.cat(chosen).sort().values if chosen else torch.zeros(0, dtype=torch.int64)


def class_seed(seed: int, label: int) -> int:
    """The seed of class ``label``'s order of the images outside a subset (``outside_order``): a 32-bit hash
    of (subset seed, label). The "holdout/" prefix keeps the draws generate runs made before it moved here."""
    return int.from_bytes(hashlib.sha256(f"holdout/{seed}/{label}".encode()).digest()[:4], "little")


def outside_order(labels: torch.Tensor, subset: torch.Tensor, seed: int, num_classes: int) -> list[torch.Tensor]:
    """Per class ``c``, the training-split indices of class ``c``'s images outside ``subset``, in the order of
    a permutation seeded by ``class_seed(seed, c)``. Generator holdout takes its images from the front of
    each class's order, the validation set (``validation_index``) from its back: for the same subset and
    seed the two never share an image while they fit in the class."""
    outside = torch.ones(len(labels), dtype=torch.bool)
    outside[subset] = False
    members = [torch.nonzero((labels == c) & outside).flatten() for c in range(num_classes)]
    return [m[torch.randperm(len(m), generator=torch.Generator().manual_seed(class_seed(seed, c)))]
            for c, m in enumerate(members)]


VALIDATION_OUTSIDE = "training images outside train_subset"
VALIDATION_SPLIT = "training images held out of training, stratified"  # each source reads after a count
VALIDATION_FOLDER = "images of the folder's val/"  # a dataset's own validation split: taken whole, never drawn
VALIDATION_FLOOR = 1000  # eval_subset auto: at least this many validation images where the pool holds them
SPLIT_SHARE = 0.1  # eval_subset auto or null without images outside the subset: this share of the training images


def validation_size(eval_subset: int | str | None, pool: int, n_train: int) -> int:
    """How many validation images ``eval_subset`` asks for from ``pool`` training images outside the subset of
    ``n_train``: the int itself, all of them for None, and for ``"auto"`` ``min(pool, max(1000, n_train))``.
    Why auto: evaluating m images costs m forward passes, an epoch about 3·n_train (forward + backward), so
    m <= n_train keeps evaluation under about a third of the epoch; below 1,000 images an accuracy's standard
    error (sqrt(p(1-p)/m), 1.3 points at p = 0.8) would hide the curve's trend."""
    if eval_subset == "auto":
        return min(pool, max(VALIDATION_FLOOR, n_train))
    return pool if eval_subset is None else int(eval_subset)


def validation_index(labels: torch.Tensor, subset: torch.Tensor, eval_subset: int | str | None, seed: int,
                     classes: list[str], dataset: str = "the dataset") -> tuple[torch.Tensor, str]:
    """The validation images of a run that trains on ``subset`` (training-split indices) drawn with ``seed``:
    sorted training-split indices and where they come from, or one ``DaptError`` line.

    When the subset leaves training images outside it (``VALIDATION_OUTSIDE``): ``validation_size`` of them,
    per class in proportion to the classes' outside images (``proportional_quotas``), the last ones of each
    class's ``outside_order``. The training images stay as they are. When it leaves none
    (``VALIDATION_SPLIT``): a stratified split of the subset itself, ``eval_subset`` images or for auto and
    null 10% (at least one per class), which the caller removes from the training images; each class keeps
    at least one training image.
    """
    labels = torch.as_tensor(labels, dtype=torch.int64)
    order = outside_order(labels, subset, seed, len(classes))
    pool = torch.tensor([len(o) for o in order])
    if int(pool.sum()):
        present = torch.nonzero(pool).flatten()
        size = validation_size(eval_subset, int(pool.sum()), len(subset))
        _check_validation_size(size, int(pool.sum()), len(present),
                               f"eval_subset={size} asks for more validation images than the {int(pool.sum()):,} "
                               f"training images of {dataset} outside the train_subset of {len(subset):,}; set "
                               f"eval_subset to at most {int(pool.sum()):,}, auto or null (all of them)")
        quota = proportional_quotas(pool[present], size)
        chosen = [order[c][len(order[c]) - k:] for c, k in zip(present.tolist(), quota.tolist())]
        return torch.cat(chosen).sort().values, VALIDATION_OUTSIDE
    counts = torch.bincount(labels[subset], minlength=len(classes))
    present = torch.nonzero(counts).flatten()
    size = max(len(present), round(SPLIT_SHARE * len(subset))) if eval_subset in (None, "auto") else int(eval_subset)
    where = (f"train_subset leaves no training image of {dataset} outside it, so the validation set is split off "
             f"its {len(subset):,} images")
    most = len(subset) - len(present)  # every class keeps a training image
    _check_validation_size(size, most, len(present), f"eval_subset={size} asks for more validation images than "
                           f"can be held out of training: {where}, and at most {most:,} leave every class one; set "
                           f"eval_subset lower, or auto (10%)")
    quota = proportional_quotas(counts[present], size)
    bare = [c for c, k, n in zip(present.tolist(), quota.tolist(), counts[present].tolist()) if k >= n]
    if bare:
        raise DaptError(f"eval_subset={size} would hold out every training image of class {classes[bare[0]]!r} "
                        f"({int(counts[bare[0]]):,}): {where}, in proportion to the classes; set eval_subset lower, "
                        f"or train_subset below the training split so the validation images come from outside it")
    chosen = sample_per_class(labels[subset], dict(zip(present.tolist(), quota.tolist())), seed)
    return subset[chosen], VALIDATION_SPLIT


def _check_validation_size(size: int, most: int, num_classes: int, too_many: str) -> None:
    """One ``DaptError`` line when a validation set of ``size`` images has fewer than one image per class, or
    more than ``most`` (the message ``too_many``)."""
    if size < num_classes:
        raise DaptError(f"eval_subset={size} is fewer than the {num_classes} classes: the validation set needs one "
                        f"image of each; set eval_subset to at least {num_classes}, or auto")
    if size > most:
        raise DaptError(too_many)


def load_dataset(
    name: str, image_size: int, *, data_root: str | Path = "data", train_subset: int | None = None,
    seed: int = 0, download: bool = False, cache_dir: str | Path | None = None,
    validation: int | str | None | bool = False, folder: str | Path | None = None,
) -> ImageSet:
    """Load a registered dataset at ``image_size``; ``train_subset`` draws a stratified, seeded subset
    of the training set (the test set is never subsetted). ``validation``, a training run's ``eval_subset``
    (an int, ``"auto"`` or None), also draws its validation images with the same seed
    (``validation_index``), unless the dataset has its own (a folder's ``val/``: all of it, whatever
    ``eval_subset``); False, the default, holds none (a generate run, a look at the data). ``folder``: the
    user's images of dataset folder. Decoded folders are cached in ``cache_dir`` (default ``data_root/cache``)."""
    loader = DATASETS.get(name)
    if not isinstance(image_size, int) or image_size < 1:
        raise DaptError(f"image_size={image_size!r} is not a positive integer; set image_size to e.g. 32")
    cache = Path(cache_dir) if cache_dir is not None else Path(data_root) / "cache"
    images = loader(files_root(name, data_root, folder), image_size, download, cache)
    keep = subset_of(images.train_y, train_subset, seed)
    if validation is False:
        images = replace(images, val_x=None, val_y=None, val_source=None)
    elif images.val_x is None:
        val, source = validation_index(images.train_y, keep, validation, seed, images.classes, name)
        if source == VALIDATION_SPLIT:
            keep = keep[~torch.isin(keep, val)]
        images = replace(images, val_x=images.train_x[val], val_y=images.train_y[val], val_index=val,
                         val_source=source)
    if len(keep) == len(images.train_y):
        return replace(images, train_index=keep)
    return replace(images, train_x=images.train_x[keep], train_y=images.train_y[keep], train_index=keep)


def to_float(x_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 pixels → float32 in [0, 1]."""
    return x_uint8.float().div_(255.0)


# (mean, std) per channel applied to [0, 1] inputs. "lite" is EfficientNet-Lite's (x·255 − 127)/128.
NORMALISATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "lite": ((127 / 255,) * 3, (128 / 255,) * 3),
}


def _scheme(scheme: str) -> tuple[torch.Tensor, torch.Tensor]:
    if scheme not in NORMALISATIONS:
        raise DaptError(f"unknown normalisation {scheme!r}; choose one of: {', '.join(NORMALISATIONS)}")
    mean, std = NORMALISATIONS[scheme]
    return torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)


def normalise(x_float01: torch.Tensor, scheme: str) -> torch.Tensor:
    """Standardise a float batch in [0, 1] with a scheme of ``NORMALISATIONS``."""
    mean, std = _scheme(scheme)
    return (x_float01 - mean.to(x_float01)) / std.to(x_float01)


class Normalise(nn.Module):
    """``normalise`` as a model's first layer. The constants are non-persistent buffers: they follow
    ``.to(device)`` but stay out of checkpoints, which the model's constructor already determines."""

    def __init__(self, scheme: str):
        super().__init__()
        mean, std = _scheme(scheme)
        self.scheme = scheme
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"scheme={self.scheme!r}"
