"""Teacher targets per (image, augmented view), computed once and shared (FKD-style, Shen & Xing 2022).

A teacher is frozen during distillation, so its logits and penultimate features on a given
augmented image never change, and every student of one teacher that trains on the same views needs
the same outputs: a study of S students pays the teacher once, not S times. By default a run draws a
fresh view per epoch (``cache_views`` = epochs, as the live teacher and the teacher stage see); view
``v`` is drawn from the seed and ``v`` alone (``data.augment.Views``), so runs of different epochs
share their common views. ``teacher_cache: off`` computes the outputs live instead, on the same views
and in the same precision, so both modes train on the same targets up to the cache's rounding.

One file per view and part, under the teacher run's ``cache/``, named by a key over the teacher's
weights, the data, the teacher's image size and precision and that view's draws:

- ``logits-<key>.f16``: the N images' C logits, fp16 ``[N, C]``;
- ``features-<key>.i8``: their D features, int8 with a float32 scale per row (``[N, D + 4]`` bytes:
  D codes, then the scale), written only when a student of the study needs features (crd, srrl,
  align_uniform; ``cache_features``). A feature is off by at most half a step, max|row| / 254.

The teacher's outputs on the fixed images students are compared on, the test set and a run's validation
images, are one ``.pt`` each (``outputs_on_images``): ``test-<key>.pt``, ``validation-<key>.pt``.

Each training-target file is a ``HEADER_BYTES`` JSON header (format, key, part, shape) then the raw rows, written chunk
by chunk to a temp file that is fsynced and renamed into place when complete, and read back
memory-mapped: a batch is a gather of ``B`` rows of its epoch's view, which the page cache serves at
memory speed. A killed build keeps every view it finished. Peak memory of a build is one chunk of
outputs plus the teacher's activations on ``chunk`` images (``loop.inference_batch``).

Several processes (``dapt.core.distributed``): rank 0 reads or builds the files while the others wait
at a barrier, then they read the files it wrote; only rank 0 writes.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import torch

from dapt.core import distributed
from dapt.core.torch_files import atomic_save, safe_load
from dapt.data.augment import AugmentParams
from dapt.data.diffaug import DiffAugParams, view_pixels
from dapt.training.device import device_of, to_device
from dapt.core.errors import DaptError
from dapt.models.nets import Net
from dapt.core.files import atomic_path
from dapt.core.progress import progress
from dapt.training.loop import inference_batch, predict, prepare

CACHE_FORMAT = "dapt-teacher-targets-v3"  # the memory-mapped training targets, one file per view and part
TEST_FORMAT = "dapt-teacher-targets-v1"  # the outputs on fixed images (a .pt; its name keeps earlier caches' keys)
HEADER_BYTES = 4096  # the JSON header, padded; the rows start here (page-aligned for the memory map)


def _feed(h, part: bytes | str | torch.Tensor) -> None:
    """Add ``part`` to the hashlib object ``h``: a string's UTF-8, a whole tensor's bytes (from wherever it
    lives), then a separator, so that ("ab", "c") and ("a", "bc") differ."""
    if isinstance(part, torch.Tensor):
        part = part.cpu().contiguous().numpy().tobytes()
    h.update(part.encode() if isinstance(part, str) else part)
    h.update(b"\0")


def _fed(h, parts):
    """``h`` after feeding it each of ``parts`` (``_feed``)."""
    for part in parts:
        _feed(h, part)
    return h


def _digest(*parts: bytes | str | torch.Tensor) -> str:
    """Short key over strings and whole tensors (their bytes), for cache file names."""
    return _fed(hashlib.sha256(), parts).hexdigest()[:16]


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


def outputs_on_images(teacher: Net, images: torch.Tensor, size: int, *, part: str, cache_dir: Path | None,
                      key_parts: tuple, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The teacher's logits and features (float32) on fixed uint8 ``images``, ``part`` saying which ("test":
    the test set, "validation": a run's validation images), cached like the training targets and keyed by
    the images' pixels: every student of a study is compared with the same teacher predictions, computed
    once."""
    if cache_dir is None:
        return predict(teacher, images, size=size, channels_last=channels_last, features=True)
    path = Path(cache_dir) / f"{part}-{_digest(TEST_FORMAT, part, *map(str, key_parts), str(size), images)}.pt"
    with distributed.main_first():
        blob = _read_cache(path)
        if blob is not None:
            return blob["logits"], blob["features"]
        logits, features = predict(teacher, images, size=size, channels_last=channels_last, features=True)
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


LOGITS, FEATURES = "logits", "features"
SUFFIX = {LOGITS: "f16", FEATURES: "i8"}
SCALE_BYTES = 4  # a features row ends with its float32 scale


def row_bytes(part: str, width: int) -> int:
    """Bytes of one image's row in a ``part`` file of ``width`` logits or features."""
    return 2 * width if part == LOGITS else width + SCALE_BYTES


