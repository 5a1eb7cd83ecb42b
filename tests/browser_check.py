"""The explorer and a report in a real browser: JupyterLab from the venv, Debian's headless Chromium,
Playwright.

``make test-browser`` runs this script (not collected by pytest: it needs Chromium and a free
port). In a throwaway project holding the notebooks and a tiny digits study whose teacher it
trains first, it starts JupyterLab on localhost, opens ``notebooks/explore.ipynb``, runs all
cells, checks that the dropdowns show the registries' options and the study's teacher, changes
the distiller and the epochs, presses Run, waits for the run to be recorded as done, and saves
a screenshot to ``.browser-check/explore.png``. Then it opens a report as a reader does: the report of
``runs/fashion_ideal``, executed in the throwaway project from the committed runs' records (the committed
report stays as it is), checks its heading and that its figures are at most 1,600 px wide, and saves
``.browser-check/report.png`` (the top of the report) and ``report_figure.png`` (its accuracy figure).
Exit status 0 when everything was seen.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / ".browser-check"
CHROMIUM = "/usr/bin/chromium"
STUDY = """study: tiny
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 1, batch_size: 50}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
"""
REPORTED = "fashion_ideal"  # a committed study whose report the check reads
# the study's own params file, but for its runs: the report opens with its description
REPORT = f"""study: {REPORTED}
description: {json.dumps(yaml.safe_load((REPO / "params" / f"{REPORTED}.yaml").read_text())["description"])}
runs:
  - {{stage: report, name: report}}
"""
MAX_WIDTH_PX = 1600
# JupyterLab settings of the check: every cell of a notebook rendered (not only those in view), so a
# figure far down a report can be found and shown; no news pop-up over the screenshots
LAB_SETTINGS = {"@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
                "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"}}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project() -> Path:
    root = Path(tempfile.mkdtemp(prefix="dapt-browser-"))
    shutil.copytree(REPO / "notebooks", root / "notebooks")
    shutil.copy(REPO / "pyproject.toml", root / "pyproject.toml")
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text(STUDY)
    (root / "report.yaml").write_text(REPORT)  # outside params/: the explorer lists the studies there
    for name, settings in LAB_SETTINGS.items():
        (root / ".lab-settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / ".lab-settings" / name).write_text(json.dumps(settings))
    for record in (REPO / "runs" / REPORTED).glob("*/metrics.json"):  # what a report reads of each run
        if record.parent.name != "report":
            target = root / "runs" / REPORTED / record.parent.name / "metrics.json"
            target.parent.mkdir(parents=True)
            shutil.copy(record, target)
    return root


def dropdown(page, name: str):
    return page.locator(f".widget-dropdown:has(label:text-is('{name}')) select")


def open_notebook(page, port: int, token: str, path: str) -> None:
    """Open ``path`` in JupyterLab; a fresh JupyterLab asks which kernel to start: the notebook's own."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"http://127.0.0.1:{port}/lab/tree/{path}?token={token}")
    page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook").wait_for(timeout=120_000)
    select = page.locator(".jp-Dialog button:has-text('Select')")
    try:
        select.wait_for(timeout=15_000)
        select.click()
    except PlaywrightTimeout:
        pass


def check(page, port: int, token: str, distillers: list[str]) -> None:
    """Open the explorer, check its dropdowns, change some, press Run and wait for the run to be done."""
    open_notebook(page, port, token, "notebooks/explore.ipynb")
    page.locator(".jp-Notebook-ExecutionIndicator[data-status='idle']").wait_for(timeout=120_000)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    distiller = dropdown(page, "distiller")
    distiller.wait_for(timeout=120_000)
    shown = [t.replace("\xa0", " ") for t in distiller.locator("option").all_inner_texts()]  # ipywidgets' nbsp
    assert [text.split(" — ")[0] for text in shown] == distillers, shown
    teachers = [t.replace("\xa0", " ") for t in dropdown(page, "teacher").locator("option").all_inner_texts()]
    assert any(t.startswith("teacher — resnet18, from scratch, 16 px: ") for t in teachers), teachers
    distiller.select_option(index=distillers.index("none"))
    page.locator(".widget-text:has(label:text-is('epochs')) input").fill("1")
    page.locator(".widget-text:has(label:text-is('run name')) input").fill("browser_none")
    page.locator(".widget-button:has-text('Run')").click()
    page.locator(".widget-html:has-text('browser_none: done')").wait_for(timeout=600_000)
    page.locator(".widget-output img").first.wait_for(timeout=60_000)
    page.locator(".widget-button:has-text('Run')").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "explore.png"), full_page=False)


