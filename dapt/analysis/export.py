"""A study's tables as files for a paper's own plotting: ``dapt report STUDY --csv DIR`` and ``--json DIR``.

``DIR/configurations.csv`` and ``DIR/claims.csv`` hold one row per configuration and per comparison of
``Summary.record()``, with every column the analysis computes: the columns are the union of the records'
keys in first-seen order, so a column the analysis gains appears here without a change. ``DIR/summary.json``
holds both lists with their values as they are (numbers, lists, null) and the rest of the record.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Iterable, Mapping

from dapt.analysis.summary import Summary
from dapt.core.errors import DaptError
from dapt.core.files import atomic_write_json, atomic_write_text

# The record's list each CSV file holds; "comparisons" are what the report calls its claims table.
TABLES = {"configurations.csv": "configurations", "claims.csv": "comparisons"}
JSON_FILE = "summary.json"


def columns(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every key of ``records``, in the order it first appears (a key only some rows have included)."""
    seen: dict[str, None] = {}
    for record in records:
        seen.update(dict.fromkeys(record))
    return list(seen)


def cell(value: Any) -> Any:
    """``value`` as one CSV cell: a list or tuple as its items joined by ", ", a mapping as compact JSON, None
    as an empty cell; numbers as Python writes them (the shortest text that reads back the same float)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(str(cell(item)) for item in value)
    if isinstance(value, Mapping):
        return json.dumps(value, separators=(",", ":"))
    return "" if value is None else value


def csv_text(records: list[Mapping[str, Any]]) -> str:
    """``records`` as CSV: a header of ``columns(records)``, one row each, a missing key an empty cell."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    header = columns(records)
    writer.writerow(header)
    writer.writerows([cell(record.get(key)) for key in header] for record in records)
    return out.getvalue()


def target(folder: str | Path) -> Path:
    """``folder`` to write into: one that exists or will be created, never an existing file."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DaptError(f"{folder}: exists and is not a folder: give a folder for the exported tables "
                        f"(created if needed)")
    return folder


def write_csv(summary: Summary, folder: str | Path) -> list[Path]:
    """Write ``configurations.csv`` and ``claims.csv`` into ``folder`` (created if needed), each atomically."""
    folder = target(folder)
    record = summary.record()
    texts = {folder / name: csv_text(record[key]) for name, key in TABLES.items()}
    for path, text in texts.items():
        atomic_write_text(path, text)
    return list(texts)


def write_json(summary: Summary, study: str, folder: str | Path) -> Path:
    """Write ``summary.json`` into ``folder`` (created if needed): the study's name, its ``configurations``
    and ``claims`` lists, and the rest of ``Summary.record()`` (plateaus, teacher margins, budget...) under
    ``summary``."""
    record = summary.record()
    tables = {name.removesuffix(".csv"): record.pop(key) for name, key in TABLES.items()}
    path = target(folder) / JSON_FILE
    atomic_write_json(path, {"study": study, **tables, "summary": record})
    return path
