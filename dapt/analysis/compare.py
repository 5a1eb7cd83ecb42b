"""The comparisons a study's claims rest on, between configurations (``dapt.seeds``), each judged
against the seed spread.

The claims (Farhat & Chen 2024): a random-init student distilled from a pre-trained, fine-tuned teacher
against the same student with no teacher (``none``) and against the same architecture pre-trained and
fine-tuned (the headline); the teacher's init (ft, lp, fr) for one distiller; real images against
real + synthetic ones. Each comparison is A − B on the configurations' test accuracies (all test images),
judged by Welch's t test (Welch 1947): with means :math:`\\bar a, \\bar b`, sample variances
:math:`s_a^2, s_b^2` and seeds :math:`n_a, n_b`,
:math:`t = (\\bar a - \\bar b) / \\sqrt{s_a^2/n_a + s_b^2/n_b}` with the Welch–Satterthwaite degrees of freedom
:math:`\\nu = (s_a^2/n_a + s_b^2/n_b)^2 / \\big(\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}\\big)`,
two-sided :math:`p = 2\\,P(T_\\nu > |t|)`.
"""
from __future__ import annotations

import math
from typing import Any

from scipy import stats

from dapt.analysis.rows import is_synthetic, markdown_table, real_images, setting, synthetic_gains
from dapt.analysis.configurations import mean_std

ALPHA = 0.05
RULE = ("**Seed-noise rule**: a gap between two configurations is **beyond seed noise** when Welch's two-sided "
        f"t test on their seeds' test accuracies gives p < {ALPHA} (at 3 seeds against 3 with equal spreads that "
        "takes a gap of about 2.3 sample standard deviations); otherwise it is **within seed noise**: not "
        "distinguishable from seed-to-seed variation at this number of seeds, which is not evidence that the "
        "two are equal. With one seed on either side the spread is unknown and no gap is called beyond noise. "
        "Each comparison is tested on its own, with no correction for how many the report makes.")
VERDICTS = {"beyond": "beyond seed noise", "within": "within seed noise", "unknown": "seed spread unknown (one seed)"}
INIT_ORDER = ("ft", "lp", "fr")


def welch(a: list[float], b: list[float]) -> dict[str, Any]:
    """A − B by the seed-noise rule: means, sample stds, n, the gap in points, Welch's t, ν and p, and
    ``verdict``: beyond / within (seed noise) / unknown (fewer than two seeds on a side)."""
    (mean_a, std_a), (mean_b, std_b) = mean_std(a), mean_std(b)
    out = {"n_a": len(a), "n_b": len(b), "mean_a": mean_a, "mean_b": mean_b, "std_a": std_a, "std_b": std_b,
           "gap_pt": 100 * (mean_a - mean_b), "t": None, "df": None, "p": None, "verdict": "unknown"}
    if len(a) < 2 or len(b) < 2:
        return out
    va, vb = std_a ** 2 / len(a), std_b ** 2 / len(b)
    if va + vb == 0:  # every seed identical on both sides: any gap is exact
        out.update(p=1.0 if mean_a == mean_b else 0.0)
    else:
        t = (mean_a - mean_b) / math.sqrt(va + vb)
        df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
        out.update(t=t, df=df, p=float(2 * stats.t.sf(abs(t), df)))
    out["verdict"] = "beyond" if out["p"] < ALPHA else "within"
    return out


def _pair(claim: str, group: str, a: dict[str, Any], b: dict[str, Any], a_name: str, b_name: str) -> dict[str, Any]:
    return {"claim": claim, "group": group, "a_run": a["run"], "b_run": b["run"], "a_name": a_name,
            "b_name": b_name, "a": a, "b": b, **welch(a["test_acc_values"], b["test_acc_values"])}


def group_label(row: dict[str, Any], several_sizes: bool) -> str:
    real = real_images(row)
    return f"{row.get('student')} on {real:,} real images" if several_sizes and real is not None else str(row.get("student"))


def _done(row: dict[str, Any]) -> bool:
    return bool(row.get("test_acc_values"))


def _without_teacher(config: dict[str, Any]) -> tuple:
    """What a student configuration is apart from its teacher (teacher-init comparisons hold it fixed)."""
    key = config.get("key") or ("run",)
    if key[0] == "run":  # no recorded params: the report's own description
        return (*setting(config), config.get("distiller"), config.get("epochs"), is_synthetic(config),
                config.get("diffaug"))
    return key[0], tuple(item for item in key[1] if item[0] != "teacher")


