"""Readers for the on-disk formats of the datasets ``dapt.data`` serves.

Each reader returns plain arrays or an index of image files; ``dapt.data`` turns them into an
``ImageSet``. Folders of JPEGs are decoded with PIL exactly once per (dataset, image size, file
list) and cached as a ``.pt`` of uint8 tensors, because decoding thousands of JPEGs on a
2-core CPU takes minutes while loading the cache takes a second.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from .errors import DaptError
from .runs import atomic_path

# Bump when the decoding below changes, so that old caches are not mistaken for new ones.
_CACHE_FORMAT = 1
_IDX_UBYTE = 0x08


class DatasetMissingError(DaptError):
    """The files of a dataset are not where they are expected; the message names the fix."""


class CorruptImageError(DaptError):
    """An image or data file that cannot be decoded; the message names the file."""


def clean_class_name(raw: str) -> str:
    """``001.Black_footed_Albatross`` → ``Black footed Albatross`` (used in prompts later)."""
    return re.sub(r"^\d+\.", "", raw).replace("_", " ").strip()


def read_idx(path: Path) -> np.ndarray:
    """Read an idx-ubyte file (MNIST format), gzip-compressed when its name ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
        zeros, dtype_code, ndim = int.from_bytes(raw[:2], "big"), raw[2], raw[3]
        if zeros != 0 or dtype_code != _IDX_UBYTE or ndim == 0:
            raise ValueError(f"header {raw[:4].hex()} is not an idx-ubyte header")
        dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return body.reshape(dims).copy()
    except (OSError, ValueError, EOFError, IndexError) as exc:
        raise CorruptImageError(
            f"cannot read idx file {path}: {exc}; delete it and reinstall or re-download the dataset"
        ) from None


class _ArrayUnpickler(pickle.Unpickler):
    """CIFAR batches are pickles; unpickle only plain containers and numpy arrays, never arbitrary code."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a CIFAR batch)")
        return super().find_class(module, name)


def read_pickle_dict(path: Path) -> dict[str, object]:
    """Load one CIFAR pickle batch; keys become ``str`` whether the file was pickled by
    Python 2 (the official files) or with ``bytes`` keys by Python 3."""
    try:
        with open(path, "rb") as f:
            entry = _ArrayUnpickler(f, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as exc:
        raise CorruptImageError(f"cannot read CIFAR batch {path}: {exc}; delete the folder and set download: true") from None
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}


def read_cifar(folder: Path, files: list[str], label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate CIFAR batches in torchvision's layout: ``data`` is [N, 3072] uint8 (R, G, B planes)."""
    images, labels = [], []
    for name in files:
        entry = read_pickle_dict(folder / name)
        images.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
        labels.append(np.asarray(entry[label_key], dtype=np.int64))
    return np.concatenate(images), np.concatenate(labels)


FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_FASHION_STEMS = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


def _download(what: str, fetch: Callable[[], object], folder: Path) -> None:
    try:
        fetch()
    except Exception as exc:  # network, checksum and archive errors all mean the same to the user
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise DatasetMissingError(f"downloading {what} failed ({first_line}); check the network or put the files in {folder}") from None


def fashion_mnist_arrays(root: Path, download: bool) -> list[np.ndarray]:
    """``[train_x, train_y, test_x, test_y]`` from the Debian package's folder (``DAPT_FASHION_MNIST_DIR``
    overrides it), else ``<root>/fashion_mnist`` or torchvision's ``FashionMNIST/raw`` under it."""
    system_dir = Path(os.environ.get("DAPT_FASHION_MNIST_DIR", FASHION_MNIST_DEBIAN_DIR))
    own_dir = root / "fashion_mnist"

    def find() -> list[Path] | None:
        for folder in (system_dir, own_dir, own_dir / "FashionMNIST" / "raw"):
            paths = [next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None) for s in _FASHION_STEMS]
            if all(paths):
                return paths
        return None

    if (paths := find()) is None and download:
        from torchvision.datasets import FashionMNIST

        _download("Fashion-MNIST", lambda: FashionMNIST(str(own_dir), train=True, download=True), own_dir)
        paths = find()
    if paths is None:
        raise DatasetMissingError(
            f"Fashion-MNIST not found in {system_dir} or {own_dir}; run `apt-get install dataset-fashion-mnist`, "
            "or set download: true in the params"
        )
    return [read_idx(p) for p in paths]


