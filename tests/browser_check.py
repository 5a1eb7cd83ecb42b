"""The explorer in a real browser: JupyterLab from the venv, Debian's headless Chromium, Playwright.

``make test-browser`` runs this script (not collected by pytest: it needs Chromium and a free
port). In a throwaway project holding the notebooks and a tiny digits study whose teacher it
trains first, it starts JupyterLab on localhost, opens ``notebooks/explore.ipynb``, runs all
cells, checks that the dropdowns show the registries' options and the study's teacher, changes
the distiller and the epochs, presses Run, waits for the run to be recorded as done, and saves
a screenshot to ``.browser-check/explore.png``. Exit status 0 when everything was seen.
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

REPO = Path(__file__).resolve().parents[1]
SHOTS = REPO / ".browser-check"
CHROMIUM = "/usr/bin/chromium"
STUDY = """study: tiny
defaults: {dataset: digits, image_size: 16, train_subset: 300, epochs: 1, batch_size: 50}
runs:
  - {stage: teacher, name: teacher, model: resnet18, init: fr, optimizer: sgd, lr: 0.05}
"""


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
    return root


def dropdown(page, name: str):
    return page.locator(f".widget-dropdown:has(label:text-is('{name}')) select")


def check(page, port: int, token: str, distillers: list[str]) -> None:
    """Open the explorer, check its dropdowns, change some, press Run and wait for the run to be done."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    page.goto(f"http://127.0.0.1:{port}/lab/tree/notebooks/explore.ipynb?token={token}")
    page.locator(".jp-Notebook").wait_for(timeout=120_000)
    select = page.locator(".jp-Dialog button:has-text('Select')")
    try:  # a fresh JupyterLab asks which kernel to start; the notebook's own (the project's) is preselected
        select.wait_for(timeout=15_000)
        select.click()
    except PlaywrightTimeout:
        pass
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


def main() -> int:
    from playwright.sync_api import sync_playwright

    from dapt.distillers import DISTILLERS

    root = project()
    env = {**os.environ, "DAPT_ROOT": str(root), "WANDB_MODE": "disabled", "JUPYTER_RUNTIME_DIR": str(root / ".rt"),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    dapt = [sys.executable, "-m", "dapt.cli"]
    subprocess.run([*dapt, "run", "params/tiny.yaml", "--quiet"], cwd=root, env=env, check=True)
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
            except Exception:
                page.screenshot(path=str(SHOTS / "failure.png"))
                print("browser check failed; the page is in", SHOTS / "failure.png", file=sys.stderr)
                raise
            browser.close()
        metrics = json.loads((root / "runs/tiny/browser_none/metrics.json").read_text())
        assert metrics["status"] == "done" and metrics["params"]["distiller"] == "none", metrics.get("error")
        assert metrics["params"]["epochs"] == 1
        print(f"browser check passed: screenshot {SHOTS / 'explore.png'}; run {root}/runs/tiny/browser_none "
              f"done, test_acc {metrics['test_acc']:.4f}")
        return 0
    finally:
        lab.terminate()
        lab.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
