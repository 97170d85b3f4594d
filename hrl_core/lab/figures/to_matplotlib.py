"""Render a :class:`~.spec.Figure` with matplotlib (PNG, SVG): no browser, no display."""

from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np

from hrl_core.lab.figures.spec import Figure, Panel

LINESTYLE = {"solid": "-", "dash": "--", "dot": ":"}
MARKER = {"circle": ("o", True), "x": ("x", True), "circle-open": ("o", False)}


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no browser
    import matplotlib.pyplot as plt

    return plt


def _spread(cats: list, ys: list, width: float) -> np.ndarray:
    """Horizontal offsets that set apart points of one series at the same category and value
    (e.g. several seeds "not reached"), within the series' slot."""
    out = np.zeros(len(cats))
    seen: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(cats, ys, strict=True)):
        seen.setdefault(key, []).append(i)
    for idx in seen.values():
        if len(idx) > 1:
            out[idx] = np.linspace(-0.3, 0.3, len(idx)) * width
    return out


def _draw_panel(ax, panel: Panel) -> None:
    cats = panel.categories
    n_marker_series = sum(s.kind == "markers" for s in panel.series) or 1
    width = 0.8 / n_marker_series
    m = 0
    for s in panel.series:
        label = s.label or None
        if s.kind == "intervals":  # a forest plot: rows top to bottom, estimate and interval per row
            y = np.asarray([panel.rows.index(v) for v in s.y], float)
            est = np.asarray(s.x, float)
            lo, hi = np.asarray(s.band[0], float), np.asarray(s.band[1], float)
            colours = s.colours or [s.colour] * len(est)
            for i in range(len(est)):
                ax.errorbar(est[i], y[i], xerr=[[est[i] - lo[i]], [hi[i] - est[i]]], fmt="o", color=colours[i],
                            capsize=3, markersize=5, linewidth=1.4)  # fmt: skip
            continue
        if s.kind == "line":
            x = np.asarray([cats.index(v) for v in s.x] if cats else s.x, float)
            y = np.asarray(s.y, float)
            ax.plot(x, y, LINESTYLE[s.dash], color=s.colour, label=label, linewidth=s.width, alpha=s.opacity)
            if s.band is not None:
                ax.fill_between(x, np.asarray(s.band[0], float), np.asarray(s.band[1], float), color=s.colour,
                                alpha=0.15, linewidth=0)  # fmt: skip
            continue
        offset = -0.4 + width * (m + 0.5) if cats else 0.0
        m += 1
        x = np.asarray([cats.index(v) for v in s.x] if cats else s.x, float) + offset
        if cats:
            x = x + _spread(list(s.x), list(s.y), width)
        kinds = s.markers or ["circle"] * len(s.x)
        for kind in dict.fromkeys(kinds):
            idx = [i for i, k in enumerate(kinds) if k == kind]
            marker, filled = MARKER[kind]
            style = {"color": s.colour} if filled else {"facecolors": "none", "edgecolors": s.colour}
            ax.scatter(x[idx], np.asarray(s.y, float)[idx], marker=marker, zorder=3, **style)
        if label:  # one filled legend entry per series, whatever its markers
            ax.scatter([], [], marker="o", color=s.colour, label=label)
    for legend, colour in _legend_entries(panel):
        ax.plot([], [], color=colour, label=legend)
    if panel.vband is not None:
        ax.axvspan(*panel.vband, color="#999999", alpha=0.12, linewidth=0)
    for v in panel.vlines:
        ax.axvline(v, color="#555555", linewidth=0.8)
    for h in panel.hlines:
        ax.axhline(h.y, color=h.colour, linestyle=LINESTYLE[h.dash], linewidth=1, label=h.legend or None)
        if h.label:  # at the right end, inside the axes
            ax.text(0.995, h.y, h.label, va="top" if h.label_below else "bottom", ha="right", fontsize=7,
                    color=h.colour, transform=ax.get_yaxis_transform())  # fmt: skip
    if cats:
        ax.set_xticks(range(len(cats)), cats)
    ax.set_yscale(panel.yscale)
    if panel.ylim:
        ax.set_ylim(*panel.ylim)
    if panel.rows:  # after the scale: setting a scale resets the ticks
        ax.set_yticks(range(len(panel.rows)), panel.rows, fontsize=7)
        ax.set_ylim(len(panel.rows) - 0.5, -0.5)  # first row on top
    ax.set_title(panel.title, fontsize=9)
    ax.set_xlabel(panel.xlabel, fontsize=8)
    ax.set_ylabel(panel.ylabel, fontsize=8)
    ax.grid(alpha=0.3)


def _legend_entries(panel: Panel) -> list[tuple[str, str]]:
    """Legend-only entries of an interval series' colours (e.g. verdict -> colour), in order."""
    out = {}
    for s in panel.series:
        if s.kind == "intervals" and s.text and s.colours:
            for name, colour in zip(s.text, s.colours, strict=True):
                out.setdefault(name, colour)
    return list(out.items())


def render(fig: Figure):
    """A matplotlib figure for ``fig``."""
    plt = _plt()
    rows, cols = fig.rows, max(1, min(fig.columns, len(fig.panels)))
    w, h = fig.panel_size
    out, axes = plt.subplots(rows, cols, figsize=(w * cols, h * rows), squeeze=False)
    for ax, panel in zip(axes.flat, fig.panels, strict=False):
        _draw_panel(ax, panel)
        if not fig.shared_legend and ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8, ncol=2 if len(ax.get_legend_handles_labels()[0]) > 6 else 1)
    for ax in list(axes.flat)[len(fig.panels) :]:
        ax.axis("off")
    if fig.shared_legend:
        handles, labels = [], []
        for ax in axes.flat:
            for hd, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(hd)
                    labels.append(lab)
        out.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6) or 1, frameon=False, fontsize=8)
    out.suptitle(fig.title, fontsize=10)
    bottom = (
        0.04 + 0.03 * math.ceil(len({s.label for p in fig.panels for s in p.series}) / 6) if fig.shared_legend else 0
    )
    out.tight_layout(rect=(0, bottom, 1, 0.97))
    return out


def save(fig: Figure, out_dir: str | Path, formats=("png", "svg"), dpi: int = 300) -> list[Path]:
    """Write ``<name>.png`` / ``.svg``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    drawn = render(fig)
    paths = []
    for ext in formats:
        path = out_dir / f"{fig.name}.{ext}"
        # A figure re-drawn from the same runs writes the same bytes: SVG element ids from a
        # fixed salt and no date (else every re-draw of a record is a diff of random ids).
        with _plt().rc_context({"svg.hashsalt": fig.name}):
            drawn.savefig(path, dpi=dpi, bbox_inches="tight", metadata={"Date": None} if ext == "svg" else None)
        paths.append(path)
    _plt().close(drawn)
    return paths


def png_bytes(fig: Figure, dpi: int = 80) -> bytes:
    """The figure as PNG bytes (to show inline in a notebook)."""
    drawn = render(fig)
    buf = io.BytesIO()
    drawn.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(drawn)
    return buf.getvalue()
