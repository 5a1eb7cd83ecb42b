"""`dapt report --csv/--json`: a committed study's configurations and claims tables as files, every column
the analysis computes, for a paper's own plotting (no notebooks executed here)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from dapt.analysis import export
from dapt.analysis.summary import Summary
from dapt.cli import main

REPO = Path(__file__).resolve().parents[1]
STUDY = "runs/fashion_ideal"  # committed: 73 runs, configurations over seeds and many claims


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_columns_are_every_key_in_first_seen_order_and_lists_read_as_text():
    records = [{"run": "a", "p": 0.5}, {"run": "b", "ci": (0.1, 0.2), "p": None, "missing": ["s1", "s2"]}]
    assert export.columns(records) == ["run", "p", "ci", "missing"]
    assert export.csv_text(records) == "run,p,ci,missing\na,0.5,,\nb,,\"0.1, 0.2\",\"s1, s2\"\n"


def test_csv_and_json_of_a_committed_study_hold_every_row_and_column(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    record = Summary.read(STUDY).record()
    out = tmp_path / "tables" / "fashion_ideal"  # created, parents too
    assert main(["report", STUDY, "--csv", str(out), "--json", str(out)]) == 0
    said = capsys.readouterr().out
    assert said.count("\n") == 1 and "configurations.csv" in said and "summary.json" in said
    assert sorted(p.name for p in out.iterdir()) == ["claims.csv", "configurations.csv", "summary.json"]

    configurations, claims = read_csv(out / "configurations.csv"), read_csv(out / "claims.csv")
    assert len(configurations) == len(record["configurations"]) > 1
    assert len(claims) == len(record["comparisons"]) > 1
    assert list(claims[0]) == export.columns(record["comparisons"])
    assert list(configurations[0]) == export.columns(record["configurations"])
    for row, comparison in zip(claims, record["comparisons"]):
        assert (row["claim"], row["a_run"], row["b_run"]) == (comparison["claim"], comparison["a_run"],
                                                               comparison["b_run"])
        assert float(row["p"]) == comparison["p"]  # raw Welch p, exactly as computed
        assert float(row["p_holm"]) == comparison["p_holm"] >= comparison["p"]  # Holm over the study's family
        assert float(row["ci_low_pt"]) <= float(row["gap_pt"]) <= float(row["ci_high_pt"])
    dkd_vs_none = [r for r in claims if (r["claim"], r["a_run"]) == ("no teacher", "lite0_dkd_s{0,1,2}")]
    # raw p 0.023 reads as a loss to dkd; adjusted over the study's 38 comparisons it is within seed noise
    assert [(round(float(r["p"]), 3), round(float(r["p_holm"]), 2), r["verdict"]) for r in dkd_vs_none] == \
        [(0.023, 0.5, "within")]
    assert (sum(float(r["p"]) < 0.05 for r in claims), sum(r["verdict"] == "beyond" for r in claims)) == (19, 5)
    assert [float(r["test_acc_mean"]) for r in configurations] == [c["test_acc_mean"] for c in record["configurations"]]

    saved = json.loads((out / "summary.json").read_text())
    assert saved["study"] == "fashion_ideal"
    assert saved["configurations"] == record.pop("configurations") and saved["claims"] == record.pop("comparisons")
    assert saved["summary"] == json.loads(json.dumps(record))  # plateaus, margins, budget... as the report records


def test_export_refuses_a_file_as_folder_and_a_printed_report_beside_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAPT_ROOT", str(REPO))  # the study is the repository's; the folders are typed from here
    monkeypatch.chdir(tmp_path)
    Path("taken").write_text("a file\n")
    assert main(["report", str(REPO / STUDY), "--json", "fresh", "--csv", "taken"]) == 2
    err = capsys.readouterr().err
    assert err == "dapt: error: taken: exists and is not a folder: give a folder for the exported tables " \
                  "(created if needed)\n"
    assert not Path("fresh").exists(), "nothing is written when one folder is refused"
    assert Path("taken").read_text() == "a file\n"
    assert main(["report", str(REPO / STUDY), "--csv", "out", "--markdown"]) == 2
    assert "--csv and --json write files and print no report" in capsys.readouterr().err
    assert not Path("out").exists()
