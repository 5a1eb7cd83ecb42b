"""Optional Weights & Biases logging; ``metrics.json`` stays the record either way.

wandb 0.31 cannot read its offline files back, so nothing in dapt reads wandb's output.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping


class Tracker:
    """``mode``: ``disabled`` (nothing happens), ``offline`` (files under the run folder), ``online``."""

    def __init__(self, mode: str, run_dir: str | Path, name: str, params: Mapping[str, Any], project: str = "dapt"):
        self.run = None
        if mode == "disabled":
            return
        import wandb

        self.run = wandb.init(project=project, name=name, dir=str(run_dir), mode=mode, config=dict(params),
                              reinit="finish_previous")

    def log(self, values: Mapping[str, Any], step: int) -> None:
        if self.run is not None:
            self.run.log({k: v for k, v in values.items() if isinstance(v, (int, float))}, step=step)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()
            self.run = None
