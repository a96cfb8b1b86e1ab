"""Plotly figure builders shared by the notebooks (no plotting code lives in notebooks).

Figures render offline: plotly.js ships inside the plotly package's JupyterLab extension.
"""
from __future__ import annotations

import html
import math
from typing import Mapping, Sequence

import plotly.graph_objects as go

COLORS = {"train": "#1f77b4", "val": "#d62728", "kept": "#2ca02c", "removed": "#c7c7c7"}
# One palette for series and groups (Tableau 10), in order.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f",
           "#ff9da7", "#bab0ac")
ERROR_COLOR = "#cf222e"


def error_html(message: str) -> str:
    """A widget's message for bad input: red, escaped, never a traceback."""
    return f"<span style='color:{ERROR_COLOR}'>&#10008; {html.escape(str(message), quote=False)}</span>"


def heatmap(matrix, x_labels: Sequence[str], y_labels: Sequence[str], title: str = "",
            x_title: str = "key (attended to)", y_title: str = "query (attending)",
            zmin: float | None = 0.0, zmax: float | None = None, colorscale: str = "Blues",
            hover_value: str = "weight", height: int | None = None, token_labels: bool = True) -> go.Figure:
    """A labelled heatmap whose hover shows row label, column label and value.

    Labels may repeat (the same character twice), so cells are placed by index and the
    axes show the labels as tick text. ``token_labels=True`` treats labels as tokens and makes
    their whitespace visible (:func:`show_token`); pass False for plain axis labels ("layer 0").
    """
    import numpy as np

    z = np.asarray(matrix, dtype=float)
    if z.ndim != 2 or z.shape != (len(y_labels), len(x_labels)):
        raise ValueError(f"matrix shape {z.shape} does not match {len(y_labels)} row and "
                         f"{len(x_labels)} column labels")
    if not np.isfinite(z[~np.isneginf(z)]).all():
        raise ValueError("heatmap values contain NaN or +inf")
    shown = show_token if token_labels else str
    xs, ys = [shown(t) for t in x_labels], [shown(t) for t in y_labels]
    custom = [[[ys[i], xs[j]] for j in range(len(xs))] for i in range(len(ys))]
    fig = go.Figure(go.Heatmap(
        z=z, x=list(range(len(xs))), y=list(range(len(ys))), customdata=custom, zmin=zmin, zmax=zmax,
        colorscale=colorscale,
        hovertemplate=f"{y_title}: %{{customdata[0]}}<br>{x_title}: %{{customdata[1]}}"
                      f"<br>{hover_value}: %{{z:.3f}}<extra></extra>"))
    fig.update_layout(title=title, height=height or max(300, min(900, 120 + 14 * len(ys))),
                      margin=dict(l=60, r=20, t=50, b=60))
    fig.update_xaxes(title=x_title, tickmode="array", tickvals=list(range(len(xs))), ticktext=xs, tickangle=0)
    fig.update_yaxes(title=y_title, tickmode="array", tickvals=list(range(len(ys))), ticktext=ys,
                     autorange="reversed")
    return fig


