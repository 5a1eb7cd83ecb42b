"""The comparisons a study's claims rest on, between configurations (``configurations``), each judged
against the seed spread.

The claims (Farhat & Chen 2024): a random-init student distilled from a pre-trained, fine-tuned teacher
against the same student with no teacher (``none``) and against the same architecture pre-trained and
fine-tuned (the headline); the teacher's init (ft, lp, fr) for one distiller; real images against
real + synthetic ones; and generated images against ideal ones (``generator: holdout``: real images the
training subset left out) in the same number and steps, which tells the generator's part from the idea's.
Each comparison is A − B on the configurations' test accuracies (all test images), judged by Welch's t test (Welch 1947): with means :math:`\\bar a, \\bar b`, sample variances
:math:`s_a^2, s_b^2` and seeds :math:`n_a, n_b`,
:math:`t = (\\bar a - \\bar b) / \\sqrt{s_a^2/n_a + s_b^2/n_b}` with the Welch–Satterthwaite degrees of freedom
:math:`\\nu = (s_a^2/n_a + s_b^2/n_b)^2 / \\big(\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}\\big)`,
two-sided :math:`p = 2\\,P(T_\\nu > |t|)`. The **seed-noise rule**: a gap is beyond seed noise when
p < ``ALPHA``, within it otherwise; with one seed on a side the spread is unknown and no gap is beyond noise.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Optional

from scipy import stats

from dapt.analysis.configurations import mean_std
from dapt.analysis.rows import is_synthetic, real_images, setting, synthetic_gains

ALPHA = 0.05
INIT_ORDER = ("ft", "lp", "fr")
CLAIMS = ("no teacher", "pre-training", "teacher init", "synthetic", "synthetic vs same steps", "ideal images")
IDEAL = "holdout"  # the generator whose images are real ones: what a perfect generator would draw


@dataclass(frozen=True)
class Welch:
    """A − B by the seed-noise rule. ``verdict``: beyond / within (seed noise) / unknown (one seed on a side)."""

    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    std_a: Optional[float]
    std_b: Optional[float]
    gap_pt: float
    t: Optional[float]
    df: Optional[float]
    p: Optional[float]
    verdict: str

    @property
    def direction(self) -> str:
        """``higher`` or ``lower`` when the gap is beyond seed noise, else the verdict itself."""
        if self.verdict != "beyond":
            return self.verdict
        return "higher" if self.gap_pt > 0 else "lower"


def welch(a: list[float], b: list[float]) -> Welch:
    """Welch's two-sided t test on two configurations' seeds, and the seed-noise rule's verdict."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    gap = 100 * (mean_a - mean_b)
    if len(a) < 2 or len(b) < 2:
        return Welch(len(a), len(b), mean_a, mean_b, std_a, std_b, gap, None, None, None, "unknown")
    va, vb = std_a ** 2 / len(a), std_b ** 2 / len(b)
    if va + vb == 0:  # every seed identical on both sides: any gap is exact
        t = df = None
        p = 1.0 if mean_a == mean_b else 0.0
    else:
        t = (mean_a - mean_b) / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        p = float(2 * stats.t.sf(abs(t), df))
    return Welch(len(a), len(b), mean_a, mean_b, std_a, std_b, gap, t, df, p, "beyond" if p < ALPHA else "within")


@dataclass(frozen=True)
class Comparison:
    """One claim tested on two configurations (their labels ``a`` and ``b``) of one ``group`` (a student
    architecture, and its real training images when the study has several). A synthetic comparison also
    carries ``step_ratio`` (A's training steps over B's), ``same_steps`` (as many steps, within the 5% of
    ``rows.synthetic_gains``) and ``diffaug`` (A's and B's, when they differ)."""

    claim: str
    group: str
    a: str
    b: str
    welch: Welch
    step_ratio: Optional[float] = None
    same_steps: Optional[bool] = None
    diffaug: Optional[tuple[str, str]] = None