def comparisons(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every comparison the study's configurations allow, each a dict with ``claim`` (no teacher /
    pre-training / teacher init / synthetic / synthetic vs same steps), ``group`` (student and real
    images), A and B (``a_run``, ``a_name``, the configuration rows ``a``, ``b``) and ``welch``'s numbers."""
    distill = [c for c in configs if c.get("stage") == "distill"]
    several = len({real_images(c) for c in distill}) > 1
    inits = len({c.get("teacher_init") for c in distill if c.get("distiller") != "none"}) > 1

    def describe(c: dict[str, Any]) -> str:  # what sets a student apart within its group
        text = str(c.get("distiller")) + (f", teacher {c.get('teacher_init')}" if inits else "")
        return text + (f" + {int(c['n_synthetic']):,} synthetic" if is_synthetic(c) else "")

    out = []
    for c in distill:
        if c.get("distiller") == "none" or not _done(c):
            continue
        group = group_label(c, several)
        baselines = [b for b in distill if b.get("distiller") == "none" and not is_synthetic(b) and _done(b)
                     and (*setting(b), b.get("epochs")) == (*setting(c), c.get("epochs"))]
        if baselines and not is_synthetic(c):
            out.append(_pair("no teacher", group, c, baselines[-1], describe(c), "none"))
        pretrained = [t for t in configs if t.get("stage") == "teacher" and t.get("init") == "ft" and _done(t)
                      and t.get("model") == c.get("student") and real_images(t) == real_images(c)]
        if pretrained:
            out.append(_pair("pre-training", group, c, pretrained[-1], describe(c), "pre-trained, fine-tuned"))
    by_rest: dict[tuple, list[dict[str, Any]]] = {}
    for c in distill:
        if _done(c) and c.get("teacher_init") in INIT_ORDER:
            by_rest.setdefault(_without_teacher(c), []).append(c)
    for members in by_rest.values():
        members = sorted(members, key=lambda c: INIT_ORDER.index(c["teacher_init"]))
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if a["teacher_init"] != b["teacher_init"]:
                    out.append(_pair("teacher init", group_label(a, several), a, b,
                                     f"{a.get('distiller')}, teacher {a['teacher_init']}",
                                     f"teacher {b['teacher_init']}"))
    named = {c["run"]: c for c in configs}
    for gain in synthetic_gains(configs):
        syn = named[gain["run"]]
        label = f"{syn.get('distiller')} + {gain['synthetic_images']:,} synthetic ({gain.get('synset_size')})"
        out.append(_pair("synthetic", group_label(syn, several), syn, named[gain["real_run"]], label, "real only")
                   | {"step_ratio": gain.get("step_ratio"), "diffaug": gain.get("diffaug"),
                      "real_diffaug": gain.get("real_diffaug")})
        if "same_steps_run" in gain:
            out.append(_pair("synthetic vs same steps", group_label(syn, several), syn, named[gain["same_steps_run"]],
                             label, "real only, as many steps"))
    return out


def verdict_label(comparison: dict[str, Any]) -> str:
    """E.g. "higher beyond seed noise", "within seed noise", "seed spread unknown (one seed)"."""
    if comparison["verdict"] != "beyond":
        return VERDICTS[comparison["verdict"]]
    return ("higher " if comparison["gap_pt"] > 0 else "lower ") + VERDICTS["beyond"]


COMPARISON_COLUMNS = [("claim", "claim"), ("group", "student"), ("a_run", "A"), ("b_run", "B (reference)"),
                      ("a_acc", "A test acc %"), ("b_acc", "B test acc %"), ("gap", "A − B (points)"),
                      ("p", "Welch p"), ("verdict", "verdict")]


def accuracy_text(row: dict[str, Any]) -> str:
    """``73.12 ± 0.40 (n=3)`` (mean ± sample std over the seeds), ``73.12 (n=1)`` for one seed."""
    mean, std, n = row["test_acc"], row.get("test_acc_std"), len(row["test_acc_values"])
    return (f"{100 * mean:.2f}" if std is None else f"{100 * mean:.2f} ± {100 * std:.2f}") + f" (n={n})"


def p_text(p: float) -> str:
    """``p = 0.012``, or ``p < 0.001``."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def percent_text(value: float) -> str:
    """``73.12%`` for 0.7312."""
    return f"{100 * value:.2f}%"


def points_text(value: float) -> str:
    """``2.00 points``, ``1.00 point`` (the size of a gap, unsigned)."""
    return f"{abs(value):.2f} point" + ("" if f"{abs(value):.2f}" == "1.00" else "s")


def signed_points(value: float) -> str:
    """``+2.00 points``, ``−2.00 points``, ``±0.00 points`` (a gap in points, its sign in front)."""
    points = round(value, 2)
    return ("+" if points > 0 else "−" if points < 0 else "±") + points_text(points)


def mean_text(row: dict[str, Any]) -> str:
    """``73.12%`` for one seed, ``73.12 ± 0.40%, n=3`` (mean ± sample std) for several."""
    if len(row["test_acc_values"]) == 1:
        return percent_text(row["test_acc"])
    return f"{100 * row['test_acc']:.2f} ± {100 * row['test_acc_std']:.2f}%, n={len(row['test_acc_values'])}"


def judged_text(comparison: dict[str, Any]) -> str:
    """The verdict of one gap, with its p when there is one; nothing when one side has one seed."""
    if comparison["verdict"] == "unknown":
        return ""
    return f", {verdict_label(comparison)} (Welch {p_text(comparison['p'])})"


def comparison_table(comps: list[dict[str, Any]]) -> str:
    """The comparisons as Markdown: both sides' mean ± std, the gap, Welch's p and the verdict."""
    shown = [{**c, "a_acc": accuracy_text(c["a"]), "b_acc": accuracy_text(c["b"]), "gap": f"{c['gap_pt']:+.2f}",
              "p": "–" if c["p"] is None else p_text(c["p"]).removeprefix("p = "), "verdict": verdict_label(c)} for c in comps]
    return markdown_table(shown, COMPARISON_COLUMNS)


def record(comps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The comparisons as flat rows (no configuration rows inside), for metrics.json."""
    keys = ("claim", "group", "a_run", "b_run", "n_a", "n_b", "mean_a", "mean_b", "std_a", "std_b", "gap_pt", "t", "df", "p")
    return [{**{k: c[k] for k in keys}, "verdict": verdict_label(c)} for c in comps]