_CIFAR_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names", "labels", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names", "fine_labels", ["train"], ["test"]),
}


def cifar_arrays(name: str, root: Path, download: bool) -> tuple[list[str], tuple, tuple]:
    """``(classes, (train_x, train_y), (test_x, test_y))`` from torchvision's CIFAR folder under ``root``."""
    folder_name, meta, names_key, labels_key, train_files, test_files = _CIFAR_LAYOUTS[name]
    folder = root / folder_name
    if download and not (folder / meta).is_file():
        from torchvision.datasets import CIFAR10, CIFAR100

        dataset_class = CIFAR10 if name == "cifar10" else CIFAR100
        _download(name, lambda: dataset_class(str(root), train=True, download=True), folder)
    if not (folder / meta).is_file():
        raise DatasetMissingError(f"{name} not found: expected the folder {folder}; set download: true in the params")
    # Read the pickles directly: torchvision's CIFAR classes insist on md5 checks even without downloading.
    classes = [n.decode() if isinstance(n, bytes) else n for n in read_pickle_dict(folder / meta)[names_key]]
    return classes, read_cifar(folder, train_files, labels_key), read_cifar(folder, test_files, labels_key)


@dataclass
class FolderIndex:
    """Image files of a folder dataset: paths relative to ``image_dir`` with class indices."""

    image_dir: Path
    classes: list[str]  # raw folder names, in label order
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


def _read_lines(path: Path, missing_fix: str) -> list[str]:
    if not path.is_file():
        raise DatasetMissingError(f"{path} not found; {missing_fix}")
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def _labelled(lines: list[str], classes: list[str]) -> list[tuple[str, int]]:
    """Split-file lines ``<class>/<file>`` with the index of their class."""
    label = {c: i for i, c in enumerate(classes)}
    return [(line, label[line.split("/")[0]]) for line in lines]


def dtd_index(root: Path, download: bool) -> FolderIndex:
    """DTD (torchvision layout ``dtd/dtd``), partition 1: train = train1 + val1, test = test1."""
    folder = root / "dtd" / "dtd"
    if download and not (folder / "labels").is_dir():
        from torchvision.datasets import DTD

        _download("dtd", lambda: DTD(str(root), download=True), folder)
    fix = f"put the official DTD release (images/, labels/) in {folder} or set download: true in the params"
    splits = {s: _read_lines(folder / "labels" / f"{s}1.txt", fix) for s in ("train", "val", "test")}
    classes = sorted({line.split("/")[0] for lines in splits.values() for line in lines})
    return FolderIndex(folder / "images", classes, _labelled(splits["train"] + splits["val"], classes), _labelled(splits["test"], classes))


def caltech101_index(root: Path, download: bool, train_per_class: int = 30, test_per_class: int = 50) -> FolderIndex:
    """Caltech-101 has no official split: the usual protocol of 30 training images per class and
    up to 50 of the rest for testing, drawn with a fixed seed (0) so every run shares one test set.
    A class with at most 30 images keeps one image for testing."""
    folder = root / "caltech101" / "101_ObjectCategories"
    if download and not folder.is_dir():
        from torchvision.datasets import Caltech101

        _download("caltech101", lambda: Caltech101(str(root), download=True), folder)
    if not folder.is_dir():
        raise DatasetMissingError(f"{folder} not found; unpack 101_ObjectCategories into {folder.parent} or set download: true in the params")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "BACKGROUND_Google")
    generator = torch.Generator().manual_seed(0)
    train, test = [], []
    for label, name in enumerate(classes):
        files = sorted(p.name for p in (folder / name).iterdir() if p.is_file())
        order = torch.randperm(len(files), generator=generator).tolist()
        n_train = min(train_per_class, len(files) - 1)
        train += [(f"{name}/{files[i]}", label) for i in sorted(order[:n_train])]
        test += [(f"{name}/{files[i]}", label) for i in sorted(order[n_train : n_train + test_per_class])]
    return FolderIndex(folder, classes, train, test)


