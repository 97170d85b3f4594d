"""The explorer behind ``notebooks/analysis.ipynb``: widgets over any record, a grid or a study.

:func:`explorer` opens a record (``hrl_core.lab.record.Record``) and returns the browser for it:

- :class:`RunBrowser` for a plain grid (arms = bonus types): algorithm, dataset, corruption
  levels and a metric drive the fine-tuning curves (a panel per k), the exploration signal (the
  selected k only) and the recovery table;
- :class:`StudyBrowser` for a study (a grid file with arms): part, setting, arms, seeds, per-seed
  curves on demand, a metric; the comparison view (arm − reference per metric with its interval
  and verdict, as the study's tables, from its declared analysis where it has one); the
  diagnostics. Both export the current view: its figure as PNG and SVG, its numbers as CSV
  (into ``<results folder>/exports/``, never into the committed record).

"Reload" re-reads the runs, so a browser works while a grid is running. Each FigureWidget is built
from a finished ``go.Figure`` and replaced in one batch update (layout changes made to a widget
after it is created can be lost on its first render); the plotly toolbar has no cloud button.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import subprocess
from pathlib import Path

from hrl_core.lab import stats, summary
from hrl_core.lab.analysis import is_interim, stratum_of
from hrl_core.lab.figures import catalog, to_matplotlib, to_plotly
from hrl_core.lab.metrics import CURVES
from hrl_core.lab.record import Record, shown

METRICS = {c.label: c.key for c in CURVES}  # the curves' metric selector (hrl_core.lab.metrics)


def loading_message(params, part: str = "") -> str:
    """What the explorer says while it builds (importing plotly's widgets alone takes ~15 s)."""
    from hrl_core.lab import grids

    try:
        n = len(grids.expand(grids.load_grid(params), {"parts": [part]} if part else None))
    except Exception:  # noqa: BLE001 - the browser itself reports a bad grid file
        n = "?"
    return f"<p><b>loading {n} runs of {shown(params)}…</b> (the first view takes 20-40 s: plotly's widgets load)</p>"


def explorer(params, save_dir=None, part: str = ""):
    """The browser for a record: a study's or a grid's (display ``explorer(...).widget``)."""
    from IPython.display import HTML, display

    from hrl_core.lab import grids
    from hrl_core.lab.workbook import REPO

    handle = display(HTML(loading_message(params, part)), display_id=True)
    if save_dir is None:  # the file's save_dir means "from the repository root", as in every notebook here
        settings = grids.load_grid(params).get("settings") or {}
        save_dir = REPO / settings.get("save_dir", "results_phase2")
    rec = Record.open(params, part, save_dir)
    browser = StudyBrowser(rec) if rec.is_study else RunBrowser(rec)
    if handle is not None:
        handle.update(HTML(""))
    fill_width()
    return browser


def fill_width() -> None:
    """Make the figures take the notebook's width. plotly 6's FigureWidget draws at 700 px when it
    is drawn before its box has a width (plotly.py#5208); its figures are ``responsive``, so a window
    resize event once they are on the page re-lays them out to their container's width."""
    from IPython.display import Javascript, display

    display(Javascript("for (const ms of [800, 2500, 6000]) {"
                       " setTimeout(() => window.dispatchEvent(new Event('resize')), ms); }"))  # fmt: skip


def checkout_text(rec: Record) -> str:
    """Which checkout and which record folder a browser reads (another checkout's package would read
    that checkout's records: this says so)."""
    from hrl_core import resources

    root = resources.base_dir()
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, timeout=5).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        commit = ""
    where = ", ".join(f"<code>{s}</code>" for s in rec.sources) or f"<code>{shown(rec.save_dir)}</code>"
    return (f"checkout <code>{root}</code>" + (f" at <code>{commit}</code>" if commit else "")
            + f" · grid file <code>{shown(rec.params)}</code> · runs read from {where}")  # fmt: skip


def _figure_widget(fig):
    import plotly.graph_objects as go

    widget = go.FigureWidget(fig)
    widget._config = dict(to_plotly.CONFIG)  # no cloud button, no logo
    return widget


def _replace(widget, fig) -> None:
    with widget.batch_update():
        widget.data = ()
        widget.add_traces(list(fig.data))
        # Assigning a layout is merged into the page's old one, so shapes (the Phase I level
        # lines) would survive a switch to a metric that has none: clear them explicitly first.
        widget.layout.shapes = ()
        widget.layout.annotations = ()
        # the new layout whole (an assigned layout object lost its annotations' text inside a batch)
        widget.update_layout(fig.layout.to_plotly_json(), overwrite=True)


