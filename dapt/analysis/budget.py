"""Was a configuration trained to a plateau, or was it still improving when its budget ran out?

Read from the per-epoch history in ``metrics.json`` (accuracy on the evaluation images, averaged over
the configuration's seeds). With :math:`E` the last evaluated epoch and :math:`k = \\lceil E/3 \\rceil` epochs (the
last third), the gain is :math:`g = k\\,\\hat\\beta`, :math:`\\hat\\beta` the least-squares slope of accuracy per epoch
over the evaluated epochs from :math:`E-k` to :math:`E` (at least the last two; with every epoch evaluated and
:math:`k \\le 2` exactly :math:`a_E - a_{E-k}`; for long runs the fit averages out the evaluation images'
epoch-to-epoch noise; with ``eval_every`` > 1 the slope is per epoch, not per evaluation); the configuration **plateaued** when
:math:`g <` 1 point, and was **still improving** otherwise; below two epochs there is no curve to judge. A comparison
between configurations still improving tests how fast they learn within the budget, not where they end.
"""
from __future__ import annotations

import math
from typing import Any

from dapt.analysis.rows import markdown_table

PLATEAU_POINTS = 1.0
RULE = (f"**Plateau rule**: over the last third of a configuration's epochs (the last ⌈E/3⌉ of its E epochs), "
        f"its accuracy on the evaluation images (mean over its seeds; the least-squares line through those epochs, "
        f"which for up to 3 epochs is the last minus the first) rose by less than {PLATEAU_POINTS:.0f} point: "
        f"**plateaued**; by {PLATEAU_POINTS:.0f} point or more: **still improving** at its last epoch, so more "
        f"epochs would likely have raised it and a comparison with it tests the budget, not the claim. A cosine "
        f"schedule anneals to zero at the last epoch, so a plateaued run's last epochs gain little however long "
        f"it ran; a run still gaining a point per third of its epochs had not converged.")


def plateau(history: list[dict[str, Any]]) -> dict[str, Any]:
    """The plateau rule on one (seed-mean) history: the epochs compared, their accuracies, the gain in
    points, the best epoch, the last training accuracy, and ``status``: plateaued / still improving /
    unknown (fewer than two epochs with an accuracy)."""
    curve = [(h["epoch"], float(h["test_acc"])) for h in history if isinstance(h.get("test_acc"), (int, float))]
    train = [float(h["train_acc"]) for h in history if isinstance(h.get("train_acc"), (int, float))]
    if len(curve) < 2:
        return {"status": "unknown", "epochs": curve[-1][0] if curve else None}
    end_epoch, end = curve[-1]
    k = math.ceil(end_epoch / 3)
    window = [point for point in curve if point[0] >= end_epoch - k]
    window = window if len(window) >= 2 else curve[-2:]
    start_epoch, start = window[0]
    gain = 100 * k * _slope(window)
    return {"status": "plateaued" if gain < PLATEAU_POINTS else "still improving", "epochs": end_epoch,
            "from_epoch": start_epoch, "from_acc": start, "last_acc": end, "gain_pt": gain,
            "best_epoch": max(curve, key=lambda point: point[1])[0], "train_acc": train[-1] if train else None}


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of accuracy per epoch through ``points`` (epoch, accuracy)."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def plateaus(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The plateau rule for every configuration with a history, students first (a teacher-stage run's
    budget matters too when it is the pre-trained comparison point)."""
    out = [{"run": c["run"], "stage": c.get("stage"), "student": c.get("student"), "n": len(c.get("histories") or {}),
            **plateau(c.get("history") or [])} for c in configs]
    return sorted(out, key=lambda row: row["stage"] != "distill")


PLATEAU_COLUMNS = [("run", "configuration"), ("n", "seeds"), ("epochs", "epochs"), ("from_epoch", "from epoch"),
                   ("from_acc", "eval acc % at that epoch"), ("last_acc", "eval acc % at the last epoch"),
                   ("gain_pt", "gain since (points, least-squares)"), ("best_epoch", "best epoch"),
                   ("train_acc", "train acc % at the last epoch"), ("status", "verdict")]


def plateau_table(rows: list[dict[str, Any]]) -> str:
    shown = [{**row, "from_acc": _pct(row.get("from_acc")), "last_acc": _pct(row.get("last_acc")),
              "train_acc": _pct(row.get("train_acc")),
              "gain_pt": None if row.get("gain_pt") is None else f"{row['gain_pt']:+.2f}"} for row in rows]
    return markdown_table(shown, PLATEAU_COLUMNS)


def _pct(value: float | None) -> str | None:
    return None if value is None else f"{100 * value:.2f}"


def _all(rows: list) -> str:
    return f"all {len(rows)} student configurations" if len(rows) > 1 else "the one student configuration"


def sentence(rows: list[dict[str, Any]]) -> str:
    """How many student configurations plateaued, from the plateau rule's rows (and which teacher-stage
    runs, such as the pre-trained comparison point, were still improving)."""
    students = [r for r in rows if r.get("stage") == "distill"]
    judged = [r for r in students if r["status"] != "unknown"]
    teachers = [r["run"] for r in rows if r.get("stage") == "teacher" and r["status"] == "still improving"]
    after = (f" Teacher-stage run{'s' if len(teachers) > 1 else ''} still improving at {'their' if len(teachers) > 1 else 'its'} "
             f"last epoch too: {', '.join(teachers)}." if teachers else "")
    if not judged:
        return ("Plateau: no student configuration has a per-epoch history of two epochs or more, so whether "
                "they had converged is unknown." + after)
    rising = [r for r in judged if r["status"] == "still improving"]
    unknown = len(students) - len(judged)
    tail = f" ({unknown} without a history of two epochs or more)" if unknown else ""
    if not rising:
        return (f"Plateau: {_all(judged)} had plateaued (gains under "
                f"{PLATEAU_POINTS:.0f} point over the last third of their epochs){tail}, so their comparisons are "
                f"not limited by the budget." + after)
    low, high = min(rising, key=lambda r: r["gain_pt"]), max(rising, key=lambda r: r["gain_pt"])
    span = (f"+{low['gain_pt']:.2f} points ({low['run']}, epochs {low['from_epoch']}–{low['epochs']})"
            if low is high else
            f"from +{low['gain_pt']:.2f} ({low['run']}, epochs {low['from_epoch']}–{low['epochs']}) to "
            f"+{high['gain_pt']:.2f} points ({high['run']}, epochs {high['from_epoch']}–{high['epochs']})")
    if len(rising) == len(judged):
        verb, their = ("were", "their") if len(judged) > 1 else ("was", "its")
        return (f"Plateau: {_all(judged)} {verb} still improving at {their} last epoch "
                f"(gains over the last third of {their} epochs {span}){tail}, so these comparisons test the budget, "
                f"not the claim: which method learns faster in these epochs, not which ends higher." + after)
    return (f"Plateau: {len(rising)} of {len(judged)} student configurations were still improving at their last "
            f"epoch ({', '.join(r['run'] for r in rising)}; gains {span}){tail}: a comparison with one of them "
            f"tests the budget, not the claim; the rest had plateaued." + after)
