"""Figures: each defined once (:mod:`.catalog`: its series, labels and styles, as plain
data, :mod:`.spec`) and drawn by two thin renderers, :mod:`.static` (matplotlib: PNG and
SVG, no browser) and :mod:`.web` (plotly: interactive HTML and the notebook widgets)."""
