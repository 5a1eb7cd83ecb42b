"""A study's decision rule, written in its params file before the study ran (``decision``, checked by
``dapt.core.claims``), evaluated on the study's comparisons: which of its three outcomes fired, per student
group, and the comparison it read.

The rule asks whether the best A of its ``claim`` reaches B: for ``pre-training``, the best distilled student
(any distiller but ``none``) against the same architecture pre-trained and fine-tuned; for ``ideal images``,
the best student on generated images against as many ideal ones. In each student group it reads one
comparison, the report's answer for the claim (``compare.best_of``): among the claim's comparisons with a p
whose runs were recorded alike (those marked ``mixed_provenance`` are skipped), the one whose A has the
highest mean test accuracy. With its gap d = A − B in points, d's 95% Welch interval [lo, hi], its verdict on
the Welch p Holm-adjusted over the study's comparisons (``compare``) and w = ``within_pt``:

1. **holds**: lo > −w: A is less than w points below B, or above it, at 95% confidence (non-inferiority
   within the margin; a gap lower beyond seed noise but smaller than w holds too);
2. **fails**: hi < −w and A is lower beyond seed noise after Holm: more than w points below, at 95%
   confidence, and a gap the study's correction keeps;
3. **cannot tell**: otherwise; the report states the interval, and the gap these seeds detect
   (``Welch.mde_pt``).

"Within w" is decided on the interval, not on a gap merely within seed noise: with three seeds a side a gap
within noise can hide several points, and a rule that took it for "within w" would call the claim held
whenever the seeds are too few to tell.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from dapt.analysis.compare import Comparison, Welch, best_of
from dapt.analysis.summary import Summary

HOLDS, FAILS, CANNOT_TELL = 1, 2, 3  # the rule's outcomes, numbered as a study's description states them


@dataclass(frozen=True)
class Outcome:
    """The outcome that ``fired`` (``HOLDS``, ``FAILS`` or ``CANNOT_TELL``) in one student group, on the
    ``comparison`` it read."""

    fired: int
    comparison: Comparison

    @property
    def detectable_pt(self) -> Optional[float]:
        """When these seeds cannot tell: the gap they detect with 80% power at the level that bounds Holm's."""
        return self.comparison.welch.mde_pt if self.fired == CANNOT_TELL else None


def outcome(w: Welch, within_pt: float) -> int:
    """Which outcome a judged comparison fires under a margin of ``within_pt`` points."""
    if w.ci_low_pt > -within_pt:
        return HOLDS
    if w.ci_high_pt < -within_pt and w.direction == "lower":
        return FAILS
    return CANNOT_TELL


def decide(summary: Summary, decision: Optional[Mapping[str, Any]]) -> list[Outcome]:
    """The outcome per student group of the study's ``decision`` (``{"claim", "within_pt"}``), in the order of
    the claims table; [] without a rule, or without a comparison it can read."""
    if not decision:
        return []
    return [Outcome(outcome(c.welch, decision["within_pt"]), c)
            for c in best_of(summary.comparisons, decision["claim"]).values()]
