"""The comparisons a study's claims rest on, between configurations (``configurations``), each judged
against the seed spread with the study's other comparisons in view.

The claims (Farhat & Chen 2024): a random-init student distilled from a pre-trained, fine-tuned teacher
against the same student with no teacher (``none``) and against the same architecture pre-trained and
fine-tuned (the headline); the teacher's init (ft, lp, fr) for one distiller; real images against
real + synthetic ones; and generated images against ideal ones (``generator: holdout``: real images the
training subset left out) in the same number and steps, which tells the generator's part from the idea's.

Each comparison is A − B on the configurations' test accuracies (all test images), in points. With means
:math:`\\bar a, \\bar b`, sample variances :math:`s_a^2, s_b^2` and seeds :math:`n_a, n_b`:

- **Welch's t test** (Welch 1947): standard error :math:`SE = \\sqrt{s_a^2/n_a + s_b^2/n_b}`,
  :math:`t = (\\bar a - \\bar b) / SE`, Welch–Satterthwaite degrees of freedom (Satterthwaite 1946; Welch 1947)
  :math:`\\nu = SE^4 / \\big(\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}\\big)`, raw two-sided
  :math:`p = 2\\,P(T_\\nu > |t|)`.
- **95% interval** of the gap: :math:`\\bar a - \\bar b \\pm t_{\\nu,\\,0.975}\\,SE`.
- **Holm's step-down adjustment** (Holm 1979) over the study's family: every comparison with a p (a side with
  one seed has none and is not in it). With the family's :math:`m` raw p sorted ascending,
  :math:`p_{(1)} \\le \\dots \\le p_{(m)}`, the adjusted :math:`\\tilde p_{(i)} = \\max_{j \\le i}
  \\min\\big(1, (m-j+1)\\,p_{(j)}\\big)`. It holds the chance of calling any gap of the family beyond noise when
  none is below ``ALPHA``, whatever the comparisons' dependence (they share configurations).
- **Verdict**: *beyond seed noise* (higher or lower) when :math:`\\tilde p <` ``ALPHA``; else *within* it, and a
  gap within noise is stated with what these seeds could have found: the **minimal detectable gap**
  :math:`X`, the smallest true gap that a two-sided Welch test at level :math:`\\alpha'` rejects with
  probability ``POWER``: with :math:`c = t_{\\nu,\\,1-\\alpha'/2}` and :math:`T' \\sim` noncentral
  :math:`t(\\nu, X/SE)`, :math:`P(|T'| > c) = 0.8`, solved exactly (noncentral t, Brent's method), taking the
  observed :math:`SE` and :math:`\\nu` as the design's.
- **Its level** :math:`\\alpha' = ` ``ALPHA`` :math:`/m` (Bonferroni): Holm's adjusted p is at most
  :math:`m\\,p`, so every test that rejects at :math:`\\alpha/m` is rejected by Holm too, whatever the other
  comparisons do; the power at :math:`\\alpha/m` is therefore a lower bound on the verdict rule's power, and
  :math:`X` an upper bound on the gap it detects 4 times in 5. Holm's own detectable gap depends on the other
  comparisons' p and lies between :math:`X` and the nominal-level one (``mde_nominal_pt``: the comparison
  tested alone, at ``ALPHA``), recorded beside it.
- **Degenerate cases**: every seed identical on both sides (zero variance): the gap is exact, its interval
  the gap itself, p = 0 when the means differ (1 when not), detectable gap 0; one seed on a side: the spread is
  unknown, no interval, p or detectable gap, and the verdict is *unknown* (not judged).

**Like with like**: each side carries the code versions and precisions its runs were recorded by
(``configurations``); a comparison whose runs were recorded by more than one code version, trained their
compared models at more than one precision, or learned from teacher outputs computed at more than one, is
``mixed_provenance``: it stays in the Holm family (a larger family only makes the others' verdicts more
cautious) and the report keeps it out of its sentences.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional

from scipy import optimize, stats

from dapt.analysis.configurations import mean_std
from dapt.analysis.rows import IDEAL, is_synthetic, real_images, setting, synthetic_gains
from dapt.core.claims import CLAIMS

ALPHA = 0.05  # the verdict's level on Holm-adjusted p, and 1 − the intervals' confidence
POWER = 0.8  # the power at which a within-noise gap's detectable size is given
INIT_ORDER = ("ft", "lp", "fr")
# What must be one across both sides' runs for a comparison to be like with like (``configurations``).
LIKENESS = ("codes", "model_precisions", "teacher_precisions")


@dataclass(frozen=True)
class Welch:
    """A − B over the seeds: the gap, its standard error ``se_pt`` and 95% interval (``ci_low_pt``,
    ``ci_high_pt``), all in points; Welch's ``t``, ``df`` and raw two-sided ``p``; ``p_holm`` adjusted over a
    family of ``family`` comparisons; ``verdict`` beyond / within (seed noise) / unknown (one seed on a side);
    ``mde_pt`` the gap detectable at 80% power at level ``mde_level`` (``ALPHA`` / ``family``), and
    ``mde_nominal_pt`` at ``ALPHA`` (the comparison tested alone)."""

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
    se_pt: Optional[float] = None
    ci_low_pt: Optional[float] = None
    ci_high_pt: Optional[float] = None
    p_holm: Optional[float] = None
    family: Optional[int] = None
    mde_pt: Optional[float] = None
    mde_level: Optional[float] = None
    mde_nominal_pt: Optional[float] = None

    @property
    def direction(self) -> str:
        """``higher`` or ``lower`` when the gap is beyond seed noise, else the verdict itself."""
        if self.verdict != "beyond":
            return self.verdict
        return "higher" if self.gap_pt > 0 else "lower"


def t_interval(estimate: float, se: float, df: Optional[float]) -> tuple[float, float]:
    """The two-sided ``1 − ALPHA`` interval ``estimate ± t_{df} · se`` (the estimate itself when ``se`` is 0)."""
    if se == 0:
        return estimate, estimate
    half = stats.t.isf(ALPHA / 2, df) * se
    return estimate - half, estimate + half


def rejection_chance(gap: float, se: float, df: float, level: float) -> float:
    """The power of a two-sided t test at ``level`` with ``df`` degrees of freedom and standard error ``se``
    when the true gap is ``gap``: P(|T'| > c), T' noncentral t with noncentrality gap / se."""
    critical = stats.t.isf(level / 2, df)
    shift = gap / se
    # P(T' < −c) as the upper tail of the mirrored variable: scipy's lower tail underflows to NaN far out
    return float(stats.nct.sf(critical, df, shift) + stats.nct.sf(critical, df, -shift))


def detectable_gap(se: float, df: Optional[float], level: float, power: float = POWER) -> float:
    """The smallest true gap (in ``se``'s units) that a two-sided t test at ``level`` rejects with probability
    ``power``; 0 when the gap is exact (``se`` = 0)."""
    if se == 0:
        return 0.0
    high = se
    while rejection_chance(high, se, df, level) < power:  # power rises with the gap: bracket the root
        high *= 2
    return optimize.brentq(lambda gap: rejection_chance(gap, se, df, level) - power, 0.0, high, xtol=1e-9 * se)


def welch(a: list[float], b: list[float]) -> Welch:
    """Welch's two-sided t test on two configurations' seeds, its interval, and the verdict of the comparison
    tested alone (a family of one; ``holm_family`` judges it among the study's)."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    gap = 100 * (mean_a - mean_b)
    if len(a) < 2 or len(b) < 2:
        return Welch(len(a), len(b), mean_a, mean_b, std_a, std_b, gap, None, None, None, "unknown")
    va, vb = std_a ** 2 / len(a), std_b ** 2 / len(b)
    se = math.sqrt(va + vb)
    if se == 0:  # every seed identical on both sides: the gap is exact
        t = df = None
        p = 1.0 if mean_a == mean_b else 0.0
    else:
        t = (mean_a - mean_b) / se
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        p = float(2 * stats.t.sf(abs(t), df))
    low, high = t_interval(gap, 100 * se, df)
    tested = Welch(len(a), len(b), mean_a, mean_b, std_a, std_b, gap, t, df, p, "unknown", se_pt=100 * se,
                   ci_low_pt=low, ci_high_pt=high, mde_nominal_pt=detectable_gap(100 * se, df, ALPHA))
    return judged(tested, p, 1)


def judged(tested: Welch, p_holm: float, family: int) -> Welch:
    """``tested`` judged as one of ``family`` comparisons whose Holm-adjusted p is ``p_holm``."""
    level = ALPHA / family
    return dataclasses.replace(tested, p_holm=p_holm, family=family, verdict="beyond" if p_holm < ALPHA else "within",
                               mde_level=level, mde_pt=detectable_gap(tested.se_pt, tested.df, level))


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p values (Holm 1979), in the order given."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(sorted(range(m), key=lambda i: p_values[i])):
        running = max(running, min(1.0, (m - rank) * p_values[i]))  # rank j − 1 multiplies by m − j + 1
        adjusted[i] = running
    return adjusted


@dataclass(frozen=True)
class Comparison:
    """One claim tested on two configurations (their labels ``a`` and ``b``) of one ``group`` (a student
    architecture, and its real training images when the study has several). A synthetic comparison also
    carries ``step_ratio`` (A's training steps over B's), ``same_steps`` (as many steps, within the 5% of
    ``rows.synthetic_gains``) and ``diffaug`` (A's and B's, when they differ). ``codes_*`` and ``precisions_*``:
    the code versions and precisions each side's runs were recorded by; ``mixed_provenance``: not like with
    like (module docstring)."""

    claim: str
    group: str
    a: str
    b: str
    welch: Welch
    step_ratio: Optional[float] = None
    same_steps: Optional[bool] = None
    diffaug: Optional[tuple[str, str]] = None
    codes_a: tuple[str, ...] = ()
    codes_b: tuple[str, ...] = ()
    precisions_a: tuple[str, ...] = ()
    precisions_b: tuple[str, ...] = ()
    mixed_provenance: bool = False


def best_of(comps: list[Comparison], claim: str) -> dict[str, Comparison]:
    """Per student group, the comparison of ``claim`` whose A has the highest mean, among those judged (a p) of
    runs recorded alike (not ``mixed_provenance``): the report's answer for the claim, and what a study's
    decision rule reads (``decision``)."""
    best: dict[str, Comparison] = {}
    for c in comps:
        if (c.claim == claim and c.welch.p is not None and not c.mixed_provenance
                and (c.group not in best or c.welch.mean_a > best[c.group].welch.mean_a)):
            best[c.group] = c
    return best


def group_label(row: dict[str, Any], several_sizes: bool) -> str:
    real = real_images(row)
    return f"{row.get('student')} on {real:,} real images" if several_sizes and real is not None else str(row.get("student"))


def _done(row: dict[str, Any]) -> bool:
    return bool(row.get("test_acc_values"))


def mixed_provenance(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two configurations' runs were recorded by more than one code version, trained their compared
    models at more than one precision, or learned from teacher outputs computed at more than one."""
    return any(len({*a.get(key, ()), *b.get(key, ())}) > 1 for key in LIKENESS)


def _pair(claim: str, group: str, a: dict[str, Any], b: dict[str, Any], **extra: Any) -> Comparison:
    return Comparison(claim, group, a["run"], b["run"], welch(a["test_acc_values"], b["test_acc_values"]),
                      codes_a=tuple(a.get("codes", ())), codes_b=tuple(b.get("codes", ())),
                      precisions_a=tuple(a.get("precisions", ())), precisions_b=tuple(b.get("precisions", ())),
                      mixed_provenance=mixed_provenance(a, b), **extra)


def holm_family(comps: list[Comparison]) -> list[Comparison]:
    """The comparisons, each with a p judged by its Holm-adjusted p over all of them that have one."""
    tested = [i for i, c in enumerate(comps) if c.welch.p is not None]
    adjusted = dict(zip(tested, holm([comps[i].welch.p for i in tested])))
    return [dataclasses.replace(c, welch=judged(c.welch, adjusted[i], len(tested))) if i in adjusted else c
            for i, c in enumerate(comps)]


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
    """Every comparison the study's configurations allow, in the order of ``CLAIMS`` per student, each judged
    among all of them (``holm_family``)."""
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
    return holm_family(sorted(out, key=lambda c: (groups.index(c.group), order[c.claim])))
