"""Readers for the on-disk formats of the datasets ``dapt.data`` serves.

Each reader returns plain arrays or a ``FolderIndex`` of image files (decoded and cached by
``dapt.data.imagecache``); ``dapt.data`` turns them into an ``ImageSet``.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dapt.core.errors import CorruptImageError, DatasetMissingError

_IDX_UBYTE = 0x08


@dataclass
class FolderIndex:
    """Image files of a folder dataset: paths relative to ``image_dir`` with class indices."""

    image_dir: Path
    classes: list[str]  # raw folder names, in label order
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    val: list[tuple[str, int]] | None = None  # a validation split of the dataset's own (a user's val/ folder)
    fingerprint: str = ""  # the files' sizes and mtimes, for a folder its user edits (image_folder_index)

    def splits(self) -> dict[str, list[tuple[str, int]]]:
        """``train``, ``test`` and, when the dataset has one, ``val``: the entries of each split."""
        return {"train": self.train, "test": self.test, **({"val": self.val} if self.val is not None else {})}

    def identity(self) -> tuple:
        """What the decoded images depend on besides their size. ``val`` and ``fingerprint`` join only when set,
        so that the caches of the official layouts, written before they existed, keep their names."""
        files = (self.classes, self.train, self.test)
        return files if self.val is None and not self.fingerprint else (*files, self.val, self.fingerprint)


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


def fashion_mnist_files(root: Path) -> list[Path]:
    """The four idx files, from the Debian package's folder (``DAPT_FASHION_MNIST_DIR`` overrides it),
    else ``<root>/fashion_mnist`` or torchvision's ``FashionMNIST/raw`` under it; DatasetMissingError if absent."""
    system_dir = Path(os.environ.get("DAPT_FASHION_MNIST_DIR", FASHION_MNIST_DEBIAN_DIR))
    own_dir = root / "fashion_mnist"
    for folder in (system_dir, own_dir, own_dir / "FashionMNIST" / "raw"):
        paths = [next((p for p in (folder / f"{s}.gz", folder / s) if p.is_file()), None) for s in _FASHION_STEMS]
        if all(paths):
            return paths
    raise DatasetMissingError(
        f"Fashion-MNIST not found in {system_dir} or {own_dir}; run `apt-get install dataset-fashion-mnist`, "
        "or set download: true in the params"
    )


def fashion_mnist_arrays(root: Path, download: bool) -> list[np.ndarray]:
    """``[train_x, train_y, test_x, test_y]`` from the files ``fashion_mnist_files`` finds (downloaded if asked)."""
    try:
        paths = fashion_mnist_files(root)
    except DatasetMissingError:
        if not download:
            raise
        from torchvision.datasets import FashionMNIST

        own_dir = root / "fashion_mnist"
        _download("Fashion-MNIST", lambda: FashionMNIST(str(own_dir), train=True, download=True), own_dir)
        paths = fashion_mnist_files(root)
    return [read_idx(p) for p in paths]