class _Exporting:
    """Export of the current view: figure (PNG + SVG, 300 dpi) and numbers (CSV)."""

    def _export_dir(self) -> Path:
        out = Path(self.rec.save_dir) / "exports"
        out.mkdir(parents=True, exist_ok=True)
        return out

    def export(self, figure, rows: list[dict], stem: str) -> list[Path]:
        out = self._export_dir()
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        figure.name = f"{stem}_{stamp}"
        paths = to_matplotlib.save(figure, out)
        if rows:
            path = out / f"{stem}_{stamp}.csv"
            keys = list(dict.fromkeys(k for r in rows for k in r))
            with open(path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=keys)
                writer.writeheader()
                writer.writerows(rows)
            paths.append(path)
        self.exported.value = "exported: " + ", ".join(f"<code>{shown(p)}</code>" for p in paths)
        return paths


# --------------------------------------------------------------------------------------
# A plain grid
# --------------------------------------------------------------------------------------
def recovery_table_html(rows: list[dict], algo: str, dataset: str, ks) -> str:
    """Per k and method: final return, the dip, steps to regain step 0 and to the clean level."""
    body = []
    for row in rows:
        if row.algo != algo or row.dataset != dataset or row.k not in ks:
            continue
        body.append(
            f"<tr><td>{row.k:g}</td><td>{row.arm}</td><td>{row.n_seeds}</td>"
            f"<td>{row.final_mean:.1f} ± {summary._f(row.final_sd)}</td><td>{summary.dip_text(row)}</td>"
            f"<td>{row.regain_text}</td><td>{row.clean_text}</td><td>{row.spec80_text}</td></tr>"
        )
    if not body:
        return "<p>No complete runs for this selection yet.</p>"
    head = ("<tr><th>k</th><th>method</th><th>seeds</th><th>final return</th><th>dip</th>"
            "<th>steps to regain step 0</th><th>steps to clean</th><th>steps to 80%</th></tr>")  # fmt: skip
    return f"<table class='hrl-efficiency'>{head}{''.join(body)}</table>"


class RunBrowser(_Exporting):
    """Widgets + FigureWidgets over a grid's record. Display ``RunBrowser(...).widget``."""

    def __init__(self, rec: Record | str | Path = "params/grid.yaml", save_dir: str | Path | None = None):
        import ipywidgets as w

        from hrl_core.errors import HrlError

        self.rec = rec if isinstance(rec, Record) else Record.open(rec, save_dir=save_dir)
        if self.rec.is_study:
            raise HrlError(f"{self.rec.params} is a study (it has arms): explore it with hrl_core.lab.widgets.explorer "
                           "(notebooks/analysis.ipynb does), or read its record in notebooks/study.ipynb")  # fmt: skip
        self.cells = self.rec.cells
        self.save_dir = self.rec.save_dir
        self._load(reload=False)
        from hrl_core.rl import agents

        algos = sorted({r.algo for r in self.runs}) or list(agents.names())
        datasets = sorted({r.dataset for r in self.runs}) or ["hopper-medium-v2"]
        ks = sorted({r.k for r in self.runs}) or [0.0, 30.0, 60.0]
        self.algo = w.Dropdown(options=algos, value=algos[0], description="algo")
        self.dataset = w.Dropdown(options=datasets, value=datasets[0], description="dataset")
        self.ks = w.SelectMultiple(options=[(f"k={k:g}", k) for k in ks], value=tuple(ks), description="corruption")
        self.metric = w.Dropdown(options=list(METRICS), value="return", description="metric")
        self.reload = w.Button(description="Reload results", icon="refresh")
        self.export_button = w.Button(description="Export view", icon="download",
                                      tooltip="the curves as PNG and SVG, the table's numbers as CSV")  # fmt: skip
        self.exported = w.HTML()
        self.status = w.HTML()
        self.table = w.HTML()
        self.curves = _figure_widget(self._curves())
        self.signal = _figure_widget(self._signal())
        for control in (self.algo, self.dataset, self.ks, self.metric):
            control.observe(lambda _change: self.refresh(), names="value")
        self.reload.on_click(lambda _b: self.refresh(reload=True))
        self.export_button.on_click(lambda _b: self.export_view())
        layout = w.Layout(width="100%")
        self.curves.layout.width = self.signal.layout.width = None
        self.widget = w.VBox(
            [w.HBox([self.algo, self.dataset, self.metric]), w.HBox([self.ks, self.reload, self.export_button]),
             self.status, self.exported, self.curves, self.signal, self.table], layout=layout,
        )  # fmt: skip
        self._update_text()

    def _load(self, reload: bool = True) -> None:
        if reload:
            self.rec = Record.of_cells(self.rec.params, self.rec.cells, whole=self.rec.whole)
        self.runs = self.rec.drawn
        self.levels = self.rec.levels
        self.rows = self.rec.rows()

    def _curves_spec(self):
        return catalog.curves(self.runs, self.algo.value, self.dataset.value, METRICS[self.metric.value],
                              ks=set(self.ks.value))  # fmt: skip

    def _curves(self):
        return to_plotly.render(self._curves_spec())

    def _signal(self):
        return to_plotly.render(catalog.exploration(self.runs, self.algo.value, self.dataset.value, set(self.ks.value)))

    def _update_text(self) -> None:
        done = sum(r.status == "complete" for r in self.runs)
        where = ", ".join(f"<code>{s}</code>" for s in self.rec.sources) or f"<code>{shown(self.save_dir)}</code>"
        self.status.value = (f"{len(self.runs)} of {len(self.cells)} cells have runs in {where} ({done} complete)"
                             f"<br>{checkout_text(self.rec)}")  # fmt: skip
        self.table.value = recovery_table_html(self.rows, self.algo.value, self.dataset.value, set(self.ks.value))

    def export_view(self) -> list[Path]:
        rows = [
            {k: v for k, v in r.as_dict().items() if not k.endswith("_each")}
            for r in self.rows
            if r.algo == self.algo.value and r.dataset == self.dataset.value and r.k in self.ks.value
        ]
        return self.export(self._curves_spec(), rows, f"{self.algo.value}_{self.dataset.value}")

    def refresh(self, reload: bool = False) -> None:
        if reload:
            self._load()
        _replace(self.curves, self._curves())
        _replace(self.signal, self._signal())
        self._update_text()