def show_token(token: str) -> str:
    """Make whitespace visible in axis labels: ' ' -> '␣', '\\n' -> '⏎'."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def replace_figure(widget: go.FigureWidget, fig: go.Figure) -> None:
    """Redraw a live ``FigureWidget`` in place with the traces and layout of a freshly built figure."""
    with widget.batch_update():
        for i, trace in enumerate(fig.data):
            if i < len(widget.data):
                widget.data[i].update(trace)
            else:
                widget.add_trace(trace)
        widget.layout.update(fig.layout)


def loss_curve(history: Sequence[dict], title: str = "Loss", x: str = "step",
               log_y: bool = False) -> go.Figure:
    """Train and validation loss from a ``course_utils.train.train`` history."""
    fig = go.Figure()
    for key, name in (("train_loss", "train"), ("val_loss", "validation")):
        fig.add_trace(go.Scatter(x=[r[x] for r in history], y=[r[key] for r in history], mode="lines+markers",
                                 name=name, line=dict(color=COLORS["train" if name == "train" else "val"])))
    fig.update_layout(title=title, xaxis_title=x, yaxis_title="cross-entropy loss (nats per token)",
                      height=380, margin=dict(l=60, r=20, t=50, b=50))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


class LivePlot:
    """Line plot of any recorded keys that updates in place while something trains.

    Pass ``plot.update`` as the ``callback`` of ``course_utils.train.train``: each record (a
    dict) is appended and every series ``key`` found in it is redrawn against ``x``.
    ``series``: ``{record key: legend name}``; keys missing from a record are skipped.
    """

    def __init__(self, series: Mapping[str, str], title: str = "Training live", x: str = "step",
                 y_title: str = "", colors: Mapping[str, str] | None = None, log_y: bool = False,
                 y_range: Sequence[float] | None = None, y_scale: float = 1.0, x_title: str | None = None,
                 lines: Mapping[str, dict] | None = None):
        self.series, self.x, self.y_scale, self.history = dict(series), x, y_scale, []
        colors, lines = colors or {}, lines or {}
        fig = go.Figure()
        for i, (key, name) in enumerate(self.series.items()):
            line = {"color": colors.get(key, PALETTE[i % len(PALETTE)]), **lines.get(key, {})}
            fig.add_trace(go.Scatter(x=[], y=[], mode="lines+markers", name=name, line=line))
        fig.update_layout(title=title, xaxis_title=x_title or x, yaxis_title=y_title, height=380,
                          margin=dict(l=60, r=20, t=50, b=50))
        if log_y:
            fig.update_yaxes(type="log")
        if y_range is not None:
            fig.update_yaxes(range=list(y_range))
        self.widget = go.FigureWidget(fig)

    def update(self, record: dict) -> None:
        self.history.append(record)
        with self.widget.batch_update():
            for trace, key in zip(self.widget.data, self.series):
                rows = [r for r in self.history if key in r]
                trace.x = [r[self.x] for r in rows]
                trace.y = [self.y_scale * r[key] for r in rows]


class LiveLossPlot(LivePlot):
    """The train/validation loss curve, live (a :class:`LivePlot` of ``train_loss`` and ``val_loss``)."""

    def __init__(self, title: str = "Training live", reference: float | None = None,
                 reference_name: str = "ln(vocab): guessing"):
        super().__init__({"train_loss": "train", "val_loss": "validation"}, title=title,
                         y_title="cross-entropy loss (nats per token)",
                         colors={"train_loss": COLORS["train"], "val_loss": COLORS["val"]})
        if reference is not None and math.isfinite(reference):
            self.widget.add_hline(y=reference, line_dash="dot", annotation_text=reference_name)


def grouped_bars(groups: Mapping[str, Mapping[str, float]], title: str = "", y_title: str = "",
                 colors: Mapping[str, str] | None = None, text_format: str | None = None,
                 y_range: Sequence[float] | None = None, log_y: bool = False) -> go.Figure:
    """Bars grouped along x: ``{series name: {x label: value}}`` -> one coloured bar per series."""
    fig = go.Figure()
    for i, (name, values) in enumerate(groups.items()):
        color = (colors or {}).get(name, PALETTE[i % len(PALETTE)])
        fig.add_trace(go.Bar(name=name, x=[str(k) for k in values], y=list(values.values()), marker_color=color,
                             texttemplate=text_format, textposition="outside" if text_format else None))
    fig.update_layout(title=title, yaxis_title=y_title, barmode="group", height=380,
                      margin=dict(l=60, r=20, t=50, b=60))
    if y_range is not None:
        fig.update_yaxes(range=list(y_range))
    if log_y:
        fig.update_yaxes(type="log")
    return fig


def bars(labels: Sequence[str], values: Sequence[float], title: str = "", colors=None,
         y_title: str = "", hover: Sequence[str] | None = None, text_format: str | None = None) -> go.Figure:
    """A simple labelled bar chart."""
    fig = go.Figure(go.Bar(x=[show_token(str(l)) for l in labels], y=list(values), marker_color=colors,
                           hovertext=hover, texttemplate=text_format, textposition="outside" if text_format else None))
    fig.update_layout(title=title, yaxis_title=y_title, height=360, margin=dict(l=60, r=20, t=50, b=60))
    return fig
