"""Render a :class:`~.spec.Figure` with plotly (interactive HTML, notebook FigureWidgets)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hrl_core.lab.figures.spec import Figure, Panel

SYMBOL = {"circle": "circle", "x": "x-open", "circle-open": "circle-open"}
# What the figures' toolbar offers: no "send to cloud" (it uploads the data to a web service), no logo;
# the download button saves a PNG at the figure's size.
CONFIG = {"displaylogo": False, "showSendToCloud": False, "responsive": True,
          "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio"],
          "toImageButtonOptions": {"format": "png", "scale": 2}}  # fmt: skip


def _rgba(colour: str, alpha: float) -> str:
    rgb = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba{rgb + (alpha,)}"


def render(fig: Figure):
    """A plotly ``go.Figure`` for ``fig``."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if not fig.panels:  # nothing selected: an empty figure that says so
        fig.panels = [Panel("nothing to draw for this selection")]
    rows, cols = fig.rows, max(1, min(fig.columns, len(fig.panels)))
    if len(fig.panels) > 1 or fig.panels[0].title:  # a lone panel's title is a subplot title too
        # spacing that leaves room for each panel's title and axis labels (they overlapped at plotly's default)
        out = make_subplots(rows=rows, cols=cols, subplot_titles=[p.title for p in fig.panels],
                            vertical_spacing=min(0.3 / max(rows - 1, 1), 0.12) if rows > 1 else 0.1,
                            horizontal_spacing=0.07)  # fmt: skip
    else:
        out = go.Figure()
    seen = set()
    for i, panel in enumerate(fig.panels):
        where = {"row": i // cols + 1, "col": i % cols + 1} if len(fig.panels) > 1 or fig.panels[0].title else {}
        for s in panel.series:
            group = s.group or s.label
            show = bool(s.label) and group not in seen
            if show:  # an unlabelled member of a group (a seed's thin line) leaves the entry to its labelled one
                seen.add(group)
            if s.kind == "intervals":
                est = np.asarray(s.x, float)
                lo, hi = np.asarray(s.band[0], float), np.asarray(s.band[1], float)
                colours = s.colours or [s.colour] * len(est)
                out.add_trace(go.Scatter(x=est, y=list(s.y), mode="markers", showlegend=False, text=s.text,
                                         marker={"color": colours, "size": 9},
                                         error_x={"type": "data", "symmetric": False, "array": hi - est,
                                                  "arrayminus": est - lo, "color": "#555555"}), **where)  # fmt: skip
                for name, colour in dict(zip(s.text or [], colours, strict=False)).items():
                    if name not in seen:
                        seen.add(name)
                        out.add_trace(go.Scatter(x=[None], y=[None], mode="markers", name=name,
                                                 marker={"color": colour, "size": 9}), **where)  # fmt: skip
                continue
            if s.kind == "line":
                x = np.asarray(s.x)
                if s.band is not None:
                    lo, hi = np.asarray(s.band[0], float), np.asarray(s.band[1], float)
                    out.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]),
                                             fill="toself", fillcolor=_rgba(s.colour, 0.15), line={"width": 0},
                                             mode="lines", hoverinfo="skip", showlegend=False, legendgroup=group),
                                  **where)  # fmt: skip
                out.add_trace(go.Scatter(x=x, y=np.asarray(s.y, float), name=s.label, mode="lines", showlegend=show,
                                         line={"color": s.colour, "dash": s.dash, "width": s.width},
                                         opacity=s.opacity, legendgroup=group,
                                         hoverinfo="skip" if s.opacity < 1 else None), **where)  # fmt: skip
            else:
                symbols = [SYMBOL[m] for m in (s.markers or ["circle"] * len(s.x))]
                out.add_trace(go.Scatter(x=list(s.x), y=list(s.y), name=s.label, mode="markers", text=s.text,
                                         marker={"symbol": symbols, "size": 10, "color": s.colour}, showlegend=show,
                                         legendgroup=group, offsetgroup=s.label or None),
                              **where)  # fmt: skip
        for h in panel.hlines:
            kw = {"annotation_text": h.label} if h.label else {}
            if h.label and h.label_below:
                kw["annotation_position"] = "bottom right"
            out.add_hline(y=h.y, line={"color": h.colour, "dash": h.dash, "width": 1}, **kw, **where)
            if h.legend and h.legend not in seen:  # a line drawn across has no legend entry of its own
                seen.add(h.legend)
                out.add_trace(go.Scatter(x=[None], y=[None], mode="lines", name=h.legend,
                                         line={"color": h.colour, "dash": h.dash, "width": 1}), **where)  # fmt: skip
        if panel.vband is not None:
            out.add_vrect(x0=panel.vband[0], x1=panel.vband[1], fillcolor="#999999", opacity=0.12, line_width=0,
                          **where)  # fmt: skip
        for v in panel.vlines:
            out.add_vline(x=v, line={"color": "#555555", "width": 1}, **where)
        axis = {"row": where["row"], "col": where["col"]} if where else {}
        out.update_xaxes(title_text=panel.xlabel, **axis)
        out.update_yaxes(title_text=panel.ylabel, type=panel.yscale, **axis)
        if panel.categories:
            out.update_xaxes(categoryorder="array", categoryarray=panel.categories, **axis)
        if panel.rows:
            out.update_yaxes(categoryorder="array", categoryarray=list(reversed(panel.rows)), **axis)
        if panel.ylim:
            out.update_yaxes(range=list(panel.ylim), **axis)
    # Fill the width it is given (no fixed pixel size), a title that wraps instead of being cut, the
    # legend below the plot (never a scrolling box over it), hover labels with their whole name.
    height = max(320, int(90 * fig.panel_size[1] * rows)) + 110
    layout = {"title": {"text": _wrap(fig.title), "font": {"size": 13}, "x": 0.01, "xanchor": "left"},
              "template": "plotly_white", "autosize": True, "height": height,
              "margin": {"l": 60, "r": 20, "t": 70, "b": 40},
              "legend": {"orientation": "h", "yanchor": "top", "y": -0.12 if rows == 1 else -0.06, "x": 0},
              "hoverlabel": {"namelength": -1}}  # fmt: skip
    if any(p.categories for p in fig.panels):
        layout["scattermode"] = "group"
    if any(p.rows for p in fig.panels):  # a forest plot's labels are long
        layout["margin"]["l"] = 260
    out.update_layout(**layout)
    out.update_annotations(font_size=11)  # subplot titles
    return out


def _wrap(title: str, width: int = 110) -> str:
    """A long title broken at word boundaries (plotly draws a title on one line, cut at the edge)."""
    words, lines, line = title.split(), [], ""
    for w in words:
        if line and len(line) + len(w) + 1 > width:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return "<br>".join([*lines, line])


def export_html(fig: Figure, out_dir: str | Path) -> Path:
    """Interactive HTML that opens offline: plotly.js is written once per folder
    (``plotly.min.js``, ~4.7 MB) and referenced by every figure there, instead of being
    embedded in each (a dozen figures would otherwise be ~60 MB)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{fig.name}.html"
    render(fig).write_html(path, include_plotlyjs="directory", full_html=True, config=CONFIG)
    return path