# --------------------------------------------------------------------------------------
# A study
# --------------------------------------------------------------------------------------
# a record without a declared analysis: its return intervals are plain Welch, which is not 95% on data
# like ours (docs/statistics.md: a nominal 95% covered as little as 0.72 on resamples of the records)
WELCH_HOW = "Welch nominal 95% (covers as little as 72% on data like these), uncorrected: descriptive"


def comparison_rows(rec: Record, effects, comparison: str, setting: tuple) -> list[dict]:
    """The comparison view's numbers: per metric, arm − reference with its interval and verdict."""
    algo, dataset, k = setting
    out = []
    for e in effects:
        if isinstance(e, dict):  # Welch rows (a study without a declared analysis)
            if (e["comparison"], e["algo"], e["dataset"], e["k"]) != (comparison, algo, dataset, k):
                continue
            for m in summary.HEADLINE + ("clean",):
                d = e[m]
                out.append({"metric": summary.BY_KEY[m].label, "seeds": f"{e['n_arm']} vs {e['n_reference']}",
                            "difference": d.estimate, "low": d.low, "high": d.high, "verdict": e[f"{m}_verdict"],
                            "unit": summary.BY_KEY[m].unit,
                            "how": WELCH_HOW if summary.BY_KEY[m].unit == "points"
                            else d.method})  # fmt: skip
        elif (e.comparison, e.algo, e.dataset, e.k) == (comparison, algo, dataset, k):
            level = stats.percent(1 - e.alpha)
            how = (f"primary: calibrated {level} interval, p after Holm " + (f"{e.p_holm:.3f}"
                   if math.isfinite(e.p_holm) else "—") if e.primary else "secondary, uncorrected")  # fmt: skip
            if e.primary and e.permutation is not None and math.isfinite(e.p_permutation_holm):
                how += f"; permutation check {e.p_permutation_holm:.3f} after Holm"
            if not e.primary and e.method and not all(map(math.isfinite, e.ci)):
                how += f" ({e.method})"  # why there is no interval
            verdict = e.verdict
            progress = rec.study_progress() if e.primary and rec is not None else None
            if is_interim(progress):
                verdict += " (interim)"  # the calibration and the family are the whole file's, not final yet
                how += f"; interim: {progress[0]} of {progress[1]} cells of the study file complete"
            out.append({"metric": summary.BY_KEY[e.metric].label, "seeds": e.design.text(), "difference": e.estimate,
                        "low": e.ci[0], "high": e.ci[1], "verdict": verdict, "how": how,
                        "unit": summary.BY_KEY[e.metric].unit})  # fmt: skip
            if e.primary and len(e.per_checkpoint) > 1:  # the strata beside the pooled estimate
                for c in e.per_checkpoint:
                    out.append({"metric": f"{summary.BY_KEY[e.metric].label}, checkpoint {c.phase1_seed}",
                                "seeds": f"{c.n_arm} vs {c.n_reference} seeds", "difference": c.estimate,
                                "low": c.low, "high": c.high, "verdict": f"checkpoints {e.agreement}",
                                "how": "within this checkpoint: plain Welch, nominal 95%, descriptive",
                                "unit": summary.BY_KEY[e.metric].unit})  # fmt: skip
    return out