def group_label(row: dict[str, Any], several_sizes: bool) -> str:
    real = real_images(row)
    return f"{row.get('student')} on {real:,} real images" if several_sizes and real is not None else str(row.get("student"))


def _done(row: dict[str, Any]) -> bool:
    return bool(row.get("test_acc_values"))


def _pair(claim: str, group: str, a: dict[str, Any], b: dict[str, Any], **extra: Any) -> Comparison:
    return Comparison(claim, group, a["run"], b["run"], welch(a["test_acc_values"], b["test_acc_values"]), **extra)


def _without_teacher(config: dict[str, Any]) -> tuple:
    """What a student configuration is apart from its teacher (teacher-init comparisons hold it fixed)."""
    key = config.get("key") or ("run",)
    if key[0] == "run":  # no recorded params: the row's own description
        return (*setting(config), config.get("distiller"), config.get("epochs"), is_synthetic(config),
                config.get("diffaug"))
    return key[0], tuple(item for item in key[1] if item[0] != "teacher")


def _same_but_images(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two synthetic configurations differ at most in whose images they add: the same setting,
    distiller, teacher, number of added images per real one, epochs and DiffAugment."""
    return all(a.get(k) == b.get(k) for k in ("distiller", "teacher_run", "synset_size", "epochs", "diffaug")) \
        and setting(a) == setting(b)


def comparisons(configs: list[dict[str, Any]]) -> list[Comparison]:
    """Every comparison the study's configurations allow, in the order of ``CLAIMS`` per student."""
    distill = [c for c in configs if c.get("stage") == "distill"]
    several = len({real_images(c) for c in distill}) > 1
    out = []
    for c in distill:
        if c.get("distiller") == "none" or not _done(c):
            continue
        group = group_label(c, several)
        baselines = [b for b in distill if b.get("distiller") == "none" and not is_synthetic(b) and _done(b)
                     and (*setting(b), b.get("epochs")) == (*setting(c), c.get("epochs"))]
        if baselines and not is_synthetic(c):
            out.append(_pair("no teacher", group, c, baselines[-1]))
        pretrained = [t for t in configs if t.get("stage") == "teacher" and t.get("init") == "ft" and _done(t)
                      and t.get("model") == c.get("student") and real_images(t) == real_images(c)]
        if pretrained:
            out.append(_pair("pre-training", group, c, pretrained[-1]))
    by_rest: dict[tuple, list[dict[str, Any]]] = {}
    for c in distill:
        if _done(c) and c.get("teacher_init") in INIT_ORDER:
            by_rest.setdefault(_without_teacher(c), []).append(c)
    for members in by_rest.values():
        members = sorted(members, key=lambda c: INIT_ORDER.index(c["teacher_init"]))
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if a["teacher_init"] != b["teacher_init"]:
                    out.append(_pair("teacher init", group_label(a, several), a, b))
    named = {c["run"]: c for c in configs}
    for gain in synthetic_gains(configs):
        syn, real = named[gain["run"]], named[gain["real_run"]]
        mine, theirs = (gain.get(k) or "none" for k in ("diffaug", "real_diffaug"))
        out.append(_pair("synthetic", group_label(syn, several), syn, real, step_ratio=gain.get("step_ratio"),
                         same_steps=gain["same_steps"], diffaug=(mine, theirs) if mine != theirs else None))
        if "same_steps_run" in gain:
            out.append(_pair("synthetic vs same steps", group_label(syn, several), syn, named[gain["same_steps_run"]]))
    for generated in distill:
        if not _done(generated) or not is_synthetic(generated) or generated.get("generator") in (None, IDEAL):
            continue
        ideal = [c for c in distill if _done(c) and c.get("generator") == IDEAL and _same_but_images(c, generated)]
        if ideal:
            out.append(_pair("ideal images", group_label(generated, several), generated, ideal[-1]))
    order = {claim: i for i, claim in enumerate(CLAIMS)}
    groups = list(dict.fromkeys(c.group for c in out))
    return sorted(out, key=lambda c: (groups.index(c.group), order[c.claim]))
