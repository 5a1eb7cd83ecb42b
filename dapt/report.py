"""A study's runs side by side: the paper-style table, read from every ``metrics.json``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .runs import read_json

COLUMNS = [
    ("run", "run"), ("student", "student"), ("teacher", "teacher (init)"), ("distiller", "distiller"),
    ("test_acc", "test acc %"), ("agreement", "agreement %"), ("kl", "KL(t‖s)"), ("ece", "ECE %"),
    ("cka", "CKA"), ("wall_time_s", "time s"), ("status", "status"),
]
_PERCENT = {"test_acc", "agreement", "ece"}
INIT_LABELS = {"fr": "from scratch", "lp": "ImageNet, linear probe", "ft": "ImageNet, fine-tuned"}


def collect(study_dir: str | Path, exclude: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per run folder of ``study_dir`` (teachers first, then students), from its metrics.json."""
    rows = []
    for folder in sorted(Path(study_dir).iterdir()):
        metrics = read_json(folder / "metrics.json") if folder.is_dir() else None
        if metrics is None or folder.name in exclude or metrics.get("stage") not in ("teacher", "distill"):
            continue
        params = metrics.get("params", {})
        row = {"run": folder.name, "stage": metrics["stage"], "status": metrics.get("status"),
               "test_acc": metrics.get("test_acc"), "best_test_acc": metrics.get("best_test_acc"),
               "wall_time_s": metrics.get("wall_time_s"), "ece": metrics.get("ece")}
        if metrics["stage"] == "teacher":
            init = INIT_LABELS.get(params.get("init"), params.get("init"))
            row.update(student=params.get("model"), teacher=f"— (itself: {init})", distiller="—",
                       init=params.get("init"), model=params.get("model"))
        else:
            teacher_run = metrics.get("teacher_run")
            row.update(student=params.get("student"), distiller=params.get("distiller"),
                       teacher_run=Path(teacher_run).name if teacher_run else None,
                       teacher=(f"{metrics.get('teacher_model')} ({metrics.get('teacher_init')})"
                                if teacher_run else "—"),
                       teacher_test_acc=metrics.get("teacher_test_acc"),
                       **{k: metrics.get(k) for k in ("agreement", "agreement_teacher_right",
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
    """The table as Markdown (rendered by the notebook; readable as plain text too)."""
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
    pretrained = {r["model"]: r for r in rows if r["stage"] == "teacher" and r.get("init") == "ft"
                  and r.get("test_acc") is not None}
    out = []
    for arch, ref in pretrained.items():
        distilled = [r for r in rows if r["stage"] == "distill" and r.get("student") == arch
                     and r.get("distiller") != "none" and r.get("test_acc") is not None]
        if distilled:
            best = max(distilled, key=lambda r: r["test_acc"])
            out.append({"student": arch, "best_run": best["run"], "best_acc": best["test_acc"],
                        "pretrained_run": ref["run"], "pretrained_acc": ref["test_acc"],
                        "gap_pt": 100 * (best["test_acc"] - ref["test_acc"])})
    return out
