"""Weights & Biases logging of a run, as wandb users expect it; ``metrics.json`` stays the record.

Every stage logs through one ``Tracker``, opened by ``RunRecord.start`` from the run's params:
the wandb run is named ``<study>/<run>``, grouped by study, its ``job_type`` is the stage and its
config the resolved parameters. Training logs one step per epoch; ``RunRecord.finish`` puts the
final full-test numbers in the summary, lists of rows as tables, ``figures/*.png`` as images and
the executed notebook as an artifact, then finishes the run; a failure finishes it with a nonzero
exit code. ``offline`` writes under ``<run>/wandb/`` (``wandb sync runs/<study>/<run>/wandb/offline-run-*``
uploads it later); ``disabled`` does nothing and imports nothing.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

from dapt.core.fields import param

MODES = ("disabled", "offline", "online")


@dataclass
class TrackingSettings:
    """What every stage that logs to wandb shares; bookkeeping: changing it does not redo a finished run."""

    wandb: str = param("disabled", "Weights & Biases logging mode (offline: files under the run folder, "
                                   "uploaded later with `wandb sync`)", choices=MODES,
                       section="Weights & Biases logging")
    wandb_project: str = param("dapt", "wandb project the runs are logged to")
    wandb_entity: Optional[str] = param(None, "wandb entity (user or team); null = your default entity")


def _scalar(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Tracker:
    """``mode``: ``disabled`` (nothing happens), ``offline`` (files under ``run_dir``), ``online``."""

    def __init__(self, mode: str, run_dir: str | Path, name: str, params: Mapping[str, Any], project: str = "dapt",
                 *, entity: str | None = None, group: str | None = None, job_type: str | None = None):
        self.run = None
        if mode == "disabled":
            return
        import wandb

        Path(run_dir).mkdir(parents=True, exist_ok=True)
        # silent: wandb's coloured banners would land in the executed report; one plain line instead
        self.run = wandb.init(project=project, entity=entity, name=name, group=group, job_type=job_type,
                              dir=str(run_dir), mode=mode, config=dict(params), save_code=False,
                              reinit="finish_previous", settings=wandb.Settings(silent=True))
        where = Path(self.run.dir).parent.as_posix()
        print(f"wandb {mode}: run {name} in {where}" + (f"; upload it with `wandb sync {where}`"
                                                        if mode == "offline" else f" ({self.run.url})"))

    def log(self, values: Mapping[str, Any], step: int) -> None:
        """One step (an epoch) of numbers; anything else in ``values`` is left out."""
        if self.run is not None:
            self.run.log({k: v for k, v in values.items() if _scalar(v)}, step=step)

    def summarize(self, values: Mapping[str, Any]) -> None:
        """The run's final numbers into the wandb summary; a list of rows (dicts) becomes a table."""
        if self.run is None:
            return
        import wandb

        self.run.summary.update({k: v for k, v in values.items() if _scalar(v)})
        tables = {k: v for k, v in values.items()
                  if isinstance(v, list) and v and all(isinstance(row, dict) for row in v)}
        for key, rows in tables.items():
            columns = list(dict.fromkeys(c for row in rows for c in row))
            self.run.log({key: wandb.Table(columns=columns, data=[[row.get(c) for c in columns] for row in rows])})

    def log_figures(self, paths: Iterable[Path]) -> None:
        """Each figure as an image, keyed ``figures/<file stem>``."""
        if self.run is None:
            return
        import wandb

        images = {f"figures/{Path(p).stem}": wandb.Image(str(p)) for p in sorted(paths)}
        if images:
            self.run.log(images)

    def log_notebook(self, notebook: Path, artifact_name: str) -> None:
        """The executed notebook as an artifact of type ``notebook`` (and a file of the run). It is copied
        into the wandb run's own folder first, so an offline run keeps everything it needs under the run."""
        if self.run is None or not notebook.is_file():
            return
        import wandb

        copy = Path(self.run.dir) / notebook.name
        shutil.copyfile(notebook, copy)
        artifact = wandb.Artifact(artifact_name, type="notebook")
        artifact.add_file(str(copy), name=notebook.name, policy="immutable")
        self.run.log_artifact(artifact)

    def finish(self, exit_code: int = 0) -> None:
        """End the wandb run; nonzero ``exit_code`` marks it failed. A second call does nothing."""
        if self.run is not None:
            run, self.run = self.run, None
            run.finish(exit_code=exit_code)


def for_run(params: Mapping[str, Any], stage: str) -> Tracker:
    """The tracker of the run whose resolved params are ``params`` (``run_dir`` = runs/<study>/<run>)."""
    run_dir = Path(str(params.get("run_dir", "runs/interactive/run")))
    study = run_dir.parent.name
    return Tracker(str(params.get("wandb", "disabled")), run_dir, f"{study}/{run_dir.name}", params,
                   str(params.get("wandb_project") or "dapt"), entity=params.get("wandb_entity"),
                   group=study, job_type=stage)
