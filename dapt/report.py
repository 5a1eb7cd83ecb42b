"""A study's runs side by side: the paper-style table and its verdict, read from every ``metrics.json``.

Every accuracy in a row is the run's final accuracy on all test images at the run's own image size
(``image_size``, the "px" column). A teacher appears twice, each time labelled: in its own row (its own
run, its own size) and, in the rows of its students, as ``teacher_test_acc`` (the teacher on the
students' test images resized to its size: what agreement is measured against).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import read_json

COLUMNS = [
    ("run", "run"), ("student", "student"), ("image_size", "px"), ("teacher", "teacher (init, px)"),
    ("distiller", "distiller"), ("test_acc", "test acc % (all test images, at px)"),
    ("teacher_test_acc", "teacher acc % (on this run's test images)"), ("agreement", "agreement %"),
    ("kl", "KL(t‖s)"), ("ece", "ECE %"), ("cka", "CKA"), ("epochs", "epochs"), ("wall_time_s", "time s"),
    ("status", "status"),
]
_PERCENT = {"test_acc", "teacher_test_acc", "teacher_run_test_acc", "teacher_eval_acc", "best_eval_acc",
            "agreement", "ece"}
INIT_LABELS = {"fr": "from scratch", "lp": "ImageNet, linear probe", "ft": "ImageNet, fine-tuned"}
SHORT_BUDGET_EPOCHS = 50  # fewer epochs than this is a short budget
# Single-seed noise: in fashion_quick's setting the `none` students of seeds 0, 1, 2 spread over 1.8
# (MobileNetV2) and 2.2 (EfficientNet-Lite0) points, so a one-seed gain below this is not a finding.
SEED_NOISE_POINTS = 2.0
PAPER_EPOCHS = 250


def _teacher_cell(metrics: dict, teacher_run: str | None, distiller: str | None) -> str:
    """E.g. "lite2_ft: efficientnet_lite2 (ft), 48 px"; a ``none`` student is only compared with its teacher."""
    if not teacher_run:
        return "— (no teacher)"
    init = metrics.get("teacher_init")
    size = metrics.get("teacher_image_size")
    return (f"{Path(teacher_run).name}: {metrics.get('teacher_model')}"
            + (f" ({init})" if init else "") + (f", {size} px" if size is not None else "")
            + (" — compared with, not distilled from" if distiller == "none" else ""))


def collect(study_dir: str | Path, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per run folder of ``study_dir`` (teachers first, then students), from its metrics.json.

    Rows of runs still in progress carry what is known (their params); missing values are None.
    ``epochs`` and ``train_subset`` are copied from the params only when the params have them.
    """
    rows = []
    for folder in sorted(Path(study_dir).iterdir()):
        metrics = read_json(folder / "metrics.json") if folder.is_dir() else None
        if metrics is None or folder.name in exclude or metrics.get("stage") not in ("teacher", "distill"):
            continue
        params = metrics.get("params") or {}
        row = {"run": folder.name, "stage": metrics["stage"], "status": metrics.get("status"),
               "test_acc": metrics.get("test_acc"), "best_eval_acc": metrics.get("best_eval_acc"),
               "best_epoch": metrics.get("best_epoch"), "eval_images": metrics.get("eval_images"),
               "test_images": metrics.get("test_images"), "wall_time_s": metrics.get("wall_time_s"),
               "ece": metrics.get("ece"), "image_size": metrics.get("image_size", params.get("image_size"))}
        row.update({key: params[key] for key in ("epochs", "train_subset") if key in params})
        if metrics["stage"] == "teacher":
            init = metrics.get("init", params.get("init"))
            model = metrics.get("model", params.get("model"))
            row.update(student=model, model=model, init=init, distiller="—",
                       teacher=f"— (own run: {INIT_LABELS.get(init, init)})")
        else:
            teacher_run = metrics.get("teacher_run")
            distiller = metrics.get("distiller", params.get("distiller"))
            row.update(student=metrics.get("student", params.get("student")), distiller=distiller,
                       teacher_run=Path(teacher_run).name if teacher_run else None,
                       teacher=_teacher_cell(metrics, teacher_run, distiller),
                       **{k: metrics.get(k) for k in (
                           "teacher_model", "teacher_init", "teacher_image_size", "teacher_run_test_acc",
                           "teacher_test_acc", "teacher_eval_acc", "agreement", "agreement_teacher_right",
                           "agreement_teacher_wrong", "kl", "cka", "teacher_ece")})
        rows.append(row)
    return sorted(rows, key=lambda r: (r["stage"] != "teacher", r.get("student") or "", r["run"]))


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "–"
    if key in _PERCENT and isinstance(value, (int, float)):
        return f"{100 * value:.2f}"
    if isinstance(value, float):
        return f"{value:.3f}" if key in ("kl", "cka") else f"{value:.0f}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The table as Markdown (rendered by the notebook; readable as plain text too).

    "test acc" is each row's own final accuracy on all test images at its "px"; for a teacher-stage
    row that is its own run. "teacher acc" is, in a student's row, its teacher on that student's test
    images (resized to the teacher's px), the reference of the agreement column.
    """
    head = "| " + " | ".join(title for _, title in COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in COLUMNS) + "|"
    body = ["| " + " | ".join(_cell(key, row.get(key)) for key, _ in COLUMNS) + " |" for row in rows]
    return "\n".join([head, rule, *body])


def gains_over_scratch(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per distilled student: its accuracy minus the ``none`` student's of the same architecture."""
    baseline = {r["student"]: r["test_acc"] for r in rows
                if r["stage"] == "distill" and r.get("distiller") == "none" and r.get("test_acc") is not None}
    out = []
    for r in rows:
        if r["stage"] == "distill" and r.get("distiller") != "none" and r.get("test_acc") is not None \
                and r["student"] in baseline:
            out.append({"run": r["run"], "student": r["student"], "distiller": r["distiller"],
                        "gain_pt": 100 * (r["test_acc"] - baseline[r["student"]])})
    return out


def pretraining_gap(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's question, per student architecture that also has a pre-trained, fine-tuned run:
    the best distilled random-init student against that pre-trained model (points, + = distillation ahead)."""
    pretrained = {r.get("model"): r for r in rows if r["stage"] == "teacher" and r.get("init") == "ft"
                  and r.get("test_acc") is not None}
    out = []
    for arch, ref in pretrained.items():
        distilled = [r for r in rows if r["stage"] == "distill" and r.get("student") == arch
                     and r.get("distiller") != "none" and r.get("test_acc") is not None]
        if distilled:
            best = max(distilled, key=lambda r: r["test_acc"])
            out.append({"student": arch, "best_run": best["run"], "best_acc": best["test_acc"],
                        "best_image_size": best.get("image_size"),
                        "pretrained_run": ref["run"], "pretrained_acc": ref["test_acc"],
                        "pretrained_image_size": ref.get("image_size"),
                        "gap_pt": 100 * (best["test_acc"] - ref["test_acc"])})
    return out


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{abs(value):.2f} point" + ("" if f"{abs(value):.2f}" == "1.00" else "s")


def _span(values: list) -> str:
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"


def _gain_sentence(arch: str, mine: list[dict[str, Any]]) -> str:
    baselines = [r for r in mine if r.get("distiller") == "none" and r.get("test_acc") is not None]
    distilled = [r for r in mine if r.get("distiller") != "none" and r.get("test_acc") is not None]
    missing = [r["run"] for r in mine if r.get("test_acc") is None]
    note = (f" ({len(missing)} run{'s' if len(missing) > 1 else ''} without a test accuracy, failed or "
            f"unfinished: {', '.join(missing)}.)" if missing else "")
    if not distilled:
        return f"{arch}: no distilled student has a test accuracy yet, so no distiller can be judged.{note}"
    best = max(distilled, key=lambda r: r["test_acc"])
    if not baselines:
        return (f"{arch}: the best distiller is {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), "
                f"but there is no finished no-teacher (`none`) baseline to measure a gain against.{note}")
    base = baselines[-1]  # the one gains_over_scratch uses
    gain = 100 * (best["test_acc"] - base["test_acc"])
    if round(gain, 2) >= SEED_NOISE_POINTS:
        return (f"{arch}: the best distiller, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), "
                f"beats the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}) by "
                f"+{_points(gain)}.{note}")
    if round(gain, 2) > 0:
        return (f"{arch}: the best distiller, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), is "
                f"ahead of the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}) by +{_points(gain)}, "
                f"within single-seed noise (runs that differ only in their seed spread about "
                f"{SEED_NOISE_POINTS:.0f} points in this setting).{note}")
    where = "level with it" if round(gain, 2) == 0 else f"{_points(gain)} below it"
    return (f"{arch}: no distiller beats the no-teacher baseline {base['run']} ({_pct(base['test_acc'])}); "
            f"the best, {best['distiller']} ({best['run']}, {_pct(best['test_acc'])}), is {where}.{note}")


def _pretraining_sentence(arch: str, rows: list[dict[str, Any]], gaps: dict[str, dict[str, Any]]) -> str:
    gap = gaps.get(arch)
    if gap is None:
        pretrained = [r for r in rows if r.get("stage") == "teacher" and r.get("init") == "ft"
                      and r.get("model") == arch]
        finished = [r for r in pretrained if r.get("test_acc") is not None]
        if finished:
            return (f"{arch}: no distilled {arch} student has a test accuracy yet to compare with the pre-trained, "
                    f"fine-tuned {finished[-1]['run']} ({_pct(finished[-1]['test_acc'])}, own run).")
        if pretrained:
            return (f"{arch}: the pre-trained, fine-tuned run {', '.join(r['run'] for r in pretrained)} has no test "
                    f"accuracy (failed or unfinished), so distillation is not yet compared with pre-training.")
        return (f"{arch}: the study has no pre-trained, fine-tuned {arch} run (a teacher-stage run with "
                f"init ft), so whether distillation replaces pre-training is not tested for it.")
    sizes = ""
    if gap.get("best_image_size") != gap.get("pretrained_image_size"):
        sizes = (f" (note: the student ran at {gap.get('best_image_size')} px, the pre-trained model at "
                 f"{gap.get('pretrained_image_size')} px)")
    points = round(gap["gap_pt"], 2)
    relation = ("level with" if points == 0 else
                f"{_points(points)} {'above' if points > 0 else 'below'}")
    outcome = ("distillation from random init matched or passed pre-training here" if points >= 0 else
               "distillation from random init did not reach pre-training here")
    return (f"{arch}: the best distilled student, {gap['best_run']} ({_pct(gap['best_acc'])}), is {relation} the "
            f"pre-trained, fine-tuned {gap['pretrained_run']} ({_pct(gap['pretrained_acc'])}, own run){sizes}: "
            f"{outcome}.")


def _budget_sentence(distill: list[dict[str, Any]]) -> str:
    epochs = [int(r["epochs"]) for r in distill if isinstance(r.get("epochs"), (int, float))]
    subsets = {r["train_subset"] for r in distill if "train_subset" in r}
    if not subsets:
        data = ""
    elif subsets == {None}:
        data = " on all training images"
    elif None in subsets:
        data = " on all or a subset of the training images"
    else:
        data = f" on a {_span(sorted(subsets))}-image training subset"
    if not epochs:
        return ("Budget: the students' epochs are not recorded, so it is unknown whether this is a short budget "
                f"or the paper's {PAPER_EPOCHS}-epoch setting.")
    trained = f"Budget: the students trained for {_span(epochs)} epoch{'s' if max(epochs) > 1 else ''}{data}"
    if max(epochs) < SHORT_BUDGET_EPOCHS:
        return (f"{trained}, a short budget (fewer than {SHORT_BUDGET_EPOCHS} epochs), so these comparisons test "
                f"that budget, not the paper's {PAPER_EPOCHS}-epoch setting.")
    if min(epochs) < SHORT_BUDGET_EPOCHS:
        return (f"{trained}: some have a short budget (fewer than {SHORT_BUDGET_EPOCHS} epochs) and some not, "
                f"so comparisons across them mix budgets, and the short runs do not test the paper's "
                f"{PAPER_EPOCHS}-epoch setting.")
    if min(epochs) >= PAPER_EPOCHS:
        return f"{trained}, as long as the paper's {PAPER_EPOCHS}-epoch setting."
    return (f"{trained}, not a short budget ({SHORT_BUDGET_EPOCHS} epochs or more) but below the paper's "
            f"{PAPER_EPOCHS}-epoch setting.")


def verdict(rows: list[dict[str, Any]]) -> list[str]:
    """The report's conclusions as sentences, computed from the rows (so they always match the table).

    First which images the accuracies are on; then, per student architecture, the best distiller's
    gain over its ``none`` baseline and the best distilled student against the pre-trained, fine-tuned
    run of that architecture; last, the training budget of the students.
    """
    distill = [r for r in rows if r.get("stage") == "distill"]
    if not distill:
        return ["No student run in this study yet, so there is nothing to conclude."]
    totals = {r.get("test_images") for r in rows if r.get("test_images") is not None}
    images = f"all {int(totals.pop()):,} test images" if len(totals) == 1 else "all test images"
    out = [f"Accuracies below are final accuracies on {images}, each run at its own image size."]
    gaps = {g["student"]: g for g in pretraining_gap(rows)}
    for arch in dict.fromkeys(r.get("student") for r in distill):
        mine = [r for r in distill if r.get("student") == arch]
        out.append(_gain_sentence(str(arch), mine))
        out.append(_pretraining_sentence(str(arch), rows, gaps))
    out.append(_budget_sentence(distill))
    return out


def run_summary(metrics: dict[str, Any]) -> str:
    """The final numbers of one run, one per line, each saying which images and image size it is on.

    Read from the run's ``metrics.json`` dict; numbers not (yet) recorded are left out. The best
    per-epoch accuracy is not listed: it is on the evaluation images and not comparable with these.
    """
    total = metrics.get("test_images")
    everything = f"all {int(total):,} test images" if isinstance(total, (int, float)) else "all test images"
    size, t_size = metrics.get("image_size"), metrics.get("teacher_image_size")
    px = f", {size} px" if size is not None else ""
    resized = (f", {size} px resized to {t_size} px" if size is not None and t_size is not None and t_size != size
               else px)
    evaluated = metrics.get("eval_images")
    subset = (f"{int(evaluated):,} of {int(total):,} test images"
              if isinstance(evaluated, (int, float)) and isinstance(total, (int, float)) else "evaluation images")
    teacher = Path(str(metrics["teacher_run"])).name if metrics.get("teacher_run") else "teacher"
    t_own = f", {t_size} px" if t_size is not None else ""
    who = "student" if metrics.get("stage") == "distill" else "model"
    lines = [
        (f"{who} test accuracy ({everything}{px})", metrics.get("test_acc"), "%"),
        (f"teacher {teacher}, its own run ({everything}{t_own})", metrics.get("teacher_run_test_acc"), "%"),
        (f"teacher on this run's test inputs ({everything}{resized}): what agreement is measured against",
         metrics.get("teacher_test_acc"), "%"),
        (f"teacher on the per-epoch evaluation images ({subset}{resized}): the curves' dashed line",
         metrics.get("teacher_eval_acc"), "%"),
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
