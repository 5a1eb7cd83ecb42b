"""One-time migration (issue 31): rewrite the run records of ``runs/`` kept from before the validation set in
the current keys, so that the readers know one format.

Those runs evaluated their epochs on a fixed stratified subset of the test set and recorded it as
``eval_images``, ``best_eval_acc``, ``teacher_eval_acc`` and, per epoch, ``test_acc``, ``agreement`` and
``kl``. The current format records the per-epoch images as ``val_images`` and ``val_source`` and the numbers
as ``best_val_acc``, ``teacher_val_acc``, ``val_acc``, ``val_agreement`` and ``val_kl``. A migrated record
keeps its numbers and says where they are from: ``val_source`` is ``curves.TEST_SUBSET``, so the report
still labels them test images, never validation ones.

    PYTHONPATH=. python benchmarks/migrate_records.py [runs/<study> ...]   # default: every study in runs/

Idempotent: a record already in the current keys is left as it is (byte for byte).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from dapt.analysis.curves import TEST_SUBSET
from dapt.core.files import atomic_write_json

TOP = {"eval_images": "val_images", "best_eval_acc": "best_val_acc", "teacher_eval_acc": "teacher_val_acc"}
PER_EPOCH = {"test_acc": "val_acc", "agreement": "val_agreement", "kl": "val_kl"}


def migrated(metrics: dict) -> dict | None:
    """``metrics`` in the current keys, or None when it holds none of the older ones."""
    if metrics.get("stage") not in ("teacher", "distill") or "eval_images" not in metrics:
        return None
    out = {}
    for key, value in metrics.items():
        out[TOP.get(key, key)] = value
        if key == "eval_images":
            out["val_source"] = TEST_SUBSET
    out["history"] = [{PER_EPOCH.get(key, key): value for key, value in entry.items()}
                      for entry in metrics.get("history") or []]
    return out


def main(folders: list[str]) -> None:
    studies = [Path(f) for f in folders] or sorted(p for p in Path("runs").iterdir() if p.is_dir())
    for study in studies:
        changed = 0
        for path in sorted(study.glob("*/metrics.json")):
            new = migrated(json.loads(path.read_text()))
            if new is not None:
                atomic_write_json(path, new)
                changed += 1
        print(f"{study}: {changed} records migrated")


if __name__ == "__main__":
    main(sys.argv[1:])