_CIFAR_LAYOUTS = {
    "cifar10": ("cifar-10-batches-py", "batches.meta", "label_names", "labels", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"]),
    "cifar100": ("cifar-100-python", "meta", "fine_label_names", "fine_labels", ["train"], ["test"]),
}


def cifar_folder(name: str, root: Path) -> Path:
    """torchvision's CIFAR folder under ``root`` with every batch file present; DatasetMissingError if not."""
    folder_name, meta, _, _, train_files, test_files = _CIFAR_LAYOUTS[name]
    folder = root / folder_name
    if not (folder / meta).is_file():
        raise DatasetMissingError(f"{name} not found: expected the folder {folder}; set download: true in the params")
    for file in train_files + test_files:
        if not (folder / file).is_file():
            raise DatasetMissingError(f"{name}: {folder / file} is missing; restore it, or delete {folder} and set "
                                      f"download: true in the params")
    return folder


def cifar_arrays(name: str, root: Path, download: bool) -> tuple[list[str], tuple, tuple]:
    """``(classes, (train_x, train_y), (test_x, test_y))`` from torchvision's CIFAR folder under ``root``."""
    folder_name, meta, names_key, labels_key, train_files, test_files = _CIFAR_LAYOUTS[name]
    if download and not (root / folder_name / meta).is_file():
        from torchvision.datasets import CIFAR10, CIFAR100

        dataset_class = CIFAR10 if name == "cifar10" else CIFAR100
        _download(name, lambda: dataset_class(str(root), train=True, download=True), root / folder_name)
    folder = cifar_folder(name, root)
    # Read the pickles directly: torchvision's CIFAR classes insist on md5 checks even without downloading.
    classes = [n.decode() if isinstance(n, bytes) else n for n in read_pickle_dict(folder / meta)[names_key]]
    return classes, read_cifar(folder, train_files, labels_key), read_cifar(folder, test_files, labels_key)


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
    # torch's seeded permutation defines the split every run shares; imported here so that the other
    # formats, which `dapt run --dry-run` reads to find missing datasets, stay torch-free
    import torch

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


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
FOLDER_LAYOUT = "train/<class>/<image> and test/<class>/<image> (JPEG or PNG; optionally val/<class>/<image>)"


def _split_files(folder: Path, split: str) -> tuple[dict[str, list[str]], list[str]]:
    """Class folder name → its JPEG/PNG files (paths relative to ``folder``, sorted, sub-folders included) in
    ``folder/split``, and the other files found there. Hidden files (``.DS_Store``) are the system's, not
    the user's, and are passed over without a word."""
    per_class: dict[str, list[str]] = {}
    others: list[str] = []
    for entry in sorted((folder / split).iterdir()):
        if entry.name.startswith("."):
            continue
        if not entry.is_dir():
            others.append(entry.relative_to(folder).as_posix())  # a file outside any class folder has no label
            continue
        files = [p.relative_to(folder).as_posix() for p in sorted(entry.rglob("*"))
                 if p.is_file() and not p.name.startswith(".")]
        per_class[entry.name] = [f for f in files if Path(f).suffix.lower() in IMAGE_SUFFIXES]
        others += [f for f in files if Path(f).suffix.lower() not in IMAGE_SUFFIXES]
    return per_class, others


def _fingerprint(folder: Path, paths: list[str]) -> str:
    """A digest of the folder's place and each image's path, size and mtime: changes when a file is edited,
    added, removed or renamed, so the image cache decodes an edited folder again."""
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in paths:
        stat = (folder / path).stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def image_folder_index(folder: Path) -> FolderIndex:
    """A user's own images in torchvision's ``ImageFolder`` layout (``FOLDER_LAYOUT``); classes sorted by folder
    name, a ``val/`` folder the validation split. Every split must hold the same class folders, each with an
    image; a layout that does not is one ``DatasetMissingError`` line. Files that are not JPEG or PNG images
    in a class folder are skipped, with one warning line that counts them."""
    if not folder.is_dir():
        raise DatasetMissingError(f"folder {folder} not found; set folder: to a folder holding {FOLDER_LAYOUT}")
    splits, skipped = {}, []
    for split in ("train", "test", "val"):
        if (folder / split).is_dir():
            splits[split], others = _split_files(folder, split)
            skipped += others
        elif split != "val":
            raise DatasetMissingError(f"folder {folder} has no {split}/ folder; it must hold {FOLDER_LAYOUT}")
    classes = sorted(splits["train"])
    if len(classes) < 2:
        raise DatasetMissingError(f"folder {folder}: train/ holds {len(classes)} class folder(s), a classifier "
                                  f"needs at least 2; it must hold {FOLDER_LAYOUT}")
    for split, per_class in splits.items():
        for name in sorted(set(classes) ^ set(per_class)):
            has, lacks = ("train", split) if name in classes else (split, "train")
            raise DatasetMissingError(f"folder {folder}: class {name!r} is in {has}/ but not in {lacks}/; every "
                                      f"split needs the same class folders")
        for name in classes:
            if not per_class[name]:
                raise DatasetMissingError(f"folder {folder}: class {name!r} has no JPEG or PNG image in {split}/; "
                                          f"add images or remove the class folder from every split")
    if skipped:
        print(f"warning: folder {folder}: skipped {len(skipped)} file(s) that are not JPEG or PNG images in a class "
              f"folder (e.g. {skipped[0]})", file=sys.stderr)
    labelled = {split: [(path, label) for label, name in enumerate(classes) for path in per_class[name]]
                for split, per_class in splits.items()}
    paths = [path for entries in labelled.values() for path, _ in entries]
    return FolderIndex(folder, classes, labelled["train"], labelled["test"], labelled.get("val"),
                       _fingerprint(folder, paths))
