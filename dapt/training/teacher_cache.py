"""Teacher targets per (image, augmented view), computed once and replayed (FKD-style, Shen & Xing 2022).

A teacher is frozen during distillation, so its logits and penultimate features on a given
augmented image never change. The student trains on ``K`` deterministic views per image (epoch
``e`` uses view ``e mod K``); the teacher's outputs on exactly those pixels are computed once,
stored in fp16 under the teacher run's ``cache/`` folder and shared by every student of the
same teacher, data, views and seed. ``teacher_cache: off`` computes them live instead, on the
same views, so both modes train on the same pixels.

The training targets live on disk, never whole in memory: ``targets-<key>.f16`` is a
``HEADER_BYTES`` JSON header (format, key, shape, dtype) followed by one raw fp16 array of shape
``[K, N, C + D]`` (view-major: the rows of one view are contiguous; each row is an image's C
logits then its D features). It is written chunk by chunk, in file order, to a temp file that is
fsynced and renamed into place only when complete, and read back memory-mapped: a batch is a
gather of ``B`` rows of one view, which the page cache serves at memory speed. Peak memory of a
build is one chunk: ``chunk × (C + D) × 6`` bytes of outputs (float32 + fp16) plus the teacher's
activations on ``chunk`` images (``loop.inference_batch``), whatever ``K × N`` is.

Several processes (``dapt.core.distributed``): rank 0 reads or builds each cache file while the others
wait at a barrier, then they read the file it wrote; only rank 0 writes. One build, not one per rank
(they would all compute the same outputs), and no rank reads a file another is still writing.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dapt.core import distributed
from dapt.core.torch_files import atomic_save, safe_load
from dapt.data.augment import AugmentParams
from dapt.data.diffaug import DiffAugParams, view_pixels
from dapt.training.device import device_of, to_device
from dapt.core.errors import DaptError
from dapt.models.nets import Net
from dapt.core.files import atomic_path
from dapt.training.loop import inference_batch, predict, prepare

CACHE_FORMAT = "dapt-teacher-targets-v2"  # the memory-mapped training targets
TEST_FORMAT = "dapt-teacher-targets-v1"  # the test-set outputs (a .pt; its name keeps the keys of earlier caches)
HEADER_BYTES = 4096  # the JSON header, padded; the fp16 array starts here (page-aligned for the memory map)


def _digest(*parts: bytes | str | torch.Tensor) -> str:
    """Short key over strings and whole tensors (their bytes), for cache file names."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, torch.Tensor):
            part = part.contiguous().numpy().tobytes()
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\0")
    return h.hexdigest()[:16]


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_cache(path: Path) -> dict | None:
    """A cache file's tensors, or None when absent or unreadable (a bad cache is rebuilt, not fatal)."""
    if not path.is_file():
        return None
    try:
        blob = safe_load(path, "teacher cache")
    except DaptError:
        return None
    return blob if isinstance(blob, dict) and blob.get("format") == TEST_FORMAT else None


def _write_cache(path: Path, logits: torch.Tensor, features: torch.Tensor) -> None:
    if distributed.is_main():
        atomic_save({"format": TEST_FORMAT, "logits": logits, "features": features}, path)