def comparison_html(rows: list[dict], comparison: str) -> str:
    if not rows:
        return f"<p>{comparison}: no complete runs on both sides for this setting yet.</p>"

    def finite(v) -> bool:
        return v is not None and not (isinstance(v, float) and not math.isfinite(v))

    def f(v, digits=1):
        return f"{v:+,.{digits}f}" if finite(v) else "—"

    def cells(r):
        d = 0 if r.get("unit") == "steps" else 1  # steps are whole numbers
        interval = f" [{f(r['low'], d)}, {f(r['high'], d)}]" if finite(r["low"]) and finite(r["high"]) else ""
        return (f"<td>{r['metric']}</td><td>{r['seeds']}</td><td>{f(r['difference'], d)}{interval}</td>"
                f"<td><b>{r['verdict']}</b></td><td>{r['how']}</td>")  # fmt: skip

    body = "".join(f"<tr>{cells(r)}</tr>" for r in rows)
    head = "<tr><th>metric</th><th>seeds</th><th>arm − reference [interval]</th><th>verdict</th><th>how</th></tr>"
    return f"<p><b>{comparison}</b></p><table class='hrl-comparison'>{head}{body}</table>"


def seed_options(runs) -> list[tuple[str, tuple[int, int]]]:
    """The seed selector's options: one per (Phase I checkpoint, online seed) of the runs. Seed 0
    from checkpoint 1 and seed 0 from checkpoint 2 are different runs; the label names the
    checkpoint where checkpoints are shared by seeds (not where each seed has its own)."""
    keys = sorted({(stratum_of(r), r.seed) for r in runs})
    checkpoints = {c for c, _ in keys}
    several = 1 < len(checkpoints) < len(keys)
    return [(f"seed {s} · ckpt {c}" if several else str(s), (c, s)) for c, s in keys]


