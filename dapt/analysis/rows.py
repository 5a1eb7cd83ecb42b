"""A study's runs side by side: one row per run, read from its ``metrics.json``, and the Markdown table of them.

Every accuracy in a row is the run's final accuracy on all test images at the run's own image size
(``image_size``, the "px" column). A teacher appears twice, each time labelled: in its own row (its own
run, its own size) and, in the rows of its students, as ``teacher_test_acc`` (the teacher on the
students' test images resized to its size: what agreement is measured against). The per-epoch numbers are
on other images (``curves.per_epoch_images``: the validation images, or a test subset in older runs) and are
labelled as such wherever they appear.

Each row also says what recorded it (``dapt.core.provenance``): ``code`` (the code version's label),
``precision`` (every role's precision), and what decides whether two runs' numbers are alike:
``model_precision``, the precision that trained the model the row's accuracy is of (a distill run's student,
a teacher-stage run's own model), and ``teacher_precision``, that of the teacher outputs a distill run learned
from (None without them). A run recorded before provenance existed reads ``unknown``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dapt.analysis.curves import per_epoch_images
from dapt.core.files import read_json
from dapt.core.provenance import UNKNOWN, code_label, precision_label

COLUMNS = [
    ("run", "run"), ("student", "student"), ("image_size", "px"), ("teacher", "teacher (init, px)"),
    ("distiller", "distiller"), ("data", "training images"), ("test_acc", "test acc % (all test images, at px)"),
    ("teacher_test_acc", "teacher acc % (on this run's test images)"), ("agreement", "agreement %"),
    ("kl", "KL(t‖s)"), ("ece", "ECE %"), ("cka", "CKA"), ("epochs", "epochs"), ("wall_time_s", "time s"),
    ("status", "status"),
]
_PERCENT = {"teacher_acc_on_synthetic", "test_acc", "teacher_test_acc", "teacher_run_test_acc", "teacher_val_acc",
            "best_val_acc", "agreement", "ece"}
IDEAL = "holdout"  # the generator whose images are real ones: what a perfect generator would draw
INIT_LABELS = {"fr": "from scratch", "lp": "ImageNet, linear probe", "ft": "ImageNet, fine-tuned"}
# The role under which a stage's provenance records the precision of the model it trains.
TRAINED_ROLE = {"distill": "student", "teacher": "teacher"}


def _teacher_cell(metrics: dict, teacher_run: str | None, distiller: str | None) -> str:
    """E.g. "lite2_ft: efficientnet_lite2 (ft), 48 px"; a ``none`` student is only compared with its teacher."""
    if not teacher_run:
        return "— (no teacher)"
    init = metrics.get("teacher_init")
    size = metrics.get("teacher_image_size")
    return (f"{Path(teacher_run).name}: {metrics.get('teacher_model')}"
            + (f" ({init})" if init else "") + (f", {size} px" if size is not None else "")
            + (" — compared with, not distilled from" if distiller == "none" else ""))


def real_images(row: dict[str, Any]) -> int | None:
    """The run's number of real training images (None: the whole training set, size not recorded)."""
    value = row.get("n_real")
    value = row.get("train_subset") if value is None else value
    return int(value) if isinstance(value, (int, float)) else None


def is_synthetic(row: dict[str, Any]) -> bool:
    return bool(row.get("n_synthetic"))


def recorded_by(stage: str, provenance: dict[str, Any] | None) -> dict[str, Any]:
    """The provenance fields of a row of ``stage`` (module docstring) from its record's ``provenance``."""
    precision = (provenance or {}).get("precision")
    precision = precision if isinstance(precision, dict) else {}
    return {"provenance": provenance, "code": code_label(provenance), "precision": precision_label(provenance),
            "model_precision": precision.get(TRAINED_ROLE[stage]) or UNKNOWN,
            "teacher_precision": precision.get("teacher") if stage == "distill" else None}


def data_cell(row: dict[str, Any]) -> str:
    """E.g. "6,000 real" or "600 real + 600 synthetic (ddpm, 1x, DiffAugment S)"."""
    real = real_images(row)
    text = f"{real:,} real" if real is not None else "all real"
    if is_synthetic(row):
        details = [row.get("synthetic_run"), row.get("synset_size"),
                   f"DiffAugment {row['diffaug']}" if row.get("diffaug") not in (None, "none") else None]
        text += f" + {int(row['n_synthetic']):,} synthetic ({', '.join(str(d) for d in details if d)})"
    elif row.get("diffaug") not in (None, "none"):
        text += f" (DiffAugment {row['diffaug']})"
    return text


