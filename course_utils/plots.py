"""Plotly figure builders shared by the notebooks (no plotting code lives in notebooks).

Figures render offline: plotly.js ships inside the plotly package's JupyterLab extension.
"""
from __future__ import annotations

import math
from typing import Sequence

import plotly.graph_objects as go

COLORS = {"train": "#1f77b4", "val": "#d62728", "kept": "#2ca02c", "removed": "#c7c7c7"}


def heatmap(matrix, x_labels: Sequence[str], y_labels: Sequence[str], title: str = "",
            x_title: str = "key (attended to)", y_title: str = "query (attending)",
            zmin: float | None = 0.0, zmax: float | None = None, colorscale: str = "Blues",
            hover_value: str = "weight", height: int | None = None) -> go.Figure:
    """A labelled heatmap whose hover shows row label, column label and value.

    Labels may repeat (the same character twice), so cells are placed by index and the
    axes show the labels as tick text.
    """
    import numpy as np

    z = np.asarray(matrix, dtype=float)
    if z.ndim != 2 or z.shape != (len(y_labels), len(x_labels)):
        raise ValueError(f"matrix shape {z.shape} does not match {len(y_labels)} row and "
                         f"{len(x_labels)} column labels")
    if not np.isfinite(z[~np.isneginf(z)]).all():
        raise ValueError("heatmap values contain NaN or +inf")
    xs, ys = [show_token(t) for t in x_labels], [show_token(t) for t in y_labels]
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


class LiveLossPlot:
    """A loss curve that updates in place while a model trains.

    Pass ``plot.update`` as the ``callback`` of ``course_utils.train.train``; it appends
    each evaluation and redraws. Outside a notebook it does nothing visible.
    """

    def __init__(self, title: str = "Training live", reference: float | None = None,
                 reference_name: str = "ln(vocab): guessing"):
        self.history: list[dict] = []
        self.widget = go.FigureWidget(loss_curve([], title=title))
        if reference is not None and math.isfinite(reference):
            self.widget.add_hline(y=reference, line_dash="dot", annotation_text=reference_name)

    def update(self, record: dict) -> None:
        self.history.append(record)
        with self.widget.batch_update():
            self.widget.data[0].x = [r["step"] for r in self.history]
            self.widget.data[0].y = [r["train_loss"] for r in self.history]
            self.widget.data[1].x = [r["step"] for r in self.history]
            self.widget.data[1].y = [r["val_loss"] for r in self.history]


def bars(labels: Sequence[str], values: Sequence[float], title: str = "", colors=None,
         y_title: str = "", hover: Sequence[str] | None = None, text_format: str | None = None) -> go.Figure:
    """A simple labelled bar chart."""
    fig = go.Figure(go.Bar(x=[show_token(str(l)) for l in labels], y=list(values), marker_color=colors,
                           hovertext=hover, texttemplate=text_format, textposition="outside" if text_format else None))
    fig.update_layout(title=title, yaxis_title=y_title, height=360, margin=dict(l=60, r=20, t=50, b=60))
    return fig
