"""The claims a study's comparisons test (Farhat & Chen 2024), and the decision rule a study file states on
one of them before it runs (its ``decision``).

Here, below both packages that read them: the pipeline checks a study file's ``decision`` when it loads the
study, so a misspelt claim is refused before any run starts, and the analysis makes the comparisons
(``dapt.analysis.compare``) and evaluates the rule on them (``dapt.analysis.decision``, which states the rule
precisely). Torch-free.
"""
from __future__ import annotations

import math
from typing import Any, Optional

from dapt.core.errors import DaptError

CLAIMS = ("no teacher", "pre-training", "teacher init", "synthetic", "synthetic vs same steps", "ideal images")
# The claims whose question is whether the best A reaches B: a distilled student the pre-trained, fine-tuned
# model; a student on generated images one on as many ideal images. The others claim a gain of A over B
# (distillation over no teacher, synthetic images over real only, one teacher init over another), which a
# rule of reaching B to within a margin does not decide.
DECIDABLE = ("pre-training", "ideal images")
DECISION_KEYS = ("claim", "within_pt")
EXAMPLE = "e.g. decision: {claim: pre-training, within_pt: 1.0}"


def check_decision(value: Any) -> Optional[dict[str, Any]]:
    """A study file's ``decision``, checked: None (the study states no rule) or ``{"claim": one of
    DECIDABLE, "within_pt": a number of points >= 0}``, ``within_pt`` as a float; anything else raises
    ``DaptError`` naming the key and the fix."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DaptError(f"decision must be a mapping of {' and '.join(DECISION_KEYS)}, {EXAMPLE}; got a "
                        f"{type(value).__name__}")
    unknown = [key for key in value if key not in DECISION_KEYS]
    if unknown:
        raise DaptError(f"decision: unknown key {unknown[0]!r}; valid keys: {', '.join(DECISION_KEYS)}")
    missing = [key for key in DECISION_KEYS if key not in value]
    if missing:
        raise DaptError(f"decision: {missing[0]} is missing; {EXAMPLE}")
    claim, within = value["claim"], value["within_pt"]
    if claim in CLAIMS and claim not in DECIDABLE:
        raise DaptError(f"decision: claim {claim!r} is a gain of A over B, which a rule of reaching B to within "
                        f"within_pt does not decide; choose one of: {', '.join(DECIDABLE)}")
    if claim not in DECIDABLE:
        raise DaptError(f"decision: claim {claim!r} is not one of: {', '.join(DECIDABLE)}")
    if isinstance(within, bool) or not isinstance(within, (int, float)) or not math.isfinite(within) or within < 0:
        raise DaptError(f"decision: within_pt must be a number of points >= 0 (how far below B the best A may "
                        f"score with the claim still holding), got {within!r}")
    return {"claim": claim, "within_pt": float(within)}