def collect(study_dir: str | Path, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per run folder of ``study_dir`` (teachers first, then students), from its metrics.json.

    What a run was asked (image size, model, init, student, distiller, DiffAugment) is read from its ``params``,
    which a record holds from its start; what it measured, from the record; missing values are None. Each
    row also keeps its run's ``params``, per-epoch ``history`` and ``folder`` (for ``configurations``), and what
    its per-epoch numbers are on: ``val_images`` and ``val_source`` (``curves``); and what recorded it
    (``recorded_by``: its raw ``provenance`` and the labels of the module docstring).
    ``epochs``, ``train_subset`` and ``batch_size`` are copied from the params only when the params have them.
    """
    rows = []
    for folder in sorted(Path(study_dir).iterdir()):
        metrics = read_json(folder / "metrics.json") if folder.is_dir() else None
        if metrics is None or folder.name in exclude or metrics.get("stage") not in ("teacher", "distill"):
            continue
        params = metrics.get("params") or {}
        row = {"run": folder.name, "stage": metrics["stage"], "status": metrics.get("status"),
               "folder": folder.as_posix(), "params": params, "history": metrics.get("history") or [],
               **{key: metrics.get(key) for key in ("test_acc", "best_val_acc", "best_epoch", "val_images",
                                                     "val_source", "test_images", "wall_time_s", "ece")},
               "image_size": params.get("image_size"),
               **recorded_by(metrics["stage"], metrics.get("provenance"))}
        row.update({key: params[key] for key in ("epochs", "train_subset", "batch_size") if key in params})
        if metrics["stage"] == "teacher":
            init, model = params.get("init"), params.get("model")
            row.update(student=model, model=model, init=init, distiller="—", n_real=metrics.get("n_real"),
                       teacher=f"— (own run: {INIT_LABELS.get(init, init)})")
        else:
            teacher_run = metrics.get("teacher_run")
            distiller = params.get("distiller")
            row.update(student=params.get("student"), distiller=distiller,
                       teacher_run=Path(teacher_run).name if teacher_run else None,
                       teacher=_teacher_cell(metrics, teacher_run, distiller),
                       **{k: metrics.get(k) for k in (
                           "teacher_model", "teacher_init", "teacher_image_size", "teacher_run_test_acc",
                           "teacher_test_acc", "teacher_val_acc", "agreement",
                           "agreement_teacher_right",
                           "agreement_teacher_wrong", "kl", "cka", "teacher_ece", "n_real", "n_synthetic",
                           "synset_size")},
                       diffaug=params.get("diffaug"),
                       synthetic_run=Path(metrics["synthetic_run"]).name if metrics.get("synthetic_run") else None)
        row["data"] = data_cell(row)
        rows.append(row)
    return sorted(rows, key=lambda r: (r["stage"] != "teacher", r.get("student") or "", r["run"]))


GENERATED_COLUMNS = [("run", "run"), ("generator", "generator"), ("data", "trained on / prompted by"),
                     ("n_images", "images"), ("teacher_run", "judged by"),
                     ("teacher_acc_on_synthetic", "teacher acc % on them"), ("wall_time_s", "time s"),
                     ("status", "status")]


def collect_generated(study_dir: str | Path) -> list[dict[str, Any]]:
    """One row per generate run of ``study_dir``: what it made and how much of it its teacher recognises."""
    rows = []
    for folder in sorted(Path(study_dir).iterdir()):
        metrics = read_json(folder / "metrics.json") if folder.is_dir() else None
        if metrics is None or metrics.get("stage") != "generate":
            continue
        params = metrics.get("params") or {}
        generator = params.get("generator")
        subset = params.get("train_subset")
        data = (f"{subset:,} real images" if isinstance(subset, int) else "all real images") \
            if generator == "ddpm" else "class-name prompts"
        if generator == "holdout":  # an ideal generator: real images outside the students' subset
            data = f"real images outside the {subset:,}-image subset" if isinstance(subset, int) else "real images"
        rows.append({"run": folder.name, "stage": "generate", "status": metrics.get("status"),
                     "generator": generator, "data": data, "n_images": metrics.get("n_images"),
                     "teacher_run": Path(metrics["teacher_run"]).name if metrics.get("teacher_run") else None,
                     "teacher_acc_on_synthetic": metrics.get("teacher_acc_on_synthetic"),
                     "wall_time_s": metrics.get("wall_time_s")})
    return rows


def cell(key: str, value: Any) -> str:
    """One table cell: accuracies in %, KL and CKA to 3 decimals, counts with thousands separators."""
    if value is None:
        return "–"
    if key in _PERCENT and isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.3f}" if key in ("kl", "cka") else f"{value:.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]] = COLUMNS) -> str:
    """The table as Markdown (rendered by the notebook; readable as plain text too).

    "test acc" is each row's own final accuracy on all test images at its "px"; for a teacher-stage
    row that is its own run. "teacher acc" is, in a student's row, its teacher on that student's test
    images (resized to the teacher's px), the reference of the agreement column.
    """
    head = "| " + " | ".join(title for _, title in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(cell(key, row.get(key)) for key, _ in columns) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def setting(row: dict[str, Any]) -> tuple:
    """What a fair comparison holds fixed: architecture, image size and the real training images."""
    return row.get("student"), row.get("image_size"), real_images(row)


def training_steps(row: dict[str, Any]) -> int | None:
    """A run's optimisation steps: epochs × full batches of its training set (the ragged tail is dropped)."""
    epochs, batch, real = row.get("epochs"), row.get("batch_size"), real_images(row)
    if not all(isinstance(v, (int, float)) for v in (epochs, batch, real)):
        return None
    return int(epochs) * max(1, (int(real) + int(row.get("n_synthetic") or 0)) // int(batch))


def _same_steps(steps: int | None, other: int | None) -> bool:
    """Whether two runs took as many optimisation steps, within 5%."""
    return bool(steps and other) and abs(other - steps) <= 0.05 * steps


def synthetic_gains(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per student distilled on real + synthetic images: its accuracy minus that of the run with the
    same setting, distiller and teacher on the real images only (the same DiffAugment and epochs when there is
    one; ``step_ratio`` is the synthetic run's training steps over that run's, > 1 for the same epochs over a
    larger set), and, when that run took other steps and the study has one, minus that of a real-only run with
    the same DiffAugment trained for as many steps (±5%): what the synthetic images add beyond the longer
    training."""
    out = []
    for r in rows:
        if r["stage"] != "distill" or not is_synthetic(r) or r.get("test_acc") is None:
            continue
        twins = [o for o in rows if o["stage"] == "distill" and not is_synthetic(o) and o.get("test_acc") is not None
                 and setting(o) == setting(r) and o.get("distiller") == r.get("distiller")
                 and o.get("teacher_run") == r.get("teacher_run")]
        if not twins:
            continue
        twin = max(twins, key=lambda o: (o.get("diffaug") == r.get("diffaug"), o.get("epochs") == r.get("epochs")))
        steps, twin_steps = training_steps(r), training_steps(twin)
        gain = {"run": r["run"], "real_run": twin["run"], "student": r["student"], "distiller": r["distiller"],
                "real_images": real_images(r), "synthetic_images": int(r["n_synthetic"]),
                "synset_size": r.get("synset_size"), "acc": r["test_acc"], "real_acc": twin["test_acc"],
                "step_ratio": steps / twin_steps if steps and twin_steps else None,
                "same_steps": _same_steps(steps, twin_steps),
                "diffaug": r.get("diffaug"), "real_diffaug": twin.get("diffaug"),
                "gain_pt": 100 * (r["test_acc"] - twin["test_acc"])}
        matched = [] if gain["same_steps"] else [
            o for o in twins if o.get("diffaug") == r.get("diffaug") and _same_steps(steps, training_steps(o))]
        if matched:
            control = min(matched, key=lambda o: abs(training_steps(o) - steps))
            gain.update(same_steps_run=control["run"], same_steps_acc=control["test_acc"],
                        same_steps_gain_pt=100 * (r["test_acc"] - control["test_acc"]))
        out.append(gain)
    return out


def run_summary(metrics: dict[str, Any]) -> str:
    """The final numbers of one run, one per line, each saying which images and image size it is on.

    Read from the run's ``metrics.json`` dict; numbers not (yet) recorded are left out. The best
    per-epoch accuracy is not listed: it is on the validation images and not comparable with these; the
    teacher's accuracy on those images is, as the reference line of the per-epoch curves.
    """
    total = metrics.get("test_images")
    everything = f"all {int(total):,} test images" if isinstance(total, (int, float)) else "all test images"
    size, t_size = metrics.get("image_size"), metrics.get("teacher_image_size")
    px = f", {size} px" if size is not None else ""
    resized = (f", {size} px resized to {t_size} px" if size is not None and t_size is not None and t_size != size
               else px)
    per_epoch = per_epoch_images(metrics)
    teacher = Path(str(metrics["teacher_run"])).name if metrics.get("teacher_run") else "teacher"
    t_own = f", {t_size} px" if t_size is not None else ""
    who = "student" if metrics.get("stage") == "distill" else "model"
    lines = [
        (f"{who} test accuracy ({everything}{px})", metrics.get("test_acc"), "%"),
        (f"teacher {teacher}, its own run ({everything}{t_own})", metrics.get("teacher_run_test_acc"), "%"),
        (f"teacher on this run's test inputs ({everything}{resized}): what agreement is measured against",
         metrics.get("teacher_test_acc"), "%"),
        (f"teacher on the per-epoch images: {per_epoch}{resized}; the curves' dashed line",
         metrics.get("teacher_val_acc"), "%"),
        (f"top-1 agreement with the teacher ({everything})", metrics.get("agreement"), "%"),
        ("  on the images the teacher gets right", metrics.get("agreement_teacher_right"), "%"),
        ("  on the images the teacher gets wrong", metrics.get("agreement_teacher_wrong"), "%"),
        (f"KL(teacher ‖ student) in nats ({everything})", metrics.get("kl"), ""),
        (f"{who} ECE ({everything})", metrics.get("ece"), "%"),
        (f"teacher ECE ({everything})", metrics.get("teacher_ece"), "%"),
        (f"linear CKA of penultimate features ({everything})", metrics.get("cka"), ""),
    ]
    shown = [(label, value, unit) for label, value, unit in lines if isinstance(value, (int, float))]
    if not shown:
        return "no final numbers yet"
    return "\n".join((f"{100 * value:6.2f}%" if unit == "%" else f"{value:7.3f}") + f"  {label}"
                     for label, value, unit in shown)
