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


def _start_lab(tmp_path, env_extra: dict):
    """JupyterLab on 127.0.0.1 with a token, serving a scratch copy of analysis.ipynb."""
    # A copy of the notebook in a scratch root: JupyterLab's autosave must never write
    # outputs into the repository's notebook.
    root = tmp_path / "lab"
    (root / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "analysis.ipynb", root / "notebooks" / "analysis.ipynb")
    port, token = _free_port(), secrets.token_hex(16)
    env = {**os.environ, "JUPYTERLAB_WORKSPACES_DIR": str(tmp_path / "ws"), **env_extra}
    log = open(tmp_path / "jupyterlab.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         f"--IdentityProvider.token={token}", "--allow-root", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
         "--LabApp.extension_manager=readonly"],  # no PyPI queries: a test needs no registry
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
    return proc, base, token, root


@pytest.fixture
def study_lab(tmp_path):
    """The committed long-study record (no results folder: read from records/results_long)."""
    _require_browser()
    proc, base, token, root = _start_lab(tmp_path, {"HRL_GRID": str(REPO / "params" / "study_long.yaml"),
                                                    "HRL_RESULTS_DIR": str(tmp_path / "results_long")})  # fmt: skip
    yield base, token, tmp_path / "results_long"
    proc.terminate()
    proc.wait(timeout=30)


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
    proc, base, token, _root = _start_lab(tmp_path, {"HRL_RESULTS_DIR": str(results),
                                                      "HRL_GRID": str(REPO / "params" / "grid.yaml")})  # fmt: skip
    yield base, token
    proc.terminate()
    proc.wait(timeout=30)


