"""A study's executed notebooks as HTML pages anyone can open, and an index linking them.

``dapt report FILE --html`` renders every ``runs/<study>/<run>/notebook.ipynb`` (the file's runs
and runs explored from JupyterLab) with nbconvert into ``runs/<study>/html/<run>.html``, images
embedded, so a page is one self-contained file; ``index.html`` holds the study's table (the
report's) with each run's name linking to its page. ``--no-input`` leaves the code cells out.
"""
from __future__ import annotations

import html
from pathlib import Path

from dapt.analysis.rows import collect, markdown_table
from dapt.core.records import RUNS_DIR
from dapt.core.files import atomic_write_text, read_json

STYLE = """body{font-family:system-ui,sans-serif;margin:2em;max-width:1400px}
table{border-collapse:collapse;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;text-align:left}
th{background:#f2f2f2}"""


def executed_notebooks(study: str) -> list[Path]:
    """Every executed run notebook of the study, the collecting runs (the report) first."""
    folder = Path(RUNS_DIR) / study
    found = sorted(folder.glob("*/notebook.ipynb"))
    return sorted(found, key=lambda p: (str((read_json(p.parent / "metrics.json") or {}).get("stage")) != "report",
                                        p.parent.name))


def render(notebook: Path, target: Path, no_input: bool = False) -> Path:
    """``notebook`` as one self-contained HTML page at ``target`` (written atomically)."""
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(exclude_input=no_input, exclude_input_prompt=no_input, exclude_output_prompt=no_input)
    body, _ = exporter.from_filename(str(notebook))
    atomic_write_text(target, body)
    return target


def index_page(study: str, source: str, pages: dict[str, str]) -> str:
    """The index: the study's table with each run linking to its page, then every page by name."""
    from nbconvert.filters.markdown import markdown2html

    rows = collect(Path(RUNS_DIR) / study)
    others = [name for name in pages if name not in {row["run"] for row in rows}]  # the report, failed runs
    for row in rows:
        if row["run"] in pages:
            row["run"] = f"[{row['run']}]({pages[row['run']]})"
    listing = "".join(f'<li><a href="{html.escape(pages[name])}">{html.escape(name)}</a></li>' for name in others)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>dapt study {html.escape(study)}</title>"
            f"<style>{STYLE}</style></head><body><h1>Study {html.escape(study)}</h1>"
            f"<p>From <code>{html.escape(source)}</code>; every accuracy is on all test images. Each run's name "
            f"opens its executed notebook.</p>"
            + (f"<h2>Reports</h2><ul>{listing}</ul>" if listing else "")
            + f"<h2>Runs</h2>{markdown2html(markdown_table(rows)) if rows else '<p>no finished runs yet</p>'}"
            + "</body></html>\n")


def write_html(study: str, source: str, no_input: bool = False, echo=print) -> Path:
    """Render every executed notebook of ``study`` and write ``runs/<study>/html/index.html``; returns the index."""
    out = Path(RUNS_DIR) / study / "html"
    pages = {}
    for notebook in executed_notebooks(study):
        name = notebook.parent.name
        render(notebook, out / f"{name}.html", no_input)
        pages[name] = f"{name}.html"
        echo(f"  {notebook.as_posix()} -> {(out / pages[name]).as_posix()}")
    index = out / "index.html"
    atomic_write_text(index, index_page(study, source, pages))
    return index
