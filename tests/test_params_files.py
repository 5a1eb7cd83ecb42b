"""The committed params files: each one validates, and the results study keeps the design its report
relies on (three seeds per configuration on one training subset, a fresh teacher view every epoch, as many
steps with synthetic images as without)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dapt.data import SYNSET_SIZES
from dapt.pipeline.study import load_study

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_params_file_validates(path, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(PARAMS.parent))
    assert load_study(path, check_data=False).runs


def test_the_results_study_repeats_every_student_over_three_seeds_on_one_subset(monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(PARAMS.parent))
    study = load_study(PARAMS / "fashion_paper.yaml", check_data=False)
    students = [spec for spec in study.runs if spec.stage == "distill"]
    seeds = Counter(spec.name.rsplit("_s", 1)[0] for spec in students)
    assert students and set(seeds.values()) == {3}, seeds
    for spec in students:
        cfg = spec.cfg
        assert cfg.seed in (0, 1, 2) and cfg.subset_seed == 0, spec.name  # every seed sees its teacher's images
        assert cfg.cache_views == cfg.epochs, spec.name  # a fresh view per epoch, as a live teacher gives
        assert cfg.image_size == 48, spec.name
        # every student takes the steps of 30 epochs over its real images: a synthetic one, fewer epochs over more
        images = cfg.train_subset * (1 + SYNSET_SIZES[cfg.synset_size] if cfg.synthetic else 1)
        steps, real_only_steps = cfg.epochs * (images // cfg.batch_size), 30 * (cfg.train_subset // cfg.batch_size)
        assert abs(steps - real_only_steps) <= 0.05 * real_only_steps, (spec.name, steps, real_only_steps)


def test_the_results_study_holds_the_papers_three_comparisons(monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(PARAMS.parent))
    students = [spec.cfg for spec in load_study(PARAMS / "fashion_paper.yaml", check_data=False).runs
                if spec.stage == "distill"]
    # (a) both random-init students with every distiller, (b) three teacher inits for align_uniform
    assert {(c.student, c.distiller) for c in students} >= {
        (s, d) for s in ("efficientnet_lite0", "mobilenet_v2") for d in ("none", "kd", "crd", "srrl", "align_uniform")}
    assert {Path(c.teacher).name for c in students if c.distiller == "align_uniform" and c.train_subset == 600} == {
        "lite2_ft", "lite2_lp", "lite2_fr"}
    # (c) real only, 1x and 2x synthetic, at two training-set sizes
    synthetic = {(c.train_subset, c.synset_size if c.synthetic else "real") for c in students
                 if c.distiller == "align_uniform" and Path(c.teacher).name.startswith("lite2_ft")}
    assert synthetic == {(n, kind) for n in (200, 600) for kind in ("real", "1x", "2x")}
