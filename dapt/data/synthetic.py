"""Synthetic training images made by a generate run: the reader side of the ``dapt-synthetic-v1`` format.

A finished generate run ``runs/<study>/<run>/`` holds ``images/index.json`` (format, dataset,
classes, generator, image_size, settings, and one entry ``{file, label, seed, prompt}`` per image)
and the PNGs it lists, ``images/<class folder>/<i>.png``. The set is exactly the index's entries.
Distillation on real + synthetic images (Farhat & Chen 2024, "Step 2b") draws a class-balanced
sample of it, 1x to 10x the size of the real training set (``synset_size``), and appends it to the real images.
Decoded images are cached beside the index (``images/decoded-<digest>-<size>px.pt``), keyed by
the index's bytes and the working size: a re-run of the generator rewrites the index and with it
the key. A ``holdout`` run's images are real training images outside a training subset, each entry
naming its ``train_index`` in the training split; ``check_outside_subset`` refuses a run whose own
training images include any of them.
"""
from __future__ import annotations

import hashlib
import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from dapt.core.torch_files import atomic_save, safe_load
from dapt.core.errors import CorruptImageError, DaptError
from dapt.core.files import read_json
from dapt.core.progress import progress
from dapt.data import SYNSET_SIZES
from dapt.data.imageset import ImageSet, resize_uint8, sample_per_class

FORMAT = "dapt-synthetic-v1"
_DECODED_FORMAT = "dapt-synthetic-decoded-v1"  # bump when decoding changes: old caches are then ignored


def class_folder(label: int, name: str) -> str:
    """``images/`` sub-folder of class ``label``: ``003_Dress``, ``000_T-shirt_top``."""
    return f"{label:03d}_{re.sub(r'[^A-Za-z0-9._-]', '_', name)}"


@dataclass
class SyntheticSet:
    """All images of a generate run, decoded at a working size."""

    folder: Path  # the generate run
    generator: str
    x: torch.Tensor  # uint8 [N, 3, S, S]
    y: torch.Tensor  # int64 [N]
    train_index: torch.Tensor | None = None  # int64 [N], generator holdout: each image's index in the training split
    settings: dict | None = None  # the index's generator settings


def _fix(folder: Path) -> str:
    return (f"re-run the generate run {folder.as_posix()} with --force (`dapt run <its study> --only <run> "
            f"--force`), or delete that file and its entry in images/index.json")


def read_index(folder: str | Path, dataset: str, classes: list[str]) -> dict:
    """The checked ``images/index.json`` of the finished generate run ``folder`` for ``dataset``/``classes``."""
    folder = Path(folder)
    where = folder.as_posix()
    metrics = read_json(folder / "metrics.json")
    if metrics is None or metrics.get("stage") != "generate":
        raise DaptError(f"synthetic {where} is not a generate run (no metrics.json of stage generate); "
                        f"name a generate run of the study or its folder")
    if metrics.get("status") != "done":
        raise DaptError(f"synthetic run {where} is {metrics.get('status')!r}, not done; finish it first "
                        f"(dapt run on its study)")
    index_path = folder / "images" / "index.json"
    index = read_json(index_path)
    if index is None or index.get("format") != FORMAT or not isinstance(index.get("images"), list):
        raise DaptError(f"{index_path.as_posix()} is missing or not a {FORMAT} index; re-run the generate run "
                        f"{where} with --force")
    theirs = (index.get("dataset"), list(index.get("classes") or []))
    if theirs != (dataset, list(classes)):
        raise DaptError(f"synthetic run {where} made images of {theirs[0]} with classes {theirs[1]}, but this run "
                        f"trains on {dataset} with classes {list(classes)}; name a generate run of {dataset}")
    for entry in index["images"]:
        file, label = (entry.get("file"), entry.get("label")) if isinstance(entry, dict) else (None, None)
        if (not isinstance(file, str) or file.startswith("/") or ".." in Path(file).parts
                or not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < len(classes)):
            raise DaptError(f"{index_path.as_posix()}: malformed entry {entry!r} (a file under images/ and a label "
                            f"in 0..{len(classes) - 1}); re-run the generate run {where} with --force")
    return index


def _decode(folder: Path, file: str, size: int) -> np.ndarray:
    """One PNG as uint8 [3, size, size]; a missing or undecodable file is one error naming it."""
    path = folder / "images" / file
    try:
        with Image.open(path) as img:
            img.load()
            array = np.asarray(img if img.mode == "L" else img.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DaptError(f"synthetic image {path.as_posix()} listed in images/index.json is missing; "
                        f"{_fix(folder)}") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        why = type(err).__name__ if str(path) in str(err) else str(err)  # PIL's messages often repeat the path
        raise CorruptImageError(f"synthetic image {path.as_posix()} is corrupt or unreadable ({why}); "
                                f"{_fix(folder)}") from None
    if array.shape[:2] != (size, size):
        raise CorruptImageError(f"synthetic image {path.as_posix()} is {array.shape[1]}x{array.shape[0]} px but "
                                f"images/index.json says image_size {size}; {_fix(folder)}")
    return np.broadcast_to(array[None], (3, size, size)) if array.ndim == 2 else array.transpose(2, 0, 1)


def decode_images(folder: Path, index: dict) -> torch.Tensor:
    """Every image ``index`` lists (its ``images`` and ``image_size``) as uint8 [N, 3, S, S], decoded in threads."""
    entries, size = index["images"], int(index["image_size"])
    images = torch.empty(len(entries), 3, size, size, dtype=torch.uint8)
    target = images.numpy()

    def decode_into(i: int) -> None:
        target[i] = _decode(folder, entries[i]["file"], size)

    # PIL releases the GIL while inflating PNGs, so threads use every core.
    pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1)
    try:
        for _ in progress(pool.map(decode_into, range(len(entries))), total=len(entries), desc="synthetic images",
                          unit="img", disable=len(entries) < 2000):
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # the first bad file stops the work
    return images


