"""Exploring a study from JupyterLab: what can be chosen, and one chosen run executed like any other.

The choices come from where ``dapt run`` reads them: study files in ``params/``, each stage's
fields (``config.STAGES``) with their choices (a registry's names, with its one-line summaries),
and, for a field naming another run (``teacher``), the finished runs of that stage in the study.
A chosen run is added to its study file's runs in memory, so the file's ``defaults`` apply and it
is validated exactly like a run written in the file, then executed by ``dapt.pipeline.runner`` into
``runs/<study>/<name>/``: an explored run is a recorded run. ``dapt.ui.widgets`` only shows this.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Optional

from matplotlib.figure import Figure

from dapt.pipeline import config
from dapt.plots import study as study_plots
from dapt.core.fields import choices_of, is_knob, registry_of
from dapt.analysis.rows import INIT_LABELS, collect, run_summary
from dapt.pipeline.runner import run_study
from dapt.core.records import RUNS_DIR, run_dir
from dapt.core.files import read_json, repo_root
from dapt.pipeline.study import Study, load_study, study_defaults

# Dropdowns shown first, in this order, when the stage has them; its other choices follow.
FIRST = ("dataset", "model", "init", "student", "teacher", "distiller")


def study_files(folder: str | Path = "params") -> list[str]:
    """The study files a user can explore, repo-relative, sorted."""
    return sorted(p.relative_to(repo_root()).as_posix() for p in (repo_root() / folder).glob("*.yaml"))


def explorable_stages() -> list[str]:
    """Stages a single run can be explored in: every stage but those that collect the whole study."""
    return [stage for stage in config.STAGES if stage not in config.COLLECTS_STUDY]


def field(stage: str, key: str) -> dataclasses.Field:
    return next(f for f in dataclasses.fields(config.stage_config(stage)) if f.name == key)


def choice_fields(stage: str) -> list[str]:
    """The stage's fields shown as a dropdown: the context keys, then those chosen from a registry or naming a run."""
    keys = []
    for f in dataclasses.fields(config.stage_config(stage)):
        if f.name in FIRST or registry_of(f) or f.metadata.get("ref"):
            keys.append(f.name)
    return sorted(keys, key=lambda k: FIRST.index(k) if k in FIRST else len(FIRST))


def knob_fields(stage: str) -> list[str]:
    """The stage's numbers worth turning between runs (``param(knob=True)``: epochs, lr, the KD
    temperature, every distiller's loss weights), in field order."""
    return [f.name for f in dataclasses.fields(config.stage_config(stage)) if is_knob(f)]


def finished_runs(study: str, stage: str, dataset: Optional[str] = None) -> list[tuple[str, str]]:
    """(label, run folder) of the study's finished runs of ``stage`` that still have their model,
    e.g. ("lite2_ft — efficientnet_lite2, ImageNet, fine-tuned, 48 px: 91.20%", "runs/fashion_quick/lite2_ft")."""
    folder = Path(RUNS_DIR) / study
    out = []
    for run in sorted(folder.iterdir()) if folder.is_dir() else []:
        metrics = read_json(run / "metrics.json") or {}
        params = metrics.get("params") or {}
        if metrics.get("stage") != stage or metrics.get("status") != "done" or not (run / "model.pt").is_file():
            continue
        if dataset is not None and params.get("dataset") != dataset:
            continue
        acc = metrics.get("test_acc")
        init = params.get("init")
        what = ", ".join(str(x) for x in (params.get("model"), INIT_LABELS.get(init, init),
                                          f"{params.get('image_size')} px") if x)
        out.append((f"{run.name} — {what}" + (f": {acc:.2%}" if isinstance(acc, (int, float)) else ""),
                    run.as_posix()))
    return out


def options(stage: str, key: str, study: str, dataset: Optional[str] = None) -> list[tuple[str, Any]]:
    """(label, value) choices of ``key``: a registry's names with their summaries, a field's plain
    choices, or the finished runs a reference may name (with ``None`` first when it is optional)."""
    f = field(stage, key)
    if f.metadata.get("ref"):
        return [("none", None), *finished_runs(study, f.metadata["ref"], dataset)]
    registry = registry_of(f)
    names = choices_of(f) or []
    if registry is not None:
        return [(f"{name} — {registry.summary(name)}" if registry.summary(name) else name, name) for name in names]
    if key == "init":
        return [(f"{name} — {INIT_LABELS[name]}", name) for name in names]
    return [(name, name) for name in names]


def defaults_for(study_file: str | Path, stage: str) -> tuple[str, dict[str, Any]]:
    """The study's name, and what a new ``stage`` run of it starts from: the stage's defaults under the
    study's ``defaults`` (validated only when the run is prepared, since a teacher may still be missing)."""
    name, defaults = study_defaults(study_file)
    values = {f.name: f.default for f in dataclasses.fields(config.stage_config(stage))}
    values.update(config.from_defaults(config.stage_config(stage), defaults))
    return name, values


def default_name(stage: str, values: dict[str, Any]) -> str:
    """``explore_<student or model>_<distiller or init>``, e.g. explore_mobilenet_v2_kd."""
    parts = [values.get("student") or values.get("model"), values.get("distiller") or values.get("init")]
    return "_".join(["explore", *(str(p) for p in parts if p)]) if any(parts) else f"explore_{stage}"


def prepare(study_file: str | Path, stage: str, name: str, values: dict[str, Any]) -> Study:
    """The study of ``study_file`` reduced to one run, ``name`` of ``stage`` with ``values``, validated
    with the whole file as if the run were written at its end (a mistake is one ``ConfigError`` line)."""
    study = study_defaults(study_file)[0]
    values = dict(values)
    for key in (f.name for f in dataclasses.fields(config.stage_config(stage)) if f.metadata.get("ref")):
        target = values.get(key)
        if isinstance(target, str) and "/" not in target and run_dir(study, target).is_dir():
            values[key] = run_dir(study, target).as_posix()  # a finished run of the study, by its name
    full = load_study(study_file, extra_runs=[{**values, "stage": stage, "name": name}])
    return Study(full.name, full.source, [full.get(name)])


def execute(study_file: str | Path, stage: str, name: str, values: dict[str, Any], force: bool = False,
            echo: Callable[[str], None] = print) -> str:
    """Validate and execute one explored run into ``runs/<study>/<name>/``; returns its final status."""
    study = prepare(study_file, stage, name, values)
    return run_study(study, force=force, only=[name], echo=echo)[name]


def study_rows(study: str) -> list[dict]:
    """The study's runs side by side (``dapt.analysis.rows.collect``), explored runs included."""
    folder = Path(RUNS_DIR) / study
    return collect(folder) if folder.is_dir() else []


def outcome(study: str, name: str) -> tuple[str, list[Figure]]:
    """What to show after an explored run: its final numbers, then the study's plots with it among the
    other runs (agreement against accuracy when the study has students, accuracy per run)."""
    metrics = read_json(Path(RUNS_DIR) / study / name / "metrics.json") or {}
    rows = study_rows(study)
    figures = [study_plots.agreement_vs_accuracy(rows)] if any(r.get("stage") == "distill" for r in rows) else []
    return f"{study}/{name}: {metrics.get('status', 'not run')}\n{run_summary(metrics)}", \
        [*figures, study_plots.accuracy_bars(rows)]
