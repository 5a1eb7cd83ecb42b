"""The README's results blocks are the committed runs' numbers: each is regenerated from the study folder its
marker names (``dapt.analysis.results.block``) and must equal the README's text."""
from __future__ import annotations

import difflib
from pathlib import Path

import pytest

from dapt.analysis import results
from dapt.core.errors import DaptError

REPO = Path(__file__).resolve().parents[1]


def test_every_results_block_of_the_readme_matches_its_runs(monkeypatch):
    monkeypatch.chdir(REPO)  # the markers name folders relative to the repository
    blocks = results.readme_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    assert blocks, ("README.md has no results block: add `dapt report runs/<study> --markdown`'s output "
                    "(<!-- results: runs/<study> --> ... <!-- /results -->) where the study's results are described")
    for folder, shown in blocks:
        expected = results.block(folder)
        diff = "\n".join(difflib.unified_diff(shown.splitlines(), expected.splitlines(), "README.md", folder,
                                             lineterm=""))
        assert shown == expected, (f"README.md's results block for {folder} differs from its runs' metrics.json: run "
                                   f"`dapt report {folder} --markdown` and paste its output over the block.\n{diff}")


def test_blocks_are_found_between_their_markers_and_a_broken_one_is_an_error():
    text = ("intro\n<!-- results: runs/a -->\n| x |\n<!-- /results -->\nmiddle\n"
            "<!-- results: runs/b -->\n- b\n<!-- /results -->\n")
    assert results.readme_blocks(text) == [("runs/a", "<!-- results: runs/a -->\n| x |\n<!-- /results -->"),
                                           ("runs/b", "<!-- results: runs/b -->\n- b\n<!-- /results -->")]
    assert results.readme_blocks("no blocks here") == []
    with pytest.raises(DaptError, match="runs/a has no closing <!-- /results -->"):
        results.readme_blocks("<!-- results: runs/a -->\n| x |\n")
    with pytest.raises(DaptError, match="runs/a has no closing"):  # opened inside another
        results.readme_blocks("<!-- results: runs/a -->\n<!-- results: runs/b -->\n<!-- /results -->")


@pytest.mark.parametrize("folder", ["runs", "runs/a/b", "params/a", "runs/..", "/runs/a"])
def test_a_block_names_a_study_folder_under_runs_only(folder):
    with pytest.raises(DaptError):
        results.block(folder)


def test_a_block_of_a_missing_or_empty_study_says_so(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DaptError, match="runs/nope: no such study folder"):
        results.block("runs/nope")
    (tmp_path / "runs" / "empty").mkdir(parents=True)
    assert results.block("runs/empty") == ("<!-- results: runs/empty -->\n\n*No teacher or student run in "
                                           "`runs/empty` yet.*\n\n<!-- /results -->")
