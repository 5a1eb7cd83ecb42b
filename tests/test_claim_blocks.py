"""docs/claims.md's generated blocks: what one study says on one claim, read as its report reads it, and
checked by `dapt docs --check` (no notebooks executed here: committed studies' records)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from dapt.analysis import render
from dapt.analysis.claim_blocks import claim_block, claim_blocks
from dapt.analysis.compare import best_of
from dapt.analysis.summary import Summary
from dapt.core.claims import CLAIMS
from dapt.core.errors import DaptError
from dapt.ui import docs

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "claims.md"


def test_a_block_holds_the_reports_answer_headroom_budget_and_provenance(monkeypatch):
    monkeypatch.chdir(REPO)
    summary = Summary.read("runs/fashion_paper")
    text = claim_block("runs/fashion_paper", "pre-training")
    [best] = best_of(summary.comparisons, "pre-training").values()
    assert text.startswith("<!-- claim: runs/fashion_paper: pre-training -->\n")
    assert text.endswith("\n<!-- /claim -->")
    assert f"- {render.answer(best, 'best distilled student vs pre-trained, fine-tuned')}\n" in text
    assert "Headroom, efficientnet_lite0" in text and "Budget: the students trained" in text
    assert "Plateau:" in text and "Provenance:" in text
    assert "Decision rule" not in text  # fashion_paper states none


def test_each_lists_every_judged_comparison_of_the_claim_and_nothing_of_another(monkeypatch):
    monkeypatch.chdir(REPO)
    summary = Summary.read("runs/fashion_paper")
    judged = [c for c in summary.comparisons if c.claim == "no teacher" and c.welch.p is not None]
    text = claim_block("runs/fashion_paper", "no teacher", each=True)
    assert text.count("distilled vs no teacher: ") == len(judged) > 4
    assert "Headroom" not in text and "pre-trained, fine-tuned" not in text
    for c in judged:
        assert render.reading(c) in text


def test_a_decision_rule_of_the_claim_is_stated_and_one_of_another_claim_is_not(tmp_path, monkeypatch):
    study = tmp_path / "runs" / "fashion_paper"
    shutil.copytree(REPO / "runs" / "fashion_paper", study,
                    ignore=shutil.ignore_patterns("*.ipynb", "*.png", "*.html", "*.pt", "html"))
    report = study / "report" / "metrics.json"
    record = json.loads(report.read_text())
    record.setdefault("params", {})["study_decision"] = {"claim": "pre-training", "within_pt": 1.0}
    report.write_text(json.dumps(record))
    monkeypatch.chdir(tmp_path)
    assert "Decision rule (pre-training, within 1 point; written before the study ran): (2) fired" in \
        claim_block("runs/fashion_paper", "pre-training")
    assert "Decision rule" not in claim_block("runs/fashion_paper", "teacher init")


def test_a_study_not_run_yet_reads_as_such_and_a_bad_marker_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert "holds no runs here yet: the study has not run (`dapt run params/later.yaml`)" in \
        claim_block("runs/later", "pre-training")
    with pytest.raises(DaptError, match="'pretraining' is not a claim; claims: no teacher, pre-training"):
        claim_block("runs/later", "pretraining")
    with pytest.raises(DaptError, match="not a study folder"):
        claim_block("runs/../elsewhere", "pre-training")
    with pytest.raises(DaptError, match="has no closing <!-- /claim -->"):
        claim_blocks("<!-- claim: runs/a: synthetic -->\n<!-- claim: runs/b: synthetic -->\n<!-- /claim -->")


def test_the_claims_page_names_a_study_or_not_tested_for_each_of_the_papers_claims():
    text = PAGE.read_text(encoding="utf-8")
    sections = text.split("\n## ")[1:]
    assert len(sections) == 7
    for section in sections:
        assert "<!-- claim: runs/" in section or "**Not tested here.**" in section, section.splitlines()[0]
    blocks = claim_blocks(text)
    assert {claim for _, claim, _, _ in blocks} <= set(CLAIMS)
    assert {"runs/fashion_rich", "runs/fashion_long"} <= {folder for folder, _, _, _ in blocks}


def test_dapt_docs_rewrites_a_stale_claim_block(monkeypatch):
    monkeypatch.chdir(REPO)
    stale = "intro\n<!-- claim: runs/fashion_quick: pre-training -->\nold numbers\n<!-- /claim -->\n"
    [(shown, expected)] = docs.generated_blocks(stale)
    assert "old numbers" in shown and expected == claim_block("runs/fashion_quick", "pre-training")
