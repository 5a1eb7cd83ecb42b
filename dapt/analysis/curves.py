"""Which images a run's per-epoch numbers are on, read from its record.

A run evaluates its validation images after each evaluated epoch (``history`` entries ``val_acc``,
``val_agreement``, ``val_kl``; ``val_images`` and ``val_source`` say which images, ``best_val_acc`` the best)
and reads the test set once, at the end. Runs recorded before the validation set existed (``runs/`` keeps
some) evaluated a fixed stratified subset of the test set instead: their records say so with ``val_source``
``TEST_SUBSET`` (``benchmarks/migrate_records.py`` rewrote them in these keys once), and ``per_epoch_images``
labels their curves test, never validation.
"""
from __future__ import annotations

from typing import Any

# val_source of a run recorded before the validation set: its epochs were evaluated on a subset of the test set
TEST_SUBSET = "test images"


def on_test_images(record: dict[str, Any]) -> bool:
    """Whether the per-epoch numbers of a run record (its ``metrics.json``, a ``rows`` row or a configuration)
    are on test images (a run recorded before the validation set)."""
    return record.get("val_source") == TEST_SUBSET


def curve(history: list[dict[str, Any]], key: str = "val_acc") -> list[tuple[int, float]]:
    """(epoch, value) of each evaluated epoch of ``history``, for ``key``."""
    return [(entry["epoch"], float(entry[key])) for entry in history
            if isinstance(entry.get("epoch"), int) and isinstance(entry.get(key), (int, float))]


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def per_epoch_images(record: dict[str, Any]) -> str:
    """Which images the per-epoch numbers of a run record (its ``metrics.json`` or a ``rows`` row) are on, for a
    label: "validation (1,000 training images outside train_subset)", and for an older run "test (1,000 of
    10,000 images)" or "test (all 10,000 images)"."""
    count, source = _count(record.get("val_images")), record.get("val_source")
    if on_test_images(record):
        total = _count(record.get("test_images"))
        if count is not None and total is not None:
            return f"test (all {total:,} images)" if count >= total else f"test ({count:,} of {total:,} images)"
        return f"test ({count:,} images)" if count is not None else "test images"
    if count is None:
        return "validation images"
    return f"validation ({count:,} {source})" if source else f"validation ({count:,} images)"
