"""Runs that differ only in their seed are one configuration: group them, and give each configuration's
metrics as the mean ± sample standard deviation over its seeds.

Grouping is by parameters, never by run names: two runs are one configuration when every recorded
parameter is equal except ``seed`` and the keys that do not change what a run computes (``run_dir``,
where data is read, wandb and checkpointing bookkeeping). A reference to another run of the study
(a parameter whose value is another row's run folder, such as ``teacher``) counts as that run's
configuration, so students of per-seed teachers that are themselves one configuration group together. For ``n`` values :math:`x_i` the table gives
:math:`\\bar x = \\frac1n\\sum x_i` and :math:`s = \\sqrt{\\frac{1}{n-1}\\sum (x_i-\\bar x)^2}` (no ``s`` at n = 1).
"""
from __future__ import annotations

import os
import statistics
from pathlib import Path
from typing import Any

from dapt.core.provenance import UNKNOWN
from dapt.core.records import NOT_CONFIGURATION

METRICS = ("test_acc", "best_val_acc", "agreement", "agreement_teacher_right", "agreement_teacher_wrong", "kl",
           "ece", "cka", "teacher_test_acc", "teacher_run_test_acc", "teacher_val_acc", "wall_time_s")
# per-epoch history keys averaged over the seeds
CURVES = ("val_acc", "train_acc")


def _hashable(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(_hashable(v) for v in value)
    return value


def configuration_keys(rows: list[dict[str, Any]]) -> dict[str, tuple]:
    """Run name → its configuration: the stage and every parameter but the ``NOT_CONFIGURATION`` ones, a reference
    to a run of the rows (a value naming its folder, ``runs/<study>/<run>``) replaced by that run's
    configuration. A row without recorded params is its own."""
    by_folder = {Path(str(r["folder"])).parts[-2:]: r for r in rows if r.get("folder")}
    keys: dict[str, tuple] = {}

    def key(row: dict[str, Any], visiting: frozenset) -> tuple:
        if row["run"] in keys:
            return keys[row["run"]]
        params = row.get("params")
        if not params:
            return keys.setdefault(row["run"], ("run", row["run"]))
        items = []
        for name, value in sorted(params.items()):
            if name in NOT_CONFIGURATION:
                continue
            target = by_folder.get(Path(value).parts[-2:]) if isinstance(value, str) and value else None
            if target is not None and target["run"] not in visiting:
                value = ("configuration of", key(target, visiting | {row["run"]}))
            items.append((name, _hashable(value)))
        return keys.setdefault(row["run"], (row["stage"], tuple(items)))

    for row in rows:
        key(row, frozenset())
    return keys


def _boundary(left: str, right: str) -> bool:
    """Whether a name may be cut between these two characters (not inside a word or a number)."""
    return not (left.isalnum() and right.isalnum() and left.isdigit() == right.isdigit())


def label(names: list[str]) -> str:
    """One name for a configuration's runs: ``mnv2_kd_seed{0,1,2}`` for ``mnv2_kd_seed0``… (the part that
    differs, in braces), the run's own name for one run."""
    if len(names) == 1:
        return names[0]
    prefix = os.path.commonprefix(names)
    while prefix and any(len(n) > len(prefix) and not _boundary(n[len(prefix) - 1], n[len(prefix)]) for n in names):
        prefix = prefix[:-1]  # cut at a word or number boundary: {10,11}, not 1{0,1}
    room = min(len(n) for n in names) - len(prefix)
    suffix = os.path.commonprefix([n[::-1] for n in names])[:room][::-1]
    while suffix and any(len(n) > len(suffix) + len(prefix) and not _boundary(n[-len(suffix) - 1], n[-len(suffix)])
                         for n in names):
        suffix = suffix[1:]
    middles = [n[len(prefix):len(n) - len(suffix)] for n in names]
    return f"{prefix}{{{','.join(middles)}}}{suffix}"


def _seed(row: dict[str, Any]) -> Any:
    return (row.get("params") or {}).get("seed")


def mean_std(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (n − 1); the deviation is None below two values."""
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else None)


def _mean_history(members: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per epoch that every seed recorded, the mean of ``CURVES`` over the seeds."""
    histories = [[h for h in m.get("history") or [] if isinstance(h.get("epoch"), int)] for m in members]
    histories = [h for h in histories if h]
    if not histories:
        return []
    epochs = sorted(set.intersection(*({h["epoch"] for h in history} for history in histories)))
    out = []
    for epoch in epochs:
        entry = {"epoch": epoch}
        for key in CURVES:
            values = [h[key] for history in histories for h in history
                      if h["epoch"] == epoch and isinstance(h.get(key), (int, float))]
            if len(values) == len(histories):
                entry[key] = statistics.fmean(values)
        out.append(entry)
    return out


def _status(members: list[dict[str, Any]]) -> str:
    counts: dict[str, int] = {}
    for m in members:
        counts[str(m.get("status"))] = counts.get(str(m.get("status")), 0) + 1
    if len(counts) == 1:
        return next(iter(counts))
    return ", ".join(f"{n} {status}" for status, n in counts.items())


def configurations(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, shaped like ``rows.collect``'s rows so the same tables apply.

    ``run`` is the configuration's label; ``runs`` and ``seeds`` its members (ordered by seed); each
    ``METRICS`` key holds the mean over the members that have it, with ``<key>_std`` (sample standard
    deviation, None at n < 2) and ``<key>_values``; ``n`` is the number of test accuracies;
    ``missing`` the members without one; ``history`` the seed-mean per-epoch curve; ``histories`` each
    member's own; ``codes``, ``precisions``, ``model_precisions`` and ``teacher_precisions`` the distinct
    labels of what recorded its members (``rows``; sorted; a row without them reads ``unknown``, and one without
    teacher outputs adds no teacher precision).
    """
    keys = configuration_keys(rows)
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(keys[row["run"]], []).append(row)
    out = []
    for key, members in groups.items():
        members = sorted(members, key=lambda r: (_seed(r) is None, str(_seed(r)), r["run"]))
        names = [m["run"] for m in members]
        row = {k: v for k, v in members[0].items() if k not in ("params", "history", "folder", "provenance")}
        row.update(run=label(names), runs=names, seeds=[_seed(m) for m in members], key=key,
                   status=_status(members), history=_mean_history(members),
                   histories={m["run"]: m.get("history") or [] for m in members},
                   missing=[m["run"] for m in members if not isinstance(m.get("test_acc"), (int, float))])
        for metric in METRICS:
            values = [float(m[metric]) for m in members if isinstance(m.get(metric), (int, float))]
            row[metric], row[f"{metric}_std"] = mean_std(values)
            row[f"{metric}_values"] = values
        row["n"] = len(row["test_acc_values"])
        for labels, key in (("codes", "code"), ("precisions", "precision"), ("model_precisions", "model_precision")):
            row[labels] = sorted({m.get(key) or UNKNOWN for m in members})
        row["teacher_precisions"] = sorted({m["teacher_precision"] for m in members if m.get("teacher_precision")})
        out.append(row)
    return out
