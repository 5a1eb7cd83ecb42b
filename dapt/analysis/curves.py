"""Which images a run's per-epoch numbers are on, read from its record.

A run evaluates its validation images after each evaluated epoch (``history`` entries ``val_acc``,
``val_agreement``, ``val_kl``; ``val_images`` and ``val_source`` say which images, ``best_val_acc`` the best)
and reads the test set once, at the end. Runs recorded before the validation set existed (``runs/`` keeps
some) evaluated a fixed stratified subset of the test set instead (``test_acc``, ``agreement`` and ``kl`` per
epoch; ``eval_images``, ``best_eval_acc``). Readers take whichever a history holds through ``per_epoch_key``
and label it with ``per_epoch_images``, so an older curve is never shown as a validation curve.
"""
from __future__ import annotations

from typing import Any

# per-epoch history key of a run -> that of a run recorded before the validation set
OLDER_KEYS = {"val_acc": "test_acc", "val_agreement": "agreement", "val_kl": "kl"}


def on_test_images(history: list[dict[str, Any]]) -> bool:
    """Whether the per-epoch numbers of ``history`` are on test images (a run recorded before the validation set)."""
    return any("test_acc" in entry for entry in history)


def per_epoch_key(history: list[dict[str, Any]], key: str = "val_acc") -> str:
    """The history key that holds ``key`` (``val_acc``, ``val_agreement`` or ``val_kl``) in this history: the
    older run's name for it when the history is on test images."""
    return OLDER_KEYS[key] if on_test_images(history) else key


def curve(history: list[dict[str, Any]], key: str = "val_acc") -> list[tuple[int, float]]:
    """(epoch, value) of each evaluated epoch of ``history``, for ``key`` or its older name (``per_epoch_key``)."""
    name = per_epoch_key(history, key)
    return [(entry["epoch"], float(entry[name])) for entry in history
            if isinstance(entry.get("epoch"), int) and isinstance(entry.get(name), (int, float))]


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def per_epoch_images(record: dict[str, Any]) -> str:
    """Which images the per-epoch numbers of a run record (its ``metrics.json`` or a ``rows`` row) are on, for a
    label: "validation (1,000 training images outside train_subset)", and for an older run "test (1,000 of
    10,000 images)" or "test (all 10,000 images)"."""
    older = record.get("eval_images") is not None and record.get("val_images") is None
    if older or on_test_images(record.get("history") or []):
        evaluated, total = _count(record.get("eval_images")), _count(record.get("test_images"))
        if evaluated is not None and total is not None:
            return f"test (all {total:,} images)" if evaluated >= total else f"test ({evaluated:,} of {total:,} images)"
        return f"test ({evaluated:,} images)" if evaluated is not None else "test images"
    count, source = _count(record.get("val_images")), record.get("val_source")
    if count is None:
        return "validation images"
    return f"validation ({count:,} {source})" if source else f"validation ({count:,} images)"
