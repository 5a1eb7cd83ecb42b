"""Executed notebooks keep repo-relative paths only: a warning printed in a stage notebook names no file,
and no committed record holds an absolute path of the machine that executed it."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

from dapt.stages.notebook import show_errors_briefly

REPO = Path(__file__).resolve().parents[1]
# the roots an absolute path of a Linux or macOS machine starts with
ABSOLUTE = re.compile(r"(?<![\w.~-])/(?:home|root|tmp|usr|work|opt|var|Users|private)/")


def test_a_warning_in_a_stage_notebook_is_its_category_and_message():
    original = warnings.formatwarning
    try:
        show_errors_briefly()
        shown = warnings.formatwarning("axes collapsed", UserWarning, "/usr/lib/python3/x.py", 158, "f()")
    finally:
        warnings.formatwarning = original
    assert shown == "UserWarning: axes collapsed\n"


def test_no_committed_record_holds_an_absolute_path():
    found = [f"{path.relative_to(REPO)}: {match.group(0)}…" for path in sorted((REPO / "runs").rglob("*"))
             if path.suffix in (".ipynb", ".json", ".yaml") for match in [ABSOLUTE.search(path.read_text())]
             if match]
    assert not found, found[:5]