class StudyBrowser(_Exporting):
    """Widgets + FigureWidgets over a study's record. Display ``StudyBrowser(rec).widget``."""

    def __init__(self, rec: Record | str | Path, save_dir: str | Path | None = None, part: str = ""):
        import ipywidgets as w

        self.rec = rec if isinstance(rec, Record) else Record.open(rec, part, save_dir)
        self._save_dir = save_dir
        parts = list(self.rec.whole.get("parts") or {})
        self.part = w.Dropdown(options=[("whole study", "")] + [(p, p) for p in parts], value=self.rec.part,
                               description="part", layout=w.Layout(display="" if parts else "none"))  # fmt: skip
        self.setting = w.Dropdown(description="setting")
        self.arms = w.SelectMultiple(description="arms", rows=5)
        self.seeds = w.SelectMultiple(description="seeds", rows=5)
        self.per_seed = w.Checkbox(value=True, description="each seed's curve")
        self.metric = w.Dropdown(options=list(METRICS), value="return", description="metric")
        self.comparison = w.Dropdown(description="compare")
        self.reload = w.Button(description="Reload results", icon="refresh")
        self.export_button = w.Button(description="Export view", icon="download",
                                      tooltip="the curves as PNG and SVG, the comparison's numbers as CSV")  # fmt: skip
        self.exported = w.HTML()
        self.status = w.HTML()
        self.table = w.HTML()
        self._busy = False
        self._load()
        self.curves = _figure_widget(self._curves())
        self.diagnostics = _figure_widget(self._diagnostics())
        self.part.observe(lambda _c: self.refresh(reload=True), names="value")
        for control in (self.setting, self.arms, self.seeds, self.per_seed, self.metric, self.comparison):
            control.observe(lambda _c: self.refresh(), names="value")
        self.reload.on_click(lambda _b: self.refresh(reload=True))
        self.export_button.on_click(lambda _b: self.export_view())
        self.widget = w.VBox(
            [w.HBox([self.part, self.setting, self.metric, self.per_seed]),
             w.HBox([self.arms, self.seeds, w.VBox([self.comparison, self.reload, self.export_button])]),
             self.status, self.exported, self.curves, self.table, self.diagnostics], layout=w.Layout(width="100%"),
        )  # fmt: skip
        self._update_text()

    # -- data ------------------------------------------------------------------------
    def _load(self) -> None:
        """(Re)open the record of the selected part; the selectors offer what it has."""
        if self.part.value != self.rec.part or getattr(self, "effects", None) is not None:
            self.rec = Record.open(self.rec.params, self.part.value, self._save_dir)
        self.effects = self.rec.effects() if self.rec.analysis.declared else self.rec.legacy_effects()
        settings = sorted({(r.algo, r.dataset, r.k) for r in self.rec.drawn})
        self._busy = True  # options change: one refresh at the end, not one per selector
        try:
            old = self.setting.value
            self.setting.options = [(f"{a.upper()} {d.split('-')[0]} k={k:g}", (a, d, k)) for a, d, k in settings]
            if settings:
                self.setting.value = old if old in settings else settings[0]
            arms = [a for a in self.rec.arms if any(r.arm == a for r in self.rec.drawn)]
            self.arms.options = arms
            self.arms.value = tuple(a for a in self.arms.value if a in arms) or tuple(arms)
            comparisons = list(self.rec.comparisons)
            self.comparison.options = comparisons
            if comparisons and self.comparison.value not in comparisons:
                self.comparison.value = comparisons[0]
            self._set_seeds()
        finally:
            self._busy = False

    def _set_seeds(self) -> None:
        options = seed_options(self._setting_runs(seeds=False))
        if list(self.seeds.options) == options:  # the same seeds: the user's choice stays
            return
        self.seeds.options = options
        self.seeds.value = tuple(v for _, v in options)  # another setting's seeds: all of them

    def _setting_runs(self, seeds: bool = True) -> list:
        if not self.setting.value:
            return []
        algo, dataset, k = self.setting.value
        out = [r for r in self.rec.drawn if (r.algo, r.dataset, r.k) == (algo, dataset, k) and r.arm in self.arms.value]
        return [r for r in out if (stratum_of(r), r.seed) in self.seeds.value] if seeds else out

    # -- views -----------------------------------------------------------------------
    def _curves_spec(self):
        arms = [a for a in self.rec.arms if a in self.arms.value]
        fig = catalog.study_curves(self._setting_runs(), arms, "study_view", self.per_seed.value,
                                   METRICS[self.metric.value])  # fmt: skip
        return fig

    def _curves(self):
        return to_plotly.render(self._curves_spec())

    def _diagnostics(self):
        from hrl_core.lab.study import DIAGNOSTICS

        arms = [a for a in self.rec.arms if a in self.arms.value]
        return to_plotly.render(catalog.study_diagnostics(self._setting_runs(), arms, DIAGNOSTICS))

    def _comparison(self) -> list[dict]:
        if not self.setting.value or not self.comparison.value:
            return []
        return comparison_rows(self.rec, self.effects, self.comparison.value, self.setting.value)

    def _update_text(self) -> None:
        own = {c.run_name for c in self.rec.cells}
        done = sum(r.status == "complete" and r.run_name in own for r in self.rec.runs)
        analysis = ("declared analysis (Holm over its family, calibrated intervals)" if self.rec.analysis.declared
                    else "no declared analysis: Welch, uncorrected, descriptive (a family-corrected reading of the "
                    "long study: docs/results.md)")  # fmt: skip
        self.status.value = (f"{done} of {len(self.rec.cells)} cells complete · {analysis} · "
                             + checkout_text(self.rec))  # fmt: skip
        note = "<p><i>The comparison uses every seed of the setting; the seed selector changes the curves.</i></p>"
        self.table.value = comparison_html(self._comparison(), self.comparison.value or "") + note

    def export_view(self) -> list[Path]:
        algo, dataset, k = self.setting.value
        stem = f"{self.rec.name}_{algo}_{dataset.split('-')[0]}_k{k:g}"
        rows = [{"comparison": self.comparison.value, **r} for r in self._comparison()]
        return self.export(self._curves_spec(), rows, stem)

    def refresh(self, reload: bool = False) -> None:
        if self._busy:
            return
        if reload:
            self._load()
        else:
            self._busy = True
            try:
                self._set_seeds()
            finally:
                self._busy = False
        _replace(self.curves, self._curves())
        _replace(self.diagnostics, self._diagnostics())
        self._update_text()
