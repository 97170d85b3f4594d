"""analysis.ipynb in a real JupyterLab, driven by headless Chromium through Playwright.

Starts JupyterLab on 127.0.0.1 (results: a small fixture folder), opens the notebook,
runs all cells, checks that the FigureWidgets rendered, changes the metric widget
and checks from the page that the plotted traces changed. Screenshots are kept in
test-artifacts/browser/. Needs /usr/bin/chromium (Debian package ``chromium``; .ci/run
installs it) -- Playwright's own browser download is never used.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import write_result_fixture

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
IN_CI = os.environ.get("CI") == "true"


def _require_browser():
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append("chromium (apt-get install chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install playwright)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if IN_CI:
            pytest.fail(message)  # CI installs both: a missing one is a broken set-up
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def jupyterlab(tmp_path):
    _require_browser()
    results = tmp_path / "results"
    for algo in ("iql", "cql"):
        for k, start in ((0, 50), (60, 30)):
            for seed in (0, 1):
                write_result_fixture(results, algo, "hopper-medium-v2", k, "ensemble", seed,
                                     [start, start + 5 + seed, start + 12, start + 15])  # fmt: skip
                write_result_fixture(results, algo, "hopper-medium-v2", k, "none", seed,
                                     [start, start + 1, start + 3 + seed, start + 4])  # fmt: skip
    # A copy of the notebook in a scratch root: JupyterLab's autosave must never write
    # outputs into the repository's notebook.
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "analysis.ipynb", root / "notebooks" / "analysis.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "HRL_RESULTS_DIR": str(results), "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws")}
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
            break
        except OSError:
            assert proc.poll() is None, (tmp_path / "jupyterlab.log").read_text()
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("JupyterLab did not start: " + (tmp_path / "jupyterlab.log").read_text()[-2000:])
    yield base, token
    proc.terminate()
    proc.wait(timeout=30)


PLOT_STATE = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    title: (gd.layout && gd.layout.title && gd.layout.title.text) || '',
    shapes: ((gd.layout && gd.layout.shapes) || []).length,
    names: (gd.data || []).map(t => t.name || ''),
    ys: (gd.data || []).map(t => Array.from(t.y || []).slice(0, 4)),
}))"""


def test_analysis_notebook_widgets_drive_plots(jupyterlab):
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )  # fmt: skip
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{base}/lab/tree/notebooks/analysis.ipynb?token={token}", timeout=120_000)
        page.wait_for_selector(".jp-Notebook", timeout=120_000)
        page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)  # kernel connected
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_text("Run All Cells", exact=True).click()
        try:
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=180_000)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "analysis_timeout.png"), full_page=True)
            raise
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "analysis_before.png"), full_page=True)
        before = page.evaluate(PLOT_STATE)
        assert "normalized return" in before[0]["title"]
        assert any(n.startswith("k=60 ensemble") for n in before[0]["names"])

        page.locator(".widget-dropdown", has=page.locator("label", has_text="metric")).locator("select").select_option(
            "disagreement"
        )
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".some(gd => (gd.layout.title.text || '').includes('ensemble disagreement'))",
            timeout=60_000,
        )
        page.wait_for_timeout(1000)
        page.screenshot(path=str(ARTIFACTS / "analysis_after_metric_change.png"), full_page=True)
        after = page.evaluate(PLOT_STATE)
        browser.close()
    assert after[0]["title"] != before[0]["title"]
    assert after[0]["ys"] != before[0]["ys"]  # the traces' data changed, not only the title
    assert before[0]["shapes"] == 2 and after[0]["shapes"] == 0  # Phase I levels only on returns