def check_report(page, port: int, token: str) -> None:
    """Open the executed report as a reader does: its heading shows, its figures are images at most
    ``MAX_WIDTH_PX`` wide; screenshots of its top and of its accuracy figure."""
    open_notebook(page, port, token, f"runs/{REPORTED}/report/notebook.ipynb")
    page.locator(".jp-RenderedMarkdown h1:has-text('Study report')").wait_for(timeout=60_000)
    # a reader sees the study's question and its first answers without scrolling, above the figures
    height = page.viewport_size["height"]
    question = page.locator(".jp-RenderedMarkdown p:has-text('The question.')")
    first_answer = page.locator(".jp-RenderedMarkdown li:has-text('points against')").first
    figures = page.locator(".jp-RenderedImage img").first
    for shown in (question, first_answer):
        shown.wait_for(timeout=60_000)
        assert shown.bounding_box()["y"] < height, f"not in the first screen of the report: {shown.inner_text()[:80]}"
    assert first_answer.bounding_box()["y"] < figures.bounding_box()["y"], "the answers come after the figures"
    page.screenshot(path=str(SHOTS / "report.png"), full_page=False)
    images = page.locator(".jp-RenderedImage img")
    images.last.wait_for(timeout=60_000)  # every cell is rendered (LAB_SETTINGS: no windowing)
    widths = images.evaluate_all("images => images.map(i => i.naturalWidth)")
    assert len(widths) == 4 and all(0 < w <= MAX_WIDTH_PX for w in widths), widths
    page.locator(".jp-RenderedMarkdown h2:has-text('Accuracy per configuration')").evaluate(
        "heading => heading.scrollIntoView({block: 'start'})")
    page.wait_for_timeout(1_000)  # the scroll settles
    page.screenshot(path=str(SHOTS / "report_figure.png"), full_page=False)


def main() -> int:
    from playwright.sync_api import sync_playwright

    from dapt.distillers import DISTILLERS

    root = project()
    env = {**os.environ, "DAPT_ROOT": str(root), "WANDB_MODE": "disabled", "JUPYTER_RUNTIME_DIR": str(root / ".rt"),
           "JUPYTERLAB_SETTINGS_DIR": str(root / ".lab-settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(root / ".lab-workspaces"),  # no tabs restored from another check
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dapt = [sys.executable, "-m", "dapt.cli"]
    subprocess.run([*dapt, "run", "params/tiny.yaml", "--quiet"], cwd=root, env=env, check=True)
    subprocess.run([*dapt, "run", "report.yaml", "--quiet"], cwd=root, env=env, check=True)
    port, token = free_port(), secrets.token_hex(16)
    lab = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--port={port}",
                            "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}",
                            f"--ServerApp.root_dir={root}", "--ServerApp.allow_root=True"],
                           cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=open(root / "lab.log", "wb"))
    SHOTS.mkdir(exist_ok=True)
    try:
        for _ in range(120):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.5)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            try:
                check(page, port, token, DISTILLERS.names())
                check_report(page, port, token)
            except Exception:
                page.screenshot(path=str(SHOTS / "failure.png"))
                print("browser check failed; the page is in", SHOTS / "failure.png", file=sys.stderr)
                raise
            browser.close()
        metrics = json.loads((root / "runs/tiny/browser_none/metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["params"]["distiller"] == "none", metrics.get("error")
        assert metrics["params"]["epochs"] == 1
        print(f"browser check passed: screenshots {SHOTS / 'explore.png'}, {SHOTS / 'report.png'} and "
              f"{SHOTS / 'report_figure.png'}; run {root}/runs/tiny/browser_none done, test_acc {metrics['test_acc']:.4f}")
        return 0
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
