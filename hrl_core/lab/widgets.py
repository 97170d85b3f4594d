"""The run browser behind ``notebooks/analysis.ipynb``: widgets over a grid file's runs.

ipywidgets (algo, dataset, corruption levels, metric) drive plotly ``FigureWidget``s:
fine-tuning curves, the exploration signal, and the recovery table (dip, steps to regain
step 0 and to the clean level), over the runs of a grid file's cells (runs are named by
their settings, so a results folder may also hold other studies' runs; only the grid's own
are shown; where the results folder lacks a run, the record's committed copy is read).
"Reload" re-reads the runs, so it works while a grid is still running.

Each FigureWidget is built from a finished ``go.Figure`` and, on a change, gets the
new figure's traces and layout in one batch update: layout changes made to a widget
after it is created can be lost on its first render.
"""

from __future__ import annotations

from pathlib import Path

from hrl_core.lab import clean_level, plot, records, summary
from hrl_core.lab.figures import catalog, to_plotly

METRICS = {
    "return": "normalized_return",
    "disagreement": "ensemble_disagreement",
    "critic loss": "critic_loss_avg",
    "bonus": "bonus_mean",
}


def recovery_table_html(rows: list[dict], algo: str, dataset: str, ks) -> str:
    """Per k and method: final return, the dip, steps to regain step 0 and to the clean level."""
    body = []
    for row in rows:
        if row["algo"] != algo or row["dataset"] != dataset or row["k"] not in ks:
            continue
        body.append(
            f"<tr><td>{row['k']:g}</td><td>{row['arm']}</td><td>{row['n_seeds']}</td>"
            f"<td>{row['final_mean']:.1f} ± {summary._f(row['final_sd'])}</td><td>{summary.dip_text(row)}</td>"
            f"<td>{row['regain_text']}</td><td>{row['clean_text']}</td><td>{row['spec80_text']}</td></tr>"
        )
    if not body:
        return "<p>No complete runs for this selection yet.</p>"
    head = ("<tr><th>k</th><th>method</th><th>seeds</th><th>final return</th><th>dip</th>"
            "<th>steps to regain step 0</th><th>steps to clean</th><th>steps to 80%</th></tr>")  # fmt: skip
    return f"<table class='hrl-efficiency'>{head}{''.join(body)}</table>"


class RunBrowser:
    """Widgets + FigureWidgets over a grid file's runs. Display ``RunBrowser(...).widget``."""

    def __init__(self, params: str | Path = "params/grid.yaml", save_dir: str | Path | None = None):
        import ipywidgets as w
        import plotly.graph_objects as go

        from hrl_core.errors import HrlError
        from hrl_core.lab import grids

        spec = grids.load_grid(params)
        if "arms" in spec:
            raise HrlError(f"{params} is a variants study (it has arms): open notebooks/study.ipynb")
        self.cells = grids.expand(spec, overrides={"save_dir": str(save_dir)} if save_dir else None)
        self.save_dir = Path(self.cells[0].config.save_dir) if self.cells else Path(save_dir or ".")
        self._load()
        from hrl_core.rl import agents

        algos = sorted({r.algo for r in self.runs}) or list(agents.names())
        datasets = sorted({r.dataset for r in self.runs}) or ["hopper-medium-v2"]
        ks = sorted({r.k for r in self.runs}) or [0.0, 30.0, 60.0]
        self.algo = w.Dropdown(options=algos, value=algos[0], description="algo")
        self.dataset = w.Dropdown(options=datasets, value=datasets[0], description="dataset")
        self.ks = w.SelectMultiple(options=[(f"k={k:g}", k) for k in ks], value=tuple(ks), description="corruption")
        self.metric = w.Dropdown(options=list(METRICS), value="return", description="metric")
        self.reload = w.Button(description="Reload results", icon="refresh")
        self.status = w.HTML()
        self.table = w.HTML()
        self.curves = go.FigureWidget(self._curves())
        self.signal = go.FigureWidget(self._signal())
        for control in (self.algo, self.dataset, self.ks, self.metric):
            control.observe(lambda _change: self.refresh(), names="value")
        self.reload.on_click(lambda _b: self.refresh(reload=True))
        controls = w.HBox([self.algo, self.dataset, self.metric])
        self.widget = w.VBox(
            [controls, w.HBox([self.ks, self.reload]), self.status, self.curves, self.signal, self.table]
        )
        self._update_text()

    def _load(self) -> None:
        self.runs = records.load_cells(self.cells)
        self.levels = clean_level.clean_levels(self.runs, self.save_dir, evaluate=False)
        self.rows = summary.setting_rows(self.runs, plot.plain_arms(self.runs), self.levels)

    def _curves(self):
        fig = catalog.curves(self.runs, self.algo.value, self.dataset.value, METRICS[self.metric.value],
                             ks=set(self.ks.value))  # fmt: skip
        return to_plotly.render(fig)

    def _signal(self):
        return to_plotly.render(catalog.exploration(self.runs, self.algo.value, self.dataset.value))

    def _update_text(self) -> None:
        done = sum(r.status == "complete" for r in self.runs)
        where = ", ".join(f"<code>{s}</code>" for s in records.sources(self.runs)) or f"<code>{self.save_dir}</code>"
        self.status.value = f"{len(self.runs)} of {len(self.cells)} cells have runs in {where} ({done} complete)"
        self.table.value = recovery_table_html(self.rows, self.algo.value, self.dataset.value, set(self.ks.value))

    @staticmethod
    def _replace(widget, fig) -> None:
        with widget.batch_update():
            widget.data = ()
            widget.add_traces(list(fig.data))
            # Assigning a layout is merged into the page's old one, so shapes (the
            # Phase I level lines) would survive a switch to a metric that has none:
            # clear them explicitly first (a change the page does receive).
            widget.layout.shapes = ()
            widget.layout = fig.layout

    def refresh(self, reload: bool = False) -> None:
        if reload:
            self._load()
        self._replace(self.curves, self._curves())
        self._replace(self.signal, self._signal())
        self._update_text()
