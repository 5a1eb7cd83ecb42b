"""A study's results, computed once from its runs: what the report notebook, ``dapt report`` and the docs'
results blocks all show (``render`` turns it into tables and short sentences).

``Summary.read(folder)`` collects the run rows and generated sets, groups the runs over seeds, makes every
comparison (``compare``: each judged among all of them), judges each configuration's plateau and the students'
budget (``budget``) and gives each teacher's lead over the pre-trained model (``headroom``). The budget's
settings (the paper's epochs, a short budget's) are the report stage's parameters: the notebook passes its own;
elsewhere they are read from the study's recorded report run.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dapt.analysis.budget import Budget, Plateau, budget, plateaus
from dapt.analysis.compare import Comparison, comparisons, group_label
from dapt.analysis.configurations import configurations
from dapt.analysis.headroom import Headroom, headroom
from dapt.analysis.rows import collect, collect_generated, is_synthetic, real_images
from dapt.core.files import read_json


@dataclass(frozen=True)
class Summary:
    """Everything a report states about a study. ``rows``: one per teacher and student run; ``generated``:
    one per generate run; ``configurations``: the runs grouped over seeds (mean ± sample std); ``untested``:
    (student group, claim) pairs the study has no reference run for; ``missing``: runs without a test accuracy."""

    rows: list[dict[str, Any]]
    generated: list[dict[str, Any]]
    configurations: list[dict[str, Any]]
    comparisons: list[Comparison]
    plateaus: dict[str, Plateau]
    headroom: list[Headroom]
    budget: Budget
    untested: list[tuple[str, str]]
    missing: list[str]

    @classmethod
    def of(cls, rows: list[dict[str, Any]], generated: list[dict[str, Any]] = (), *,
           paper_epochs: Optional[int] = None, short_budget_epochs: Optional[int] = None) -> Summary:
        rows = with_generators(rows, generated)
        configs = configurations(rows)
        comps = comparisons(configs)
        return cls(rows=list(rows), generated=list(generated), configurations=configs, comparisons=comps,
                   plateaus=plateaus(configs), headroom=headroom(comps, configs),
                   budget=budget(configs, paper_epochs, short_budget_epochs), untested=_untested(configs, comps),
                   missing=[name for c in configs for name in c["missing"]])

    @classmethod
    def read(cls, folder: str | Path, exclude: tuple[str, ...] = (), *, paper_epochs: Optional[int] = None,
             short_budget_epochs: Optional[int] = None) -> Summary:
        """The summary of the study in ``folder``; settings not given are those its report run recorded."""
        recorded = report_params(folder)
        return cls.of(collect(folder, exclude), collect_generated(folder),
                      paper_epochs=recorded.get("paper_epochs") if paper_epochs is None else paper_epochs,
                      short_budget_epochs=(recorded.get("short_budget_epochs") if short_budget_epochs is None
                                           else short_budget_epochs))

    @property
    def students(self) -> list[dict[str, Any]]:
        return [c for c in self.configurations if c.get("stage") == "distill"]

    @property
    def seed_counts(self) -> list[int]:
        """The distinct numbers of seeds with a test accuracy per student configuration."""
        return sorted({c["n"] for c in self.students if c["n"]})

    @property
    def test_images(self) -> Optional[int]:
        """The number of test images every accuracy is on, when all runs agree on one."""
        counts = {int(r["test_images"]) for r in self.rows if isinstance(r.get("test_images"), (int, float))}
        return counts.pop() if len(counts) == 1 else None

    def still_improving(self, stage: str = "distill") -> list[str]:
        """The configurations of ``stage`` still improving at their last epoch (plateau rule)."""
        stages = {c["run"]: c.get("stage") for c in self.configurations}
        return [run for run, p in self.plateaus.items() if stages[run] == stage and p.status == "still improving"]

    def judged_students(self) -> list[str]:
        """The student configurations with a curve long enough for the plateau rule."""
        return [c["run"] for c in self.students if self.plateaus[c["run"]].status != "unknown"]

    def record(self) -> dict[str, Any]:
        """Flat, JSON-ready numbers for the report's metrics.json (and ``dapt report``'s exports): each of
        ``configurations`` and ``comparisons`` a list of flat dicts, label sets joined with "; "."""
        return {
            "runs": len(self.rows),
            "configurations": [{"configuration": c["run"], "runs": ", ".join(c["runs"]), "stage": c.get("stage"),
                                "n": c["n"], "test_acc_mean": c["test_acc"], "test_acc_std": c["test_acc_std"],
                                "codes": "; ".join(c["codes"]), "precisions": "; ".join(c["precisions"])}
                               for c in self.configurations],
            "comparisons": [{"claim": c.claim, "group": c.group, "a_run": c.a, "b_run": c.b,
                             **dataclasses.asdict(c.welch), "direction": c.welch.direction,
                             "step_ratio": c.step_ratio, "same_steps": c.same_steps,
                             "mixed_provenance": c.mixed_provenance,
                             **{f"{key}_{side}": "; ".join(getattr(c, f"{key}_{side}"))
                                for key in ("codes", "precisions") for side in ("a", "b")}}
                            for c in self.comparisons],
            "plateaus": [{"run": run, **dataclasses.asdict(p)} for run, p in self.plateaus.items()],
            "headroom": [dataclasses.asdict(h) for h in self.headroom],
            "budget": {**dataclasses.asdict(self.budget), "kind": self.budget.kind},
            "untested": [list(item) for item in self.untested], "missing": self.missing,
        }


def with_generators(rows: list[dict[str, Any]], generated: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows, each student on generated images also carrying ``generator``: that of the study's generate run
    whose images it adds (None when the run is not one of the study's)."""
    by_run = {g["run"]: g.get("generator") for g in generated}
    return [dict(r, generator=by_run.get(r["synthetic_run"])) if r.get("synthetic_run") else r for r in rows]


def report_params(folder: str | Path) -> dict[str, Any]:
    """The parameters the study's report run recorded ({} when it has none)."""
    for run in sorted(Path(folder).iterdir()):
        metrics = read_json(run / "metrics.json") if run.is_dir() else None
        if metrics and metrics.get("stage") == "report":
            return metrics.get("params") or {}
    return {}


def _untested(configs: list[dict[str, Any]], comps: list[Comparison]) -> list[tuple[str, str]]:
    """(group, claim) for each student group with a finished distilled student but no reference to test
    it against: no ``none`` baseline of the same setting and epochs, no pre-trained, fine-tuned run."""
    distill = [c for c in configs if c.get("stage") == "distill"]
    several = len({real_images(c) for c in distill}) > 1
    tested = {(c.group, c.claim) for c in comps}
    out: list[tuple[str, str]] = []
    for c in distill:
        if c.get("distiller") == "none" or not c["n"]:
            continue
        group = group_label(c, several)
        claims = ("pre-training",) if is_synthetic(c) else ("no teacher", "pre-training")
        out.extend((group, claim) for claim in claims if (group, claim) not in tested and (group, claim) not in out)
    return out
