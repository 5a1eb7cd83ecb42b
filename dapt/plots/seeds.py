"""Figures of a study's configurations (``dapt.analysis.configurations``): how far each seed lands from its
configuration's mean, and the per-epoch accuracy curves (on the validation images, or on a test subset in runs
recorded before the validation set: ``dapt.analysis.curves``) that show whether each configuration reached a
plateau (``dapt.analysis.budget``).

Like ``dapt.plots.run``, every function returns a ``matplotlib.figure.Figure`` built without pyplot;
accuracies arrive as fractions 0–1 and are drawn in %.
"""
from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure

from dapt.analysis.curves import curve, on_test_images, per_epoch_images
from dapt.analysis.rows import is_synthetic, real_images, setting, training_steps
from dapt.plots.common import (
    MAX_SERIES, REFERENCE_COLOUR, REFERENCE_STYLES, SMALL, STYLES, configuration_order, evaluated_images, group_by,
    new_figure, note_figure, panel_grid, panel_styles, series_styles, synthetic_source, wrap_groups,
)

_TEACHERS = "teacher-stage runs"


def _ordered(configs: list[dict]) -> list[dict]:
    """Student configurations grouped by architecture (``configuration_order`` within), then teacher-stage runs."""
    students = list(dict.fromkeys(str(c.get("student")) for c in configs if c.get("stage") == "distill"))
    distill = sorted((c for c in configs if c.get("stage") == "distill"),
                     key=lambda c: (students.index(str(c.get("student"))), configuration_order(c)))
    return distill + [c for c in configs if c.get("stage") == "teacher"]


def _student(c: dict) -> str:
    return str(c.get("student")) if c.get("stage") == "distill" else _TEACHERS


def seed_spread(configs: list[dict]) -> Figure:
    """How much the seed moves a result: per configuration of several seeds (a row), each seed's final test
    accuracy minus the configuration's mean, in points (dots), and ± one sample standard deviation (bar).
    Colour: the student architecture; grey: teacher-stage runs. The accuracies themselves are in the
    accuracy figure (``plots.study.accuracy_bars``)."""
    shown = [c for c in _ordered(configs) if len(c.get("test_acc_values") or []) > 1]
    if not shown:
        return note_figure("Seed spread", "no configuration has two seeds with a test accuracy: no spread to show")
    fig = new_figure(7.2, 1.3 + 0.3 * len(shown))
    ax = fig.add_subplot()
    rows = {c["run"]: len(shown) - 1 - index for index, c in enumerate(shown)}  # first configuration on top
    colours = {s: (REFERENCE_COLOUR if s == _TEACHERS else STYLES[i]["color"])
               for i, s in enumerate(dict.fromkeys(_student(c) for c in shown))}
    for student, mine in group_by(shown, _student).items():
        y = np.array([rows[c["run"]] for c in mine])
        std = np.array([100 * (c.get("test_acc_std") or 0.0) for c in mine])
        ax.hlines(y, -std, std, color=colours[student], linewidth=6, alpha=0.3)
        dots = [(100 * (v - c["test_acc"]), rows[c["run"]]) for c in mine for v in c["test_acc_values"]]
        ax.scatter(*zip(*dots), color=colours[student], edgecolors="black", linewidths=0.5, s=30, zorder=3,
                   label=student if student == _TEACHERS else f"student {student}")
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(list(rows.values()), list(rows))
    ax.set_xlabel("seed − its configuration's mean (points of test accuracy)")
    ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Seed spread: each seed (dot) against its configuration's mean\n"
                 f"(final test accuracy on {evaluated_images(shown)}; bar: ± one sample std)")
    fig.legend(loc="outside lower center", ncol=3, fontsize=SMALL, frameon=False)
    return fig


