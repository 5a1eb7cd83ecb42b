"""What a study's epoch budget can show: was each configuration trained to a plateau, and how do the
students' epochs stand against a short budget and the paper's setting (both parameters of the report stage)?

The **plateau rule**, on the per-epoch history in ``metrics.json`` (accuracy on the validation images; on a
test subset in runs recorded before them: ``curves``), averaged over the configuration's seeds: with :math:`E`
the last evaluated epoch and :math:`k = \\lceil E/3 \\rceil` epochs (the last third), the gain is
:math:`g = k\\,\\hat\\beta`, :math:`\\hat\\beta` the least-squares slope of accuracy per epoch over the evaluated
epochs from :math:`E-k` to :math:`E` (at least the last two; with every epoch evaluated and :math:`k \\le 2`
exactly :math:`a_E - a_{E-k}`; for long runs the fit averages out the per-epoch images' epoch-to-epoch noise;
with ``eval_every`` > 1 the slope is per epoch, not per evaluation); the configuration **plateaued** when
:math:`g <` ``PLATEAU_POINTS``, and was **still improving** otherwise; below two epochs there is no curve to
judge. A comparison between configurations still improving tests how fast they learn within the budget, not
where they end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from dapt.analysis.curves import curve as per_epoch_curve, on_test_images

PLATEAU_POINTS = 1.0


@dataclass(frozen=True)
class Plateau:
    """The plateau rule on one (seed-mean) history: ``status`` plateaued / still improving / unknown (fewer
    than two epochs with an accuracy), the epochs compared and their accuracies, the gain in points, the best
    epoch, the training accuracy of the history's last epoch, which images the accuracies are on (``on``:
    validation, or test for a run recorded before the validation set), and how many epochs were evaluated."""

    status: str
    epochs: int | None = None
    from_epoch: int | None = None
    from_acc: float | None = None
    last_acc: float | None = None
    gain_pt: float | None = None
    best_epoch: int | None = None
    train_acc: float | None = None
    on: str = "validation"
    evaluations: int = 0


def plateau(history: list[dict[str, Any]], on_test: bool = False) -> Plateau:
    """The plateau rule on ``history``, whose per-epoch accuracies are on test images when ``on_test`` (a run
    recorded before the validation set: ``curves.on_test_images``)."""
    curve = per_epoch_curve(history)
    on = "test" if on_test else "validation"
    last = history[-1].get("train_acc") if history else None
    train_acc = float(last) if isinstance(last, (int, float)) else None  # the last epoch's, not an earlier one's
    if len(curve) < 2:
        return Plateau("unknown", epochs=curve[-1][0] if curve else None, train_acc=train_acc, on=on,
                       evaluations=len(curve))
    end_epoch, end = curve[-1]
    k = math.ceil(end_epoch / 3)
    window = [point for point in curve if point[0] >= end_epoch - k]
    window = window if len(window) >= 2 else curve[-2:]
    start_epoch, start = window[0]
    gain = 100 * k * _slope(window)
    return Plateau("plateaued" if gain < PLATEAU_POINTS else "still improving", epochs=end_epoch,
                   from_epoch=start_epoch, from_acc=start, last_acc=end, gain_pt=gain,
                   best_epoch=max(curve, key=lambda point: point[1])[0], train_acc=train_acc, on=on,
                   evaluations=len(curve))


def _slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of accuracy per epoch through ``points`` (epoch, accuracy)."""
    mean_x = sum(x for x, _ in points) / len(points)
    mean_y = sum(y for _, y in points) / len(points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / sum((x - mean_x) ** 2 for x, _ in points)


def plateaus(configs: list[dict[str, Any]]) -> dict[str, Plateau]:
    """Configuration label → the plateau rule on its seed-mean history, students first (a teacher-stage
    run's budget matters too when it is the pre-trained comparison point)."""
    ordered = sorted(configs, key=lambda c: c.get("stage") != "distill")
    return {c["run"]: plateau(c.get("history") or [], on_test_images(c)) for c in ordered}


@dataclass(frozen=True)
class Budget:
    """The students' fewest and most epochs (None when not recorded) against the report's settings:
    fewer than ``short_epochs`` is a short budget; ``paper_epochs`` is the paper's. ``kind``: short (every
    student), mixed (some), paper (every student at least the paper's), between, or unknown (no epochs or
    no settings)."""

    epochs: tuple[int, int] | None
    paper_epochs: int | None
    short_epochs: int | None

    @property
    def kind(self) -> str:
        if self.epochs is None or self.paper_epochs is None or self.short_epochs is None:
            return "unknown"
        fewest, most = self.epochs
        if most < self.short_epochs:
            return "short"
        if fewest < self.short_epochs:
            return "mixed"
        return "paper" if fewest >= self.paper_epochs else "between"


def budget(configs: list[dict[str, Any]], paper_epochs: int | None, short_epochs: int | None) -> Budget:
    """The students' budget (teacher-stage runs have their own) against the report's settings."""
    epochs = [int(c["epochs"]) for c in configs
              if c.get("stage") == "distill" and isinstance(c.get("epochs"), (int, float))]
    return Budget((min(epochs), max(epochs)) if epochs else None, paper_epochs, short_epochs)
