"""README.md and docs/*.md against what they describe: every generated block (the committed studies' results,
the stage parameters) equals what ``dapt docs`` would write now, every relative link and every repository path
a page names exists, and the README stays a front page."""
from __future__ import annotations

import dataclasses
import difflib
import re
from pathlib import Path

import pytest

from dapt import cli
from dapt.core.fields import choices_of
from dapt.ui import docs
from dapt.pipeline import config

REPO = Path(__file__).resolve().parents[1]
PAGES = docs.doc_pages(REPO)
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PATH = re.compile(r"`((?:dapt|tests|benchmarks|params|notebooks|docs)/[\w./-]*[\w/])`")


def _name(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def test_the_pages_are_there_and_the_readme_is_a_front_page():
    assert [_name(p) for p in PAGES[:1]] == ["README.md"] and len(PAGES) > 5
    lines = (REPO / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 250, f"README.md has {len(lines)} lines: move a section to docs/ and link it"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_generated_block_matches_the_runs_and_fields(page, monkeypatch):
    monkeypatch.chdir(REPO)  # results markers name study folders relative to the repository
    for shown, expected in docs.generated_blocks(page.read_text(encoding="utf-8")):
        diff = "\n".join(difflib.unified_diff(shown.splitlines(), expected.splitlines(), _name(page), "generated",
                                             lineterm=""))
        assert shown == expected, f"{_name(page)}: a generated block is out of date: run `dapt docs`.\n{diff}"


@pytest.mark.parametrize("notebook", sorted((REPO / "notebooks").glob("*.ipynb")), ids=_name)
def test_every_notebook_is_as_dapt_docs_writes_it(notebook):
    """Generated parameters cell and prose blocks up to date, no outputs committed."""
    diff = "\n".join(difflib.unified_diff(notebook.read_text(encoding="utf-8").splitlines(),
                                         docs.regenerated_notebook(notebook).splitlines(), _name(notebook),
                                         "generated", lineterm=""))
    assert not diff, f"{_name(notebook)} is out of date: run `dapt docs`.\n{diff}"


@pytest.mark.parametrize("stage", list(config.STAGES))
def test_a_generated_parameters_cell_holds_every_field_with_its_default(stage):
    """What papermill reads from the cell is the stage's dataclass, key for key and default for default."""
    namespace: dict = {}
    exec(docs.parameters_cell(stage), namespace)  # noqa: S102 - our own generated source
    fields = dataclasses.fields(config.stage_config(stage))
    assert {k: v for k, v in namespace.items() if k != "__builtins__"} == {f.name: f.default for f in fields}


@pytest.mark.parametrize("stage", list(config.STAGES))
def test_papermill_reads_every_parameter_of_a_stage_notebook(stage, caplog):
    """papermill infers a notebook's parameters from its cell line by line, and skips (with only a log line) any
    line it cannot parse: a skipped parameter is then "unknown" to it when a run passes it."""
    import papermill
    with caplog.at_level("WARNING", logger="papermill"):
        inferred = papermill.inspect_notebook(str(REPO / "notebooks" / f"{stage}.ipynb"))
    assert not [r.getMessage() for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert sorted(inferred) == sorted(f.name for f in dataclasses.fields(config.stage_config(stage)))


def test_the_distillers_are_listed_from_the_registry_in_the_notebook_and_the_docs():
    field = next(f for f in dataclasses.fields(config.DistillConfig) if f.name == "distiller")
    block = docs.choices_markdown("distill", "distiller")
    assert [line.split("`")[1] for line in block.splitlines()] == choices_of(field)
    for page in (REPO / "docs" / "distillers.md", REPO / "notebooks" / "distill.ipynb"):
        assert "<!-- choices: distill.distiller -->" in page.read_text(encoding="utf-8"), _name(page)


def test_the_results_blocks_cover_the_embedded_study_and_the_params_page_embeds_the_reference():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert "<!-- results: runs/fashion_quick -->" in readme
    params_page = (REPO / "docs" / "params.md").read_text(encoding="utf-8")
    assert params_page.count(docs.PARAMS_OPEN) == 1 and params_page.count(docs.PARAMS_CLOSE) == 1


def test_the_parameter_reference_lists_every_key_of_every_stage_once_per_meaning():
    text = docs.params_markdown()
    for stage, cls in config.STAGES.items():
        for field in dataclasses.fields(cls):
            assert f"- `{field.name}` = " in text, f"{stage}.{field.name} is missing from dapt params --markdown"
        one = docs.params_markdown(stage)
        assert [line.split("`")[1] for line in one.splitlines()] == [f.name for f in dataclasses.fields(cls)]
    listed = re.findall(r"^- `(\w+)` = ", text, re.M)
    keys = {f.name for cls in config.STAGES.values() for f in dataclasses.fields(cls)}
    assert set(listed) == keys
    assert len(listed) < sum(len(dataclasses.fields(cls)) for cls in config.STAGES.values())  # shared keys once


def test_dapt_params_markdown_prints_the_reference(capsys):
    assert cli.main(["params", "--markdown"]) == 0
    assert capsys.readouterr().out == docs.params_markdown() + "\n"
    assert cli.main(["params", "teacher", "--markdown"]) == 0
    assert capsys.readouterr().out.startswith("- `")


def test_dapt_docs_check_finds_a_stale_block_and_docs_rewrites_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # dapt docs moves to the repository root; this puts the cwd back afterwards
    monkeypatch.setattr("dapt.core.files.repo_root", lambda: tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text("front\n", encoding="utf-8")
    page = tmp_path / "docs" / "p.md"
    page.write_text(f"intro\n\n{docs.PARAMS_OPEN}\nstale\n{docs.PARAMS_CLOSE}\n", encoding="utf-8")
    assert cli.main(["docs", "--check"]) == 1 and "stale" in page.read_text(encoding="utf-8")
    assert cli.main(["docs"]) == 0
    assert page.read_text(encoding="utf-8") == f"intro\n\n{docs.params_markdown()}\n"
    assert cli.main(["docs", "--check"]) == 0


def _anchors(page: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but '-' and '_' dropped, spaces as '-'."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_relative_link_points_to_an_existing_file_and_heading(page):
    text = page.read_text(encoding="utf-8")
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        assert linked.exists(), f"{_name(page)} links to {target}, which does not exist"
        if anchor and linked.suffix == ".md":
            assert anchor in _anchors(linked), f"{_name(page)} links to {target}: no such heading in {linked.name}"


@pytest.mark.parametrize("page", PAGES, ids=_name)
def test_every_repository_path_a_page_names_exists(page):
    """Catches module paths left behind by a move (`dapt/compare.py` for `dapt/analysis/compare.py`)."""
    missing = [p for p in PATH.findall(page.read_text(encoding="utf-8"))
               if "<" not in p and "*" not in p and not (REPO / p).exists()]
    assert not missing, f"{_name(page)} names paths that do not exist: {', '.join(missing)}"


def test_every_default_is_shown_as_yaml_that_reads_back_as_itself():
    """`dapt params` and the reference spell a default as the params file must: `null`, not Python's None."""
    import yaml

    for cls in config.STAGES.values():
        for field in dataclasses.fields(cls):
            text = config.yaml_value(field.default)
            assert "\n" not in text and yaml.safe_load(text) == field.default, (field.name, text)
    assert [config.yaml_value(v) for v in (None, False, True, "off", "", 1e-5)] == [
        "null", "false", "true", "'off'", "''", "1.0e-05"]


def test_the_readme_names_every_study_under_runs():
    """A study committed under runs/ is named in the README's list of studies (runs/interactive is where
    notebooks run by hand record, git-ignored)."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    studies = [p.name for p in sorted((REPO / "runs").iterdir()) if p.is_dir() and p.name != "interactive"]
    missing = [name for name in studies if not re.search(rf"\b{re.escape(name)}\b", readme)]
    assert studies and not missing, f"README.md does not name runs/{', runs/'.join(missing)}: add them to its studies"


def test_the_pages_state_the_studies_epochs_and_the_embedded_studys_time(monkeypatch):
    from dapt.pipeline.study import load_study

    monkeypatch.setenv("DAPT_ROOT", str(REPO))  # studies naming a run folder of another study
    epochs = [spec.cfg.epochs for path in sorted((REPO / "params").glob("*.yaml"))
              for spec in load_study(path, check_data=False).runs if spec.stage == "distill"]
    page = " ".join((REPO / "docs" / "distillers.md").read_text(encoding="utf-8").split())
    low, high, most = map(int, re.search(r"students (\d+) to (\d+) epochs, most of them (\d+) or fewer", page).groups())
    assert (low, high) == (min(epochs), max(epochs)) and sum(e <= most for e in epochs) > len(epochs) / 2
    # the README's `make study` line and the study's own header give one run time
    readme = re.search(r"make study .*\((about \d+ minutes) on 2 CPU cores\)", (REPO / "README.md").read_text())
    assert readme and f"{readme.group(1)} on 2 CPU cores" in (REPO / "params" / "fashion_quick.yaml").read_text()
