"""Datasets: the torch-free catalog ``DATASETS`` here, the tensors in the modules.

``DATASETS`` names every dataset a params file may choose, with its summary and a look at its
files that decodes nothing; its loaders live in ``imageset`` (every dataset as an ``ImageSet``
of uint8 tensors, subsets, normalisation), imported on first use. On-disk formats are read by
``formats``, decoded folder datasets cached by ``imagecache``, augmented views made by
``augment`` and ``diffaug``, generated images mixed in by ``synthetic``.

Imports ``core`` only. The catalog and ``formats`` load no torch, so the pipeline can check a
study's datasets without it.
"""
from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

from dapt.core.errors import DaptError
from dapt.core.registry import Registry
from dapt.data import formats

# (data_root, image_size, download, cache_dir) -> dapt.data.imageset.ImageSet
Loader = Callable[[Path, int, bool, Path], Any]
# Each entry's facts: a look at its files without decoding anything (split files, folder listings)
# that raises the loader's own DatasetMissingError, so `dapt run` names a missing dataset before
# any notebook starts.
DATASETS: Registry[Loader] = Registry("dataset")
OWN_FOLDER = "folder"  # the dataset of a user's own images, in the folder its runs name

for _name, _summary, _files_present in [
    ("fashion_mnist", "Fashion-MNIST: 60k + 10k 28x28 grey images of clothing, 10 classes", formats.fashion_mnist_files),
    ("digits", "scikit-learn digits: 1,797 8x8 grey images, 10 classes (tiny, for tests)",
     lambda root: None),  # ships with scikit-learn: nothing to look at
    ("cifar10", "CIFAR-10: 50k + 10k 32x32 colour images, 10 classes", partial(formats.cifar_folder, "cifar10")),
    ("cifar100", "CIFAR-100: 50k + 10k 32x32 colour images, 100 fine classes", partial(formats.cifar_folder, "cifar100")),
    ("dtd", "Describable Textures: 47 classes, official partition 1 (train+val / test)",
     partial(formats.dtd_index, download=False)),
    ("caltech101", "Caltech-101: 101 classes, seeded split of 30 train / up to 50 test per class",
     partial(formats.caltech101_index, download=False)),
    ("mit_indoor", "MIT Indoor-67: 67 scene classes, official TrainImages/TestImages split",
     partial(formats.mit_indoor_index, download=False)),
    ("cub_2011", "CUB-200-2011 birds: 200 classes, official train/test split", partial(formats.cub_index, download=False)),
    # its files are the run's `folder`, which check_available and load_dataset hand it as the root (files_root)
    (OWN_FOLDER, "your own images in `folder: PATH`: PATH/{train,test}/<class>/<image>, JPEG or PNG "
                 "(optional val/; docs/datasets.md)", formats.image_folder_index),
]:
    DATASETS.declare(_name, f"dapt.data.imageset:load_{_name}", _summary, facts=_files_present)
del _name, _summary, _files_present


# (training images, test images) of each dataset at most, known without its files, so that what a run
# holds in memory is computed before it starts (dapt.pipeline.footprint); caltech101 tests up to 50 per class.
SPLIT_SIZES = {"fashion_mnist": (60_000, 10_000), "digits": (1_437, 360), "cifar10": (50_000, 10_000),
               "cifar100": (50_000, 10_000), "dtd": (3_760, 1_880), "caltech101": (3_030, 5_050),
               "mit_indoor": (5_360, 1_340), "cub_2011": (5_994, 5_794)}

# synset_size -> synthetic images per real training image of each class; 5x and 10x let a study ask how many
# generated images it takes (with generator holdout: how far real-quality images go at equal steps)
SYNSET_SIZES = {"1x": 1, "2x": 2, "5x": 5, "10x": 10}


def files_root(name: str, data_root: str | Path, folder: str | Path | None) -> Path:
    """Where dataset ``name``'s files are: the run's ``folder`` for the user's own images, else ``data_root``."""
    return Path(folder) if name == OWN_FOLDER else Path(data_root)


def check_folder(dataset: str, folder: str | None) -> None:
    """One ``DaptError`` line when ``folder`` is missing for dataset folder, or set for another dataset (which
    would ignore it)."""
    if dataset == OWN_FOLDER and not folder:
        raise DaptError(f"dataset folder needs folder: PATH, the folder holding {formats.FOLDER_LAYOUT}")
    if folder is not None and dataset != OWN_FOLDER:
        raise DaptError(f"folder {folder!r} is read by dataset folder only, and this run uses {dataset}; remove "
                        f"folder, or set dataset: folder")


def check_available(name: str, root: str | Path, download: bool) -> None:
    """Raise ``DatasetMissingError`` (naming the fix) when dataset ``name`` is not on disk under ``root``
    (``files_root``); with ``download`` a missing dataset is fetched when the run starts, so nothing is checked,
    except a user's folder, which nothing downloads."""
    if not download or name == OWN_FOLDER:
        DATASETS.facts(name)(Path(root))