def logit_rows(z: torch.Tensor) -> np.ndarray:
    """``[n, C]`` fp16 logits; a teacher whose logits do not fit fp16 is refused, not turned into inf."""
    rows = z.half()
    # fp16 turns anything beyond ±65504 into inf: a broken teacher must not become nan losses in every
    # student that reuses its cache
    if not torch.isfinite(rows).all():
        raise DaptError("the teacher's outputs on the training images overflow the fp16 teacher cache (beyond "
                        "±65504, or not numbers): the teacher run is broken (check its test accuracy; retrain it "
                        "with a lower lr)")
    return rows.cpu().numpy()


def feature_rows(f: torch.Tensor) -> np.ndarray:
    """``[n, D + 4]`` int8: each row's features quantized symmetrically to round(f / s) in [-127, 127]
    with s = max|row| / 127, then s as float32 bytes. Reads back within s / 2 of ``f`` (``dequantize``)."""
    if not torch.isfinite(f).all():
        raise DaptError("the teacher's features on the training images are not numbers (inf or nan): the "
                        "teacher run is broken (check its test accuracy; retrain it with a lower lr)")
    scale = f.abs().amax(dim=1, keepdim=True) / 127
    codes = torch.where(scale > 0, f / scale.clamp_min(torch.finfo(torch.float32).tiny), 0).round().clamp(-127, 127)
    scale_bytes = scale.cpu().numpy().view(np.int8)  # [n, 4]: the float32 scale as bytes
    return np.concatenate([codes.to(torch.int8).cpu().numpy(), scale_bytes], axis=1)