def _manual_fix(name: str, download: bool, fix: str) -> str:
    return f"{name} cannot be downloaded automatically: {fix}" if download else fix


def mit_indoor_index(root: Path, download: bool) -> FolderIndex:
    """MIT Indoor-67: ``Images/<class>/*.jpg`` with the official ``TrainImages.txt``/``TestImages.txt``."""
    folder = root / "mit_indoor"
    fix = _manual_fix("mit_indoor", download, f"unpack indoorCVPR_09 (Images/) with TrainImages.txt and TestImages.txt into {folder}")
    train, test = _read_lines(folder / "TrainImages.txt", fix), _read_lines(folder / "TestImages.txt", fix)
    classes = sorted({line.split("/")[0] for line in train + test})
    return FolderIndex(folder / "Images", classes, _labelled(train, classes), _labelled(test, classes))


def cub_index(root: Path, download: bool) -> FolderIndex:
    """CUB-200-2011 with its official train/test split (``is_training_image`` 1 = train)."""
    folder = root / "CUB_200_2011"
    fix = _manual_fix("cub_2011", download, f"unpack CUB_200_2011.tgz so that {folder}/images.txt exists")

    def table(name: str) -> dict[int, str]:
        try:
            return {int(k): v.strip() for k, v in (line.split(" ", 1) for line in _read_lines(folder / name, fix))}
        except ValueError:
            raise CorruptImageError(f"{folder / name} has a line that is not '<id> <value>'; restore the official file") from None

    images, labels, is_train = table("images.txt"), table("image_class_labels.txt"), table("train_test_split.txt")
    classes_by_id = table("classes.txt")
    train, test = [], []
    for image_id in sorted(images):
        (train if is_train[image_id] == "1" else test).append((images[image_id], int(labels[image_id]) - 1))
    return FolderIndex(folder / "images", [classes_by_id[k] for k in sorted(classes_by_id)], train, test)


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
    """Cache file named by dataset, size and a short hash of the file list and labels."""
    digest = hashlib.sha256(repr((_CACHE_FORMAT, index.classes, index.train, index.test)).encode()).hexdigest()
    return cache_dir / f"{name}-{size}px-{digest[:12]}.pt"


def _load_cache(path: Path, index: FolderIndex, size: int) -> dict[str, torch.Tensor] | None:
    try:
        cached = torch.load(path, weights_only=True)
        labels_match = all(
            torch.equal(cached[f"{split}_y"], _labels(entries))
            and cached[f"{split}_x"].shape == (len(entries), 3, size, size) and cached[f"{split}_x"].dtype == torch.uint8
            for split, entries in (("train", index.train), ("test", index.test))
        )
        if labels_match:
            return cached
    except Exception:  # any unreadable cache (truncated, foreign, old format) is simply rebuilt
        pass
    return None


def load_folder_dataset(name: str, index: FolderIndex, size: int, cache_dir: Path) -> dict[str, torch.Tensor]:
    """Decoded ``train_x/train_y/test_x/test_y`` of a folder dataset, from the cache when it is valid."""
    path = cache_path(cache_dir, name, size, index)
    if path.is_file() and (cached := _load_cache(path, index, size)) is not None:
        return cached
    if not index.image_dir.is_dir():
        raise DatasetMissingError(f"image folder {index.image_dir} not found; restore the dataset folder")
    train_x, train_y = _decode_all(index.image_dir, index.train, size)
    test_x, test_y = _decode_all(index.image_dir, index.test, size)
    tensors = {"train_x": train_x, "train_y": train_y, "test_x": test_x, "test_y": test_y}
    with atomic_path(path) as tmp:
        torch.save(tensors, tmp)
    return tensors
