"""The results blocks' parser and generator (``dapt.analysis.results``). That every block in README.md and
docs/*.md equals its runs' numbers is checked by tests/test_docs.py (regenerate them all with ``dapt docs``)."""
from __future__ import annotations

import pytest

from dapt.analysis import results
from dapt.core.errors import DaptError


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