def dequantize(rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """float32 features of ``feature_rows`` rows, on ``device`` (the int8 codes travel there, not floats)."""
    scale = torch.from_numpy(np.ascontiguousarray(rows[:, -SCALE_BYTES:]).view(np.float32))
    codes = torch.from_numpy(np.ascontiguousarray(rows[:, :-SCALE_BYTES]))
    return to_device(codes, device).float() * to_device(scale, device)


def _header(key: str, part: str, images: int, width: int) -> bytes:
    dtype = "float16" if part == LOGITS else "int8 codes + float32 row scale"
    text = json.dumps({"format": CACHE_FORMAT, "key": key, "part": part, "images": images, "width": width,
                       "dtype": dtype, "row_bytes": row_bytes(part, width)})
    assert len(text) < HEADER_BYTES
    return text.encode().ljust(HEADER_BYTES - 1) + b"\n"


def _open_part(path: Path, key: str, part: str, images: int) -> np.memmap | None:
    """The memory-mapped rows of a complete ``part`` file of ``key``, or None when the file is absent,
    not ours, of another shape, or torn (its size is not what its header says)."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.read(HEADER_BYTES).decode())
        width = int(header["width"])
        ok = (header.get("format") == CACHE_FORMAT and header.get("key") == key and header.get("part") == part
              and int(header["images"]) == images
              and path.stat().st_size == HEADER_BYTES + images * row_bytes(part, width))
    except (OSError, ValueError, KeyError, TypeError):  # absent, or no header we wrote
        return None
    if not ok:
        return None
    if part == LOGITS:
        return np.memmap(path, dtype=np.float16, mode="r", offset=HEADER_BYTES, shape=(images, width))
    return np.memmap(path, dtype=np.int8, mode="r", offset=HEADER_BYTES, shape=(images, width + SCALE_BYTES))


class TeacherTargets:
    """Teacher (logits, features) for a batch of training images under view ``v``: crop/flip view
    ``views[v]``, then DiffAugment view ``diff_views[v]`` when given.

    The teacher computes in ``dtype`` (float32, or bf16 / fp16 under autocast), cached or live. With a
    ``cache_dir`` the outputs are read from the view's files there (built first if missing); without,
    computed at every call. ``features``: whether ``get`` returns features (else None); ``store_features``:
    whether a build writes them even so (another student of the study will read them). ``chunk``
    (images per build chunk) defaults to ``loop.inference_batch`` at ``teacher_size`` on the teacher's device.
    """

    def __init__(self, teacher: Net, teacher_size: int, train_x: torch.Tensor, views: Sequence[AugmentParams],
                 *, cache_dir: Path | None, key_parts: tuple, channels_last: bool, features: bool = True,
                 store_features: bool = False, dtype: torch.dtype = torch.float32, chunk: int | None = None,
                 diff_views: Sequence[DiffAugParams] | None = None):
        self.teacher, self.size, self.channels_last = teacher.eval(), teacher_size, channels_last
        self.train_x, self.views, self.diff_views = train_x, views, diff_views
        self.features, self.dtype = features, dtype
        self.chunk = chunk or inference_batch(teacher_size, device_of(teacher))
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.parts = (LOGITS, FEATURES) if features or store_features else (LOGITS,)
        self.keys: list[str] = []  # one per view; identical views share a key, so their files
        self.mapped: tuple[int, dict[str, np.memmap]] | None = None  # the files of the view in use
        if self.cache_dir is not None:
            self.keys = self._view_keys(key_parts)
            with distributed.main_first():  # several processes: rank 0 builds, the others then read
                self._load_or_build()

    def path(self, view: int, part: str) -> Path:
        assert self.cache_dir is not None
        return self.cache_dir / f"{part}-{self.keys[view]}.{SUFFIX[part]}"

    def _view_keys(self, key_parts: tuple) -> list[str]:
        """Per view, a digest of everything its outputs depend on: what the whole cache shares (the
        caller's ``key_parts``, the teacher's size and precision, the images), then that view's draws."""
        shared = _fed(hashlib.sha256(),
                      (CACHE_FORMAT, *map(str, key_parts), str(self.size), str(self.dtype), self.train_x))
        keys = []
        for v in range(len(self.views)):
            crop = self.views[v]
            draws = [crop.offset_y, crop.offset_x, crop.flip.long()]
            draws += self.diff_views[v].key_tensors() if self.diff_views else []
            keys.append(_fed(shared.copy(), draws).hexdigest()[:16])
        return keys

    def _load_or_build(self) -> None:
        n, k = len(self.train_x), len(self.views)
        todo: dict[str, tuple[int, list[str]]] = {}  # key -> (a view of it, its missing parts)
        for v, key in enumerate(self.keys):
            missing = [p for p in self.parts if _open_part(self.path(v, p), key, p, n) is None]
            if missing and key not in todo:
                todo[key] = (v, missing)
        where = self.cache_dir.as_posix() if self.cache_dir else ""
        if not todo:
            print(f"teacher targets: reusing {k} views x {n} images ({' + '.join(self.parts)}) in {where}")
            return
        self._build(list(todo.values()))
        print(f"teacher targets: {len(todo)} of {k} views x {n} images ({' + '.join(self.parts)}) cached in {where}")

    def _build(self, todo: list[tuple[int, list[str]]]) -> None:
        """Compute each missing view once and write its missing parts chunk by chunk, each through a temp
        file that becomes its cache file only once complete and on disk (``atomic_path``: fsync, rename)."""
        n, checked = len(self.train_x), False
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with progress(total=len(todo) * n, desc="teacher targets", unit="img") as bar:
            for view, parts in todo:
                with ExitStack() as files:
                    out = {p: files.enter_context(open(files.enter_context(atomic_path(self.path(view, p))), "wb"))
                           for p in parts}
                    for start in range(0, n, self.chunk):
                        z, f = self._forward(view, torch.arange(start, min(n, start + self.chunk)))
                        widths = {LOGITS: z.shape[1], FEATURES: f.shape[1]}
                        rows = {LOGITS: logit_rows(z)}
                        if FEATURES in parts:
                            rows[FEATURES] = feature_rows(f)
                        if not checked:  # the first chunk tells C and D, so the size of everything to write
                            check_free_space(self.cache_dir, sum(HEADER_BYTES + n * row_bytes(p, widths[p])
                                                                 for _, ps in todo for p in ps))
                            checked = True
                        for p in parts:
                            if start == 0:
                                out[p].write(_header(self.keys[view], p, n, widths[p]))
                            out[p].write(rows[p].data)
                        bar.update(len(z))

    @torch.no_grad()  # not inference_mode: live targets enter the student's autograd graph as constants
    def _forward(self, view: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        diff = self.diff_views[view].select(index) if self.diff_views else None
        x = to_device(view_pixels(self.train_x[index], self.views[view].select(index), diff), device_of(self.teacher))
        # the teacher's own precision, also inside a student's autocast: live targets must equal the cached ones
        with torch.autocast(x.device.type, dtype=self.dtype, enabled=self.dtype != torch.float32):
            f, z = self.teacher.forward_features(prepare(x, self.size, self.channels_last))
        return z.float(), f.float()

    def _files(self, view: int) -> dict[str, np.memmap]:
        """The memory maps of ``view``'s files, opened when an epoch first asks for that view."""
        if self.mapped is None or self.mapped[0] != view:
            n = len(self.train_x)
            opened = {p: _open_part(self.path(view, p), self.keys[view], p, n) for p in self.parts}
            gone = [self.path(view, p).as_posix() for p, m in opened.items() if m is None]
            if gone:
                raise DaptError(f"the teacher cache file {gone[0]} went missing or changed during training: "
                                f"run again (it is rebuilt), and leave cache/ folders alone while runs read them")
            self.mapped = (view, opened)
        return self.mapped[1]

    def get(self, view: int, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, features or None) of the teacher on view ``view`` of training images ``index``, float32,
        on the teacher's device (cached rows travel there compact: fp16 logits, int8 features)."""
        if self.cache_dir is None:
            z, f = self._forward(view, index)
            return z, (f if self.features else None)
        files, rows = self._files(view), index.numpy()
        device = device_of(self.teacher)
        z = to_device(torch.from_numpy(np.asarray(files[LOGITS][rows])), device).float()
        f = dequantize(np.asarray(files[FEATURES][rows]), device) if self.features else None
        return z, f
