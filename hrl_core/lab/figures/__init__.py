"""Figures: each defined once (:mod:`.catalog`: its series, labels and styles, as plain
data, :mod:`.spec`) and drawn by two thin renderers, :mod:`.to_matplotlib` (PNG and
SVG, no browser) and :mod:`.to_plotly` (interactive HTML and the notebook widgets)."""
