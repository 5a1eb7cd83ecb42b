"""Teacher targets per (image, augmented view), computed once and replayed (FKD-style, Shen & Xing 2022).

A teacher is frozen during distillation, so its logits and penultimate features on a given
augmented image never change. The student trains on ``K`` deterministic views per image (epoch
``e`` uses view ``e mod K``); the teacher's outputs on exactly those pixels are computed once,
stored in fp16 under the teacher run's ``cache/`` folder and shared by every student of the
same teacher, data, views and seed. ``teacher_cache: off`` computes them live instead, on the
same views, so both modes train on the same pixels.

Several processes (``dapt.distributed``): rank 0 reads or builds each cache file while the others
wait at a barrier, then they read the file it wrote; only rank 0 writes. One build, not one per rank
(they would all compute the same outputs), and no rank reads a file another is still writing.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import torch
from tqdm import tqdm

from . import distributed
from .checkpoint import atomic_save, safe_load
from .data.augment import AugmentParams
from .data.diffaug import DiffAugParams, view_pixels
from .device import device_of, to_device
from .errors import DaptError
from .models import Net
from .train import predict, prepare

CACHE_FORMAT = "dapt-teacher-targets-v1"


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
    return blob if isinstance(blob, dict) and blob.get("format") == CACHE_FORMAT else None


def _write_cache(path: Path, logits: torch.Tensor, features: torch.Tensor) -> None:
    if distributed.is_main():
        atomic_save({"format": CACHE_FORMAT, "logits": logits, "features": features}, path)


def outputs_on_test_set(teacher: Net, test_x: torch.Tensor, size: int, *, cache_dir: Path | None,
                        key_parts: tuple, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits and features on the test set (float32), cached like the training targets:
    every student of a study is compared with the same teacher predictions, computed once."""
    if cache_dir is None:
        return predict(teacher, test_x, size=size, channels_last=channels_last, features=True)
    path = Path(cache_dir) / f"test-{_digest(CACHE_FORMAT, 'test', *map(str, key_parts), str(size), test_x)}.pt"
    with distributed.main_first():
        blob = _read_cache(path)
        if blob is not None:
            return blob["logits"], blob["features"]
        logits, features = predict(teacher, test_x, size=size, channels_last=channels_last, features=True)
        _write_cache(path, logits, features)
    return logits, features


class TeacherTargets:
    """Teacher (logits, features) for a batch of training images under view ``v``: crop/flip view
    ``views[v]``, then DiffAugment view ``diff_views[v]`` when given (its draws join the cache key)."""

    def __init__(self, teacher: Net, teacher_size: int, train_x: torch.Tensor, views: list[AugmentParams],
                 *, cache_dir: Path | None, key_parts: tuple, channels_last: bool, batch_size: int = 500,
                 diff_views: list[DiffAugParams] | None = None):
        self.teacher, self.size, self.channels_last = teacher.eval(), teacher_size, channels_last
        self.train_x, self.views, self.diff_views, self.batch_size = train_x, views, diff_views, batch_size
        self.logits: torch.Tensor | None = None
        self.features: torch.Tensor | None = None
        self.path: Path | None = None
        if cache_dir is not None:
            key = _digest(CACHE_FORMAT, *map(str, key_parts), str(teacher_size), str(len(views)), train_x,
                          *(torch.stack([v.offset_y, v.offset_x, v.flip.long()]) for v in views),
                          *(t for v in diff_views or () for t in v.key_tensors()))
            self.path = Path(cache_dir) / f"targets-{key}.pt"
            with distributed.main_first():
                self._load_or_build()

    @property
    def cached(self) -> bool:
        return self.logits is not None

    def _load_or_build(self) -> None:
        assert self.path is not None
        blob = _read_cache(self.path)
        if blob is not None:
            self.logits, self.features = blob["logits"], blob["features"]
            print(f"teacher targets: reusing {self.path.as_posix()}")
            return
        n, k = len(self.train_x), len(self.views)
        logits, features = [], []
        bar = tqdm(total=k * n, desc="teacher targets", unit="img", file=sys.stdout, mininterval=2.0, ncols=100)
        for view in range(k):
            view_logits, view_feats = [], []
            for start in range(0, n, self.batch_size):
                index = torch.arange(start, min(n, start + self.batch_size))
                z, f = self._live(view, index)
                view_logits.append(z.half().cpu())  # the cache lives in host memory
                view_feats.append(f.half().cpu())
                bar.update(len(index))
            logits.append(torch.cat(view_logits))
            features.append(torch.cat(view_feats))
        bar.close()
        self.logits, self.features = torch.stack(logits), torch.stack(features)
        # Checked once here, not per live batch: fp16 turns anything beyond ±65504 into inf, and a
        # broken teacher must not become nan losses in every student that reuses its cache.
        if not (torch.isfinite(self.logits).all() and torch.isfinite(self.features).all()):
            raise DaptError("the teacher's outputs on the training images overflow the fp16 teacher cache "
                            "(beyond ±65504, or not numbers): the teacher run is broken (check its test "
                            "accuracy; retrain it with a lower lr)")
        _write_cache(self.path, self.logits, self.features)
        print(f"teacher targets: {k} views x {n} images cached in {self.path.as_posix()}")

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
        if self.logits is not None and self.features is not None:
            device = device_of(self.teacher)
            return (to_device(self.logits[view, index], device).float(),
                    to_device(self.features[view, index], device).float())
        return self._live(view, index)