def outputs_on_test_set(teacher: Net, test_x: torch.Tensor, size: int, *, cache_dir: Path | None,
                        key_parts: tuple, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits and features on the test set (float32), cached like the training targets:
    every student of a study is compared with the same teacher predictions, computed once."""
    if cache_dir is None:
        return predict(teacher, test_x, size=size, channels_last=channels_last, features=True)
    path = Path(cache_dir) / f"test-{_digest(TEST_FORMAT, 'test', *map(str, key_parts), str(size), test_x)}.pt"
    with distributed.main_first():
        blob = _read_cache(path)
        if blob is not None:
            return blob["logits"], blob["features"]
        logits, features = predict(teacher, test_x, size=size, channels_last=channels_last, features=True)
        _write_cache(path, logits, features)
    return logits, features


def gigabytes(count: int) -> str:
    return f"{count / 1e9:.2f} GB"


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse to start writing ``needed`` bytes into ``folder`` when its disk has less free: one line
    saying how much is needed and where, instead of a disk filled up to a failed write."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise DaptError(f"the teacher cache needs {gigabytes(needed)} in {folder.as_posix()} but its disk has "
                        f"{gigabytes(free)} free: free space there, lower cache_views, or set teacher_cache: off "
                        f"(the teacher then runs live on every batch)")


def _open_cache(path: Path, key: str, views: int, images: int) -> tuple[np.memmap, int] | None:
    """The memory-mapped ``[views, images, C + D]`` fp16 array of a complete cache file and its C, or
    None when the file is absent, not ours, of another shape, or torn (its size is not what its header says)."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(HEADER_BYTES).decode())
        rows = (int(header["views"]), int(header["images"]), int(header["classes"]) + int(header["features"]))
        ok = (header.get("format") == CACHE_FORMAT and header.get("key") == key and header.get("dtype") == "float16"
              and rows[:2] == (views, images) and path.stat().st_size == HEADER_BYTES + 2 * int(np.prod(rows)))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or no header we wrote
        return None
    if not ok:
        return None
    return np.memmap(path, dtype=np.float16, mode="r", offset=HEADER_BYTES, shape=rows), int(header["classes"])


def _header(key: str, views: int, images: int, classes: int, features: int) -> bytes:
    text = json.dumps({"format": CACHE_FORMAT, "key": key, "views": views, "images": images, "classes": classes,
                       "features": features, "dtype": "float16", "layout": "[view][image][logits | features]"})
    assert len(text) < HEADER_BYTES
    return text.encode().ljust(HEADER_BYTES - 1) + b"\n"


class TeacherTargets:
    """Teacher (logits, features) for a batch of training images under view ``v``: crop/flip view
    ``views[v]``, then DiffAugment view ``diff_views[v]`` when given (its draws join the cache key).

    With a ``cache_dir`` they are read from the memory-mapped cache file (built first if missing);
    without, computed live. ``chunk`` (images per build chunk) defaults to ``loop.inference_batch`` at
    ``teacher_size`` on the teacher's device.
    """

    def __init__(self, teacher: Net, teacher_size: int, train_x: torch.Tensor, views: list[AugmentParams],
                 *, cache_dir: Path | None, key_parts: tuple, channels_last: bool, chunk: int | None = None,
                 diff_views: list[DiffAugParams] | None = None):
        self.teacher, self.size, self.channels_last = teacher.eval(), teacher_size, channels_last
        self.train_x, self.views, self.diff_views = train_x, views, diff_views
        self.chunk = chunk or inference_batch(teacher_size, device_of(teacher))
        self.table: np.memmap | None = None  # [K, N, C + D] fp16, memory-mapped
        self.classes = 0
        self.path: Path | None = None
        if cache_dir is not None:
            self.key = _digest(CACHE_FORMAT, *map(str, key_parts), str(teacher_size), str(len(views)), train_x,
                               *(torch.stack([v.offset_y, v.offset_x, v.flip.long()]) for v in views),
                               *(t for v in diff_views or () for t in v.key_tensors()))
            self.path = Path(cache_dir) / f"targets-{self.key}.f16"
            with distributed.main_first():  # several processes: rank 0 builds, the others then read
                self._load_or_build()

    @property
    def cached(self) -> bool:
        return self.table is not None

    def _load_or_build(self) -> None:
        assert self.path is not None
        n, k = len(self.train_x), len(self.views)
        opened = _open_cache(self.path, self.key, k, n)
        if opened is None:
            self._build(n, k)
            opened = _open_cache(self.path, self.key, k, n)
            assert opened is not None, "a cache file just written must read back"
            print(f"teacher targets: {k} views x {n} images cached in {self.path.as_posix()}")
        else:
            print(f"teacher targets: reusing {self.path.as_posix()}")
        self.table, self.classes = opened

    def _build(self, n: int, k: int) -> None:
        """Write the cache file chunk by chunk, in file order (view-major), through a temp file that
        becomes ``self.path`` only once complete and on disk (``atomic_path``: fsync, then rename)."""
        assert self.path is not None
        with (atomic_path(self.path) as tmp, open(tmp, "wb") as out,
              tqdm(total=k * n, desc="teacher targets", unit="img", file=sys.stdout, mininterval=2.0, ncols=100) as bar):
            for view in range(k):
                for start in range(0, n, self.chunk):
                    z, f = self._live(view, torch.arange(start, min(n, start + self.chunk)))
                    rows = torch.cat([z, f], dim=1).half()
                    if view == 0 and start == 0:  # the first chunk tells C and D, so the size
                        check_free_space(self.path.parent, HEADER_BYTES + 2 * k * n * rows.shape[1])
                        out.write(_header(self.key, k, n, z.shape[1], f.shape[1]))
                    # fp16 turns anything beyond ±65504 into inf: a broken teacher must not become nan
                    # losses in every student that reuses its cache
                    if not torch.isfinite(rows).all():
                        raise DaptError("the teacher's outputs on the training images overflow the fp16 teacher "
                                        "cache (beyond ±65504, or not numbers): the teacher run is broken (check "
                                        "its test accuracy; retrain it with a lower lr)")
                    out.write(rows.numpy().data)
                    bar.update(len(rows))

    @torch.no_grad()  # not inference_mode: live targets enter the student's autograd graph as constants
    def _live(self, view: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = self.diff_views[view].select(index) if self.diff_views else None
        x = to_device(view_pixels(self.train_x[index], self.views[view].select(index), diff), device_of(self.teacher))
        # float32 even inside a student's autocast: live targets must equal the cached ones
        with torch.autocast(x.device.type, enabled=False):
            f, z = self.teacher.forward_features(prepare(x, self.size, self.channels_last))
        return z.float(), f.float()

    def get(self, view: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, features) of the teacher on view ``view`` of training images ``index``, float32, on
        the teacher's device (cached rows are moved there in fp16, half the bytes)."""
        if self.table is None:
            return self._live(view, index)
        rows = torch.from_numpy(np.asarray(self.table[view, index.numpy()]))  # a gather of len(index) fp16 rows
        rows = to_device(rows, device_of(self.teacher)).float()
        return rows[:, :self.classes].contiguous(), rows[:, self.classes:].contiguous()