def load_synthetic(folder: str | Path, dataset: str, classes: list[str], size: int) -> SyntheticSet:
    """Every image of the generate run ``folder`` at ``size`` px (3 channels), from the decoded cache
    when it matches the index."""
    folder = Path(folder)
    index = read_index(folder, dataset, classes)
    labels = torch.tensor([e["label"] for e in index["images"]], dtype=torch.int64)
    extra = {"settings": index.get("settings")}
    if index.get("generator") == "holdout":
        if not all(isinstance(e.get("train_index"), int) for e in index["images"]):
            raise DaptError(f"{(folder / 'images' / 'index.json').as_posix()} is a holdout set whose entries lack "
                            f"their train_index; re-run the generate run {folder.as_posix()} with --force")
        extra["train_index"] = torch.tensor([e["train_index"] for e in index["images"]], dtype=torch.int64)
    digest = hashlib.sha256((folder / "images" / "index.json").read_bytes()).hexdigest()[:16]
    cache = folder / "images" / f"decoded-{digest}-{size}px.pt"
    if cache.is_file():
        try:
            blob = safe_load(cache, "decoded synthetic images")
        except DaptError:
            blob = None  # unreadable: decoded again below
        if (isinstance(blob, dict) and blob.get("format") == _DECODED_FORMAT and torch.equal(blob["y"], labels)
                and blob["x"].shape == (len(labels), 3, size, size) and blob["x"].dtype == torch.uint8):
            return SyntheticSet(folder, str(index.get("generator")), blob["x"], labels, **extra)
    x = resize_uint8(decode_images(folder, index), size)
    try:
        atomic_save({"format": _DECODED_FORMAT, "x": x, "y": labels}, cache)
    except OSError as err:  # a read-only run folder: decode again next time
        print(f"synthetic images: not cached ({err})")
    return SyntheticSet(folder, str(index.get("generator")), x, labels, **extra)


def check_outside_subset(synthetic: SyntheticSet, ds: ImageSet) -> None:
    """Refuse, in one line, a ``holdout`` set holding any of ``ds``'s own real training images: the student
    would see them twice and the set would not be held out. Other generators pass unchecked."""
    if synthetic.train_index is None:
        return
    where = synthetic.folder.as_posix()
    settings = synthetic.settings or {}
    theirs = f"train_subset {settings.get('train_subset')} and subset_seed {settings.get('subset_seed')}"
    if ds.train_index is None:
        raise DaptError(f"synthetic run {where} holds real training images outside a training subset, but this run's "
                        f"training images do not say which they are (load them with dapt.data.imageset.load_dataset)")
    overlap = int(torch.isin(synthetic.train_index, ds.train_index[:ds.n_real]).sum())
    if overlap:
        raise DaptError(f"synthetic run {where} holds real training images outside the subset of {theirs}, but "
                        f"{overlap} of its {len(synthetic.y)} images are among this run's {ds.n_real} training images; "
                        f"draw that subset here: set train_subset {settings.get('train_subset')} and subset_seed "
                        f"{settings.get('subset_seed')} on this run (or seed {settings.get('subset_seed')} with "
                        f"subset_seed null)")


def sample_synthetic(synthetic: SyntheticSet, real_labels: torch.Tensor, synset_size: str, seed: int,
                     classes: list[str]) -> torch.Tensor:
    """Indices of a seeded sample of ``synthetic`` with ``factor × n_c`` images of each class ``c``
    that has ``n_c`` real training images (``synset_size``: the factor, ``SYNSET_SIZES``), balanced like the
    real set."""
    factor = SYNSET_SIZES[synset_size]
    quota = {c: factor * int(n) for c, n in enumerate(torch.bincount(real_labels, minlength=len(classes)).tolist())}
    have = torch.bincount(synthetic.y, minlength=len(classes)).tolist()
    short = [c for c, k in quota.items() if have[c] < k]
    if short:
        c = short[0]
        raise DaptError(f"synthetic run {synthetic.folder.as_posix()} has {have[c]} images of class {classes[c]!r} but "
                        f"synset_size {synset_size} needs {quota[c]} of it ({max(quota.values())} per class for the "
                        f"largest class of the {len(real_labels)} real training images); raise images_per_class of "
                        f"the generate run to at least {max(quota.values())} and run it again, or use a smaller "
                        f"synset_size or train_subset")
    return sample_per_class(synthetic.y, quota, seed)


def with_synthetic(ds: ImageSet, x: torch.Tensor, y: torch.Tensor) -> ImageSet:
    """``ds`` whose training set is its real images followed by ``x``: indices ``>= n_real`` are synthetic,
    so per-image state (views, teacher cache, CRD memory) has one row per image, none shared."""
    return replace(ds, train_x=torch.cat([ds.train_x, x]), train_y=torch.cat([ds.train_y, y]),
                   n_synthetic=ds.n_synthetic + len(y))

