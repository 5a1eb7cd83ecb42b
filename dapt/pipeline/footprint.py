"""What a run will hold in memory, from its params alone, and the refusal of one this machine cannot hold.

Every dataset lives in memory as uint8 [N, 3, S, S] at the run's ``image_size`` S (``dapt.data.imageset``):
the whole training split is decoded at S before a ``train_subset`` is drawn from it, then the test split,
then the subset itself and, for a student on synthetic images, their sample (1x to 10x the subset). Training
adds a float32 batch. That much a run holds at least, whatever its model: more than the machine's memory
(or a container's limit) can never run, and is said before any run starts. On an explicit ``device: cuda``
the float32 batch must fit the GPU too. Model weights and activations come on top, and are not estimated.
"""
from __future__ import annotations

from dataclasses import dataclass

from dapt.core.devices import device_memory
from dapt.core.errors import DaptError
from dapt.core.machine import memory_bytes, size_text
from dapt.data import SPLIT_SIZES, SYNSET_SIZES


@dataclass(frozen=True)
class Footprint:
    """Bytes a run holds, each term proportional to image_size² (``per_pixel`` bytes per pixel of one side²)."""

    host_per_pixel: int  # images in host memory and the float32 batch
    batch_per_pixel: int  # the float32 batch alone, on the device
    what: str  # the images counted, for the message

    def host(self, size: int) -> int:
        return self.host_per_pixel * size * size

    def batch(self, size: int) -> int:
        return self.batch_per_pixel * size * size


def footprint(cfg) -> Footprint | None:
    """The images and the batch ``cfg`` holds; None for a stage that holds no dataset (the report)."""
    if not hasattr(cfg, "image_size") or getattr(cfg, "dataset", None) not in SPLIT_SIZES:
        return None
    n_train, n_test = SPLIT_SIZES[cfg.dataset]
    subset = min(cfg.train_subset or n_train, n_train)
    images = n_train + n_test + (subset if subset < n_train else 0)
    synthetic = getattr(cfg, "synthetic", None)
    if synthetic:
        images += subset * SYNSET_SIZES[getattr(cfg, "synset_size", None) or "1x"]
    batch = min(getattr(cfg, "ddpm_batch_size", None) if cfg.__class__.__name__ == "GenerateConfig"
                else cfg.batch_size, subset) * 4  # float32
    what = f"{n_train:,} training + {n_test:,} test images" + (f", a subset of {subset:,}" if subset < n_train else "")
    what += ", synthetic ones" if synthetic else ""
    return Footprint(3 * images + 3 * batch, 3 * batch, what)


def largest_size(per_pixel: int, memory: int) -> int:
    """The largest image size whose ``per_pixel * size²`` bytes fit in ``memory``."""
    size = int((memory / per_pixel) ** 0.5)
    while size > 0 and per_pixel * size * size > memory:
        size -= 1
    return size


def check_fits(cfg, label: str) -> None:
    """Refuse, in one line, a run whose images (and batch) exceed this machine's memory (or its GPU's)."""
    need = footprint(cfg)
    if need is None:
        return
    size = cfg.image_size
    memory = memory_bytes()
    if memory is not None and need.host(size) > memory:
        raise DaptError(f"{label}: holds {size_text(need.host(size))} of uint8 images at image_size {size} "
                        f"({need.what}) and a float32 batch, more than this machine's {size_text(memory)} of "
                        f"memory; lower image_size (at most {largest_size(need.host_per_pixel, memory)} fits) or "
                        f"train_subset, or run it on a larger machine")
    device = getattr(cfg, "device", "auto")
    if device.startswith("cuda"):
        gpu = device_memory(device)
        if need.batch(size) > gpu:
            raise DaptError(f"{label}: a float32 batch at image_size {size} takes {size_text(need.batch(size))}, "
                            f"more than the {size_text(gpu)} of {device}; lower batch_size or image_size (at most "
                            f"{largest_size(need.batch_per_pixel, gpu)} fits)")