def _data(c: dict, real_too: bool) -> str:
    """The training images: "+ 600 ddpm" or "real only", with the number of real ones first when ``real_too``
    ("200 real + 200 ddpm", "600 real")."""
    real = f"{real_images(c):,} real" if real_images(c) is not None else "all real"
    added = f"+ {int(c['n_synthetic']):,} {synthetic_source(c)}" if is_synthetic(c) else ""
    return " ".join(filter(None, [real, added])) if real_too else added or "real only"


# What can tell the curves of one panel apart, each as the words of its label (the batch size shows in the
# steps the curves are drawn against); ``_labels`` keeps the parts that vary.
_LABEL_PARTS = (
    lambda c, real_too: str(c.get("distiller")),
    lambda c, real_too: f"teacher {c['teacher_run']}" if c.get("teacher_run") else "no teacher run",
    _data,
    lambda c, real_too: f"DiffAugment {c.get('diffaug')}",
    lambda c, real_too: f"{c.get('image_size')} px",
    lambda c, real_too: f"{c.get('epochs')} ep",
)


def _labels(configs: list[dict]) -> dict[str, str]:
    """Per configuration, what sets it apart from the others of its panel ("kd · + 600 ddpm · 15 ep"); the
    configurations' own names when that leaves two alike or nothing to say."""
    real_too = len({real_images(c) for c in configs}) > 1
    varying = [part for part in _LABEL_PARTS if len({part(c, real_too) for c in configs}) > 1]
    labels = {c["run"]: " · ".join(part(c, real_too) for part in varying) for c in configs}
    if len(configs) > 1 and all(labels.values()) and len(set(labels.values())) == len(labels):
        return labels
    return {c["run"]: c["run"] for c in configs}


def _curve(history: list[dict]) -> tuple[list[int], list[float]]:
    points = curve(history)
    return [p[0] for p in points], [100 * p[1] for p in points]


def _per_epoch_set(configs: list[dict]) -> str:
    """"validation", "test" (runs recorded before the validation set) or both, for an axis label."""
    kinds = {"test" if on_test_images(c) else "validation" for c in configs}
    return kinds.pop() if len(kinds) == 1 else "validation or (older runs) test"


def _per_epoch_title(configs: list[dict]) -> str:
    """The per-epoch images of every configuration when they agree, e.g. "validation (1,000 training images
    outside train_subset)", else which sets they are."""
    labels = {per_epoch_images(c) for c in configs}
    return labels.pop() if len(labels) == 1 else f"{_per_epoch_set(configs)} images"


def _steps_per_epoch(configs: list[dict]) -> dict[str, float] | None:
    """Each configuration's training steps per epoch (``rows.training_steps``), None when one lacks them."""
    steps = {c["run"]: (training_steps(c), c.get("epochs")) for c in configs}
    if not all(total and epochs for total, epochs in steps.values()):
        return None
    return {run: total / epochs for run, (total, epochs) in steps.items()}


def _setting(c: dict) -> tuple:
    """The panel a configuration's curve belongs in: its setting (student architecture, image size, real
    images: ``rows.setting``, what a comparison holds fixed), or the teacher-stage runs'."""
    return setting(c) if c.get("stage") == "distill" else (_TEACHERS,)


def _setting_title(key: tuple, others: list[tuple]) -> str:
    """"student mobilenet_v2", with what sets its setting apart from the student's ``others`` (image size, real
    images): "student mobilenet_v2 (200 real)"."""
    if key[0] == _TEACHERS:
        return _TEACHERS
    student, size, real = key
    details = [f"{size} px" if any(o[1] != size for o in others) else "",
               (f"{real:,} real" if real is not None else "all real") if any(o[2] != real for o in others) else ""]
    return f"student {student}" + (f" ({', '.join(filter(None, details))})" if others else "")