PLOT_STATE = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    title: (gd.layout && gd.layout.title && gd.layout.title.text) || '',
    shapes: ((gd.layout && gd.layout.shapes) || []).length,
    names: (gd.data || []).map(t => t.name || ''),
    ys: (gd.data || []).map(t => Array.from(t.y || []).slice(0, 4)),
}))"""


def _open_and_run(pw, base: str, token: str, shot: str):
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
        page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=240_000)
    except Exception:
        page.screenshot(path=str(ARTIFACTS / f"{shot}_timeout.png"), full_page=True)
        raise
    return browser, page


# Conditions waited on (no fixed sleeps: under load a plot takes as long as it takes).
FIRST_TITLE_HAS = """(text) => {
    const gd = document.querySelectorAll('.js-plotly-plot')[0];
    return !!(gd && gd.layout && gd.layout.title && (gd.layout.title.text || '').includes(text) && gd.data.length > 0);
}"""


def test_analysis_notebook_widgets_drive_plots(jupyterlab):
    from playwright.sync_api import sync_playwright

    base, token = jupyterlab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page = _open_and_run(pw, base, token, "analysis")
        page.wait_for_function(FIRST_TITLE_HAS, arg="normalized return", timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "analysis_before.png"), full_page=True)
        before = page.evaluate(PLOT_STATE)
        assert "normalized return" in before[0]["title"]
        assert any(n.startswith("k=60 ensemble") for n in before[0]["names"])

        page.locator(".widget-dropdown", has=page.locator("label", has_text="metric")).locator("select").select_option(
            "disagreement"
        )
        page.wait_for_function(
            "Array.from(document.querySelectorAll('.js-plotly-plot'))"
            ".some(gd => (gd.layout.title.text || '').includes('ensemble disagreement') && gd.data.length > 0)",
            timeout=120_000,
        )
        page.screenshot(path=str(ARTIFACTS / "analysis_after_metric_change.png"), full_page=True)
        after = page.evaluate(PLOT_STATE)
        browser.close()
    assert after[0]["title"] != before[0]["title"]
    assert after[0]["ys"] != before[0]["ys"]  # the traces' data changed, not only the title
    assert before[0]["shapes"] == 2 and after[0]["shapes"] == 0  # Phase I levels only on returns


PLOTS_TEXT = """() => Array.from(document.querySelectorAll('.js-plotly-plot')).map(gd => ({
    annotations: ((gd.layout && gd.layout.annotations) || []).map(a => a.text || ''),
    names: (gd.data || []).filter(t => t.showlegend !== false && t.name).map(t => t.name),
    modebar: Array.from(gd.querySelectorAll('.modebar-btn')).map(b => b.getAttribute('data-title') || ''),
    width: (gd._fullLayout && gd._fullLayout.width) || 0,
}))"""


def _select(page, label: str):
    return page.locator(".widget-dropdown, .widget-select-multiple", has=page.locator("label", has_text=label)).locator(
        "select"
    )


def test_the_explorer_opens_a_study_switches_setting_and_arms_compares_and_exports(study_lab):
    """The committed long-study record in JupyterLab: a setting and arms switched, the comparison view
    read, the view exported; no cloud button; figures as wide as the notebook."""
    from playwright.sync_api import sync_playwright

    base, token, results = study_lab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser, page = _open_and_run(pw, base, token, "study")
        page.wait_for_function(FIRST_TITLE_HAS, arg="each seed (thin)", timeout=120_000)
        page.get_by_text("cells complete").first.wait_for(timeout=60_000)
        # drawn as wide as the notebook (viewport 1400), not plotly's default 700 px
        page.wait_for_function(
            "document.querySelectorAll('.js-plotly-plot')[0]._fullLayout.width > 900", timeout=60_000
        )
        page.screenshot(path=str(ARTIFACTS / "study_first_view.png"), full_page=True)
        first = page.evaluate(PLOTS_TEXT)
        assert any("CQL halfcheetah k=60" in a for a in first[0]["annotations"] + [""]) or first[0]["names"]
        assert not any("Cloud" in t or "Chart Studio" in t for t in first[0]["modebar"])
        assert first[0]["width"] > 900
        assert "records/results_long" in page.content()  # says which record folder it reads

        _select(page, "setting").select_option(label="IQL hopper k=60")
        page.wait_for_function(
            "(Array.from(document.querySelectorAll('.js-plotly-plot'))[0].layout.annotations || [])"
            ".some(a => (a.text || '').includes('IQL hopper k=60'))",
            timeout=120_000,
        )
        _select(page, "arms").select_option(["vanilla", "spec"])
        page.wait_for_function(
            "(() => { const n = Array.from(document.querySelectorAll('.js-plotly-plot'))[0].data"
            ".filter(t => t.showlegend !== false && t.name && !t.name.startsWith('Phase')).map(t => t.name);"
            " return n.length === 2 && n.includes('spec') && n.includes('vanilla'); })()",
            timeout=120_000,
        )
        _select(page, "compare").select_option(label="spec (spec - vanilla)")
        page.wait_for_function(
            "(() => { const b = Array.from(document.querySelectorAll('b'))"
            ".some(e => e.textContent === 'spec (spec - vanilla)');"
            " const t = document.querySelector('table.hrl-comparison');"
            " return b && t && t.textContent.includes('5 vs 5'); })()",
            timeout=120_000,
        )
        table = page.locator("table.hrl-comparison").inner_text(timeout=60_000)
        assert "AUC" in table and "5 vs 5" in table and "worse" in table
        page.screenshot(path=str(ARTIFACTS / "study_comparison.png"), full_page=True)

        page.get_by_role("button", name="Export view").click()
        page.get_by_text("exported:").wait_for(timeout=120_000)
        page.screenshot(path=str(ARTIFACTS / "study_exported.png"), full_page=True)
        browser.close()
    exported = sorted(p.suffix for p in (results / "exports").iterdir())
    assert exported == [".csv", ".png", ".svg"]
    csv_text = next((results / "exports").glob("*.csv")).read_text()
    assert "spec (spec - vanilla)" in csv_text and "AUC" in csv_text
