"""A figure as plain data: what to draw, not how. The renderers (``static``, ``web``) turn a
:class:`Figure` into matplotlib or plotly; a figure's definition lives in ``catalog``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Dash = Literal["solid", "dash", "dot"]
Marker = Literal["circle", "x", "circle-open"]


@dataclass
class Series:
    """One line (optionally with a shaded band) or one set of markers."""

    label: str  # legend text ("" : not in the legend)
    x: list  # numbers, or category names on a categorical axis
    y: list  # numbers (nan: no point); for intervals: the categories, one per estimate in x
    colour: str
    kind: Literal["line", "markers", "intervals"] = "line"  # intervals: estimate x, [low, high] in band
    dash: Dash = "solid"
    band: tuple[list, list] | None = None  # (lower, upper) shaded around a line; an interval's ends
    markers: list[Marker] | None = None  # per point (markers only); None: circles
    text: list[str] | None = None  # per point, shown on hover (web) only
    group: str = ""  # series with the same group share one legend entry
    width: float = 1.6  # line width
    opacity: float = 1.0  # < 1: a thin per-seed line behind its arm's mean
    colours: list[str] | None = None  # per point (intervals): e.g. the verdict's colour


@dataclass
class HLine:
    y: float
    colour: str = "grey"
    dash: Dash = "dot"
    label: str = ""  # written at the line's right end
    label_below: bool = False  # the label under the line (two close levels' labels would overlap)
    legend: str = ""  # its legend entry ("": none)


@dataclass
class Panel:
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    series: list[Series] = field(default_factory=list)
    hlines: list[HLine] = field(default_factory=list)
    yscale: Literal["linear", "log"] = "linear"
    categories: list[str] | None = None  # a categorical x axis in this order (markers are dodged per series)
    ylim: tuple[float, float] | None = None
    rows: list[str] | None = None  # a categorical y axis, top to bottom (a forest plot's effects)
    vlines: list[float] = field(default_factory=list)  # reference lines across (e.g. 0)
    vband: tuple[float, float] | None = None  # a shaded x range (e.g. the equivalence margin)


@dataclass
class Figure:
    name: str  # file stem
    title: str
    panels: list[Panel]
    columns: int = 1
    panel_size: tuple[float, float] = (9.0, 5.0)  # inches per panel (static); scaled for the web
    shared_legend: bool = False  # one legend for the figure (below it) instead of one per panel

    @property
    def rows(self) -> int:
        return -(-len(self.panels) // max(1, self.columns))