def _panels(shown: list[dict]) -> list[tuple[str, list[dict], list[dict]]]:
    """(title, configurations, references) per panel: one per setting (``_setting``), the teacher-stage runs
    last. A setting's single no-teacher configuration is its reference, drawn in each of its panels; a
    setting with more than ``MAX_SERIES`` curves gets a panel per few distillers."""
    settings = group_by(shown, _setting)
    panels = []
    for key, mine in settings.items():
        title = _setting_title(key, [other for other in settings if other[0] == key[0] and other != key])
        baselines = [c for c in mine if c.get("distiller") == "none"]
        references = baselines if len(baselines) == 1 else []
        rest = [c for c in mine if c not in references]
        if len(mine) <= MAX_SERIES:
            panels.append((title, rest, references))
            continue
        by_distiller = list(group_by(rest, lambda c: str(c.get("distiller"))).values())
        for part in wrap_groups(by_distiller, MAX_SERIES, shared=len(references)):
            panels.append((f"{title}\n{', '.join(dict.fromkeys(str(c.get('distiller')) for c in part))}",
                           part, references))
    return panels


def _draw(ax, c: dict, x_of, label: str, style: dict) -> None:
    """A configuration's seed-mean curve, and the min–max of its seeds at each evaluated epoch as a band in its
    colour (none with one seed)."""
    epochs, mean = _curve(c["history"])
    ax.plot(x_of(c, epochs), mean, marker="o", markersize=3, label=label, **style)
    seeds = [dict(zip(*_curve(h))) for h in (c.get("histories") or {}).values()]
    if len(seeds) > 1:
        low = [min(s.get(e, math.nan) for s in seeds) for e in epochs]
        high = [max(s.get(e, math.nan) for s in seeds) for e in epochs]
        ax.fill_between(x_of(c, epochs), low, high, color=style["color"], alpha=0.15, linewidth=0)


def accuracy_curves(configs: list[dict]) -> Figure:
    """Accuracy on the per-epoch images (validation; a test subset in older runs) of each configuration: its
    mean over the seeds as a line, the seeds' min–max as a band; a panel per student setting (architecture,
    image size, real images; per few distillers when it has many configurations), teacher-stage runs last, the
    setting's no-teacher baseline black and dashed in each of its panels. Against training steps, so runs over
    other image sets or epochs compare at equal steps (against epochs when a run does not record its steps).
    A curve's label says what sets it apart in its panel; the same label keeps its colour across panels."""
    shown = [c for c in _ordered(configs) if _curve(c.get("history") or [])[0]]
    if not shown:
        return note_figure("Accuracy per epoch", "no configuration has a per-epoch history yet")
    per_epoch = _steps_per_epoch(shown)

    def x_of(c: dict, epochs: list[int]) -> list[float]:
        return [e * per_epoch[c["run"]] for e in epochs] if per_epoch else epochs

    panels = _panels(shown)
    teachers = [mine[0].get("stage") == "teacher" for _, mine, _ in panels]
    labels = [{c["run"]: c["run"] for c in mine} if teacher else _labels(mine)
              for (_, mine, _), teacher in zip(panels, teachers)]
    # a student curve keeps its colour across panels; the teacher-stage runs' names are theirs alone
    shared = iter(panel_styles(label.values() for label, teacher in zip(labels, teachers) if not teacher))
    looks = [series_styles(label.values()) if teacher else next(shared) for label, teacher in zip(labels, teachers)]
    fig, axes = panel_grid(len(panels), panel=(3.6, 4.2), fill=True)
    for ax, (title, mine, references), label, look in zip(axes, panels, labels, looks):
        for c in mine:
            _draw(ax, c, x_of, label[c["run"]], look[label[c["run"]]])
        for c in references:
            _draw(ax, c, x_of, "no teacher", REFERENCE_STYLES[0])
        ax.set(title=title, xlabel="training steps (batches)" if per_epoch else "epoch",
               ylabel=f"{_per_epoch_set(mine + references)} accuracy (%)")
        ax.xaxis.get_major_locator().set_params(integer=True, nbins=4)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), fontsize=SMALL, frameon=False)
    fig.suptitle(f"Accuracy on {_per_epoch_title(shown)}\nmean over seeds (band: min–max of the seeds), "
                 f"against {'training steps' if per_epoch else 'epochs'}")
    return fig
