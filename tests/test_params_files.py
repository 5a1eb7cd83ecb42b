"""The committed params files: each one validates, and the results studies keep the design their reports
rely on (three seeds per configuration on one training subset, a fresh teacher view every epoch)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dapt.study import load_study

PARAMS = Path(__file__).resolve().parents[1] / "params"


@pytest.mark.parametrize("path", sorted(PARAMS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_committed_params_file_validates(path, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(PARAMS.parent))
    assert load_study(path, check_data=False).runs


@pytest.mark.parametrize("name", ["fashion_paper", "fashion_paper_synthetic"])
def test_results_studies_repeat_every_student_over_three_seeds_on_one_subset(name, monkeypatch):
    monkeypatch.setenv("DAPT_ROOT", str(PARAMS.parent))
    study = load_study(PARAMS / f"{name}.yaml", check_data=False)
    students = [spec for spec in study.runs if spec.stage == "distill"]
    seeds = Counter(spec.name.rsplit("_s", 1)[0] for spec in students)
    assert students and set(seeds.values()) == {3}, seeds
    for spec in students:
        cfg = spec.cfg
        assert cfg.seed in (0, 1, 2) and cfg.subset_seed == 0, spec.name  # every seed sees its teacher's images
        assert cfg.cache_views == cfg.epochs, spec.name  # a fresh view per epoch, as a live teacher gives
        assert (cfg.image_size, cfg.epochs) == (48, 30), spec.name
