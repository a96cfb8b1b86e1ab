"""Notebook 02's companion, part 2: capturing attention from the course GPT and SmolLM2, reading
heads (pattern scores, ranking heads for one query/key pair) and the heatmaps and explorer widget.
Imported through :mod:`course_utils.lessons.attention`."""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..model import GPT
from ..plots import error_html, heatmap, replace_figure, show_token


# ---------------------------------------------------------------------------
# Capturing attention
# ---------------------------------------------------------------------------
@dataclass
class Attention:
    tokens: list[str]            # one string per position
    weights: torch.Tensor        # (layers, heads, T, T)
    text: str = ""

    @property
    def n_layer(self) -> int:
        return self.weights.shape[0]

    @property
    def n_head(self) -> int:
        return self.weights.shape[1]

    def head(self, layer: int, head: int) -> np.ndarray:
        _check_index("layer", layer, self.n_layer)
        _check_index("head", head, self.n_head)
        return self.weights[layer, head].numpy()


def _check_index(name: str, value, n: int) -> None:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value < n:
        raise ValueError(f"{name} must be an integer in 0..{n - 1}, got {value!r}")


def _check_text(text) -> None:
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    if not text:
        raise ValueError("text is empty: type at least one character")


@torch.no_grad()
def char_attention(model: GPT, tokenizer, text: str) -> Attention:
    """Attention weights of every layer and head of the course GPT for ``text`` (one token per char)."""
    _check_text(text)
    block = model.config.block_size
    if len(text) > block:
        raise ValueError(f"text has {len(text)} characters; this model's context is 1..{block} characters")
    ids = tokenizer.encode(text)           # raises ValueError naming unknown characters
    was_training = model.training
    model.eval()
    out = model(torch.tensor([ids]), return_attn=True)
    model.train(was_training)
    return Attention(list(text), torch.stack([w[0] for w in out.attentions]).float(), text)


@torch.no_grad()
def hf_attention(model, tokenizer, text: str, max_tokens: int = 256) -> Attention:
    """Attention weights of a Hugging Face causal LM (load it with eager attention)."""
    _check_text(text)
    ids = tokenizer(text, return_tensors="pt").input_ids
    if ids.shape[1] > max_tokens:
        raise ValueError(f"text is {ids.shape[1]} tokens long; allowed 1..{max_tokens} tokens")
    out = model(input_ids=ids, output_attentions=True)
    if not out.attentions or out.attentions[0] is None:
        raise RuntimeError("the model returned no attention weights: load it with attn_implementation='eager'")
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    return Attention(tokens, torch.stack([a[0] for a in out.attentions]).float(), text)


# ---------------------------------------------------------------------------
# Reading heads
# ---------------------------------------------------------------------------
def word_groups(text: str) -> tuple[list[list[int]], list[str]]:
    """Split character positions into words; a word takes the whitespace before it (like GPT-2's BPE)."""
    _check_text(text)
    groups, labels = [], []
    for m in re.finditer(r"\s*\S+|\s+", text):
        groups.append(list(range(m.start(), m.end())))
        labels.append(m.group())
    return groups, labels


def aggregate(weights, groups: Sequence[Sequence[int]]) -> np.ndarray:
    """Word-level attention from character-level (T, T) weights.

    Key side: *sum* the weight over the characters of a word (how much goes to that word).
    Query side: *average* over the characters of a word. Rows still sum to 1.
    """
    w = np.asarray(weights, dtype=float)
    T = w.shape[-1]
    flat = sorted(i for g in groups for i in g)
    if flat != list(range(T)):
        raise ValueError(f"groups must cover every position 0..{T - 1} exactly once")
    keys = np.stack([w[..., g].sum(-1) for g in groups], axis=-1)
    return np.stack([keys[..., g, :].mean(-2) for g in groups], axis=-2)


PATTERNS = ("previous character", "same character", "first character", "whitespace", "newline")


def pattern_scores(att: Attention) -> dict[str, np.ndarray]:
    """For every head, the average weight a query puts on one kind of key: (layers, heads) arrays.

    previous character: key i-1; same character: key i; first character: key 0;
    whitespace: any space or newline; newline: any newline. Queries at position 0 are skipped.
    """
    w = att.weights.numpy()
    T = w.shape[-1]
    if T < 2:
        raise ValueError("need at least 2 tokens to score heads")
    rows = np.arange(1, T)
    space = np.array([t.isspace() for t in att.tokens])
    newline = np.array(["\n" in t for t in att.tokens])
    return {"previous character": w[:, :, rows, rows - 1].mean(-1),
            "same character": w[:, :, rows, rows].mean(-1),
            "first character": w[:, :, rows, 0].mean(-1),
            "whitespace": w[:, :, 1:, :][..., space].sum(-1).mean(-1),
            "newline": w[:, :, 1:, :][..., newline].sum(-1).mean(-1)}


def uniform_baseline(att: Attention) -> dict[str, float]:
    """The pattern scores a head would get by spreading its weight evenly over the past: the yardstick."""
    T = len(att.tokens)
    w = torch.tril(torch.ones(T, T))
    w = (w / w.sum(-1, keepdim=True))[None, None]
    return {k: float(v[0, 0]) for k, v in pattern_scores(Attention(att.tokens, w)).items()}


def best_heads(scores: dict[str, np.ndarray]) -> list[dict]:
    """For each pattern the head with the highest score: [{pattern, layer, head, score}]."""
    out = []
    for name, s in scores.items():
        layer, head = np.unravel_index(int(np.argmax(s)), s.shape)
        out.append({"pattern": name, "layer": int(layer), "head": int(head), "score": float(s[layer, head])})
    return out


def find_token(tokens: Sequence[str], word: str) -> int:
    """Index of the first token that is ``word`` (ignoring surrounding whitespace)."""
    for i, t in enumerate(tokens):
        if t.strip() == word:
            return i
    raise ValueError(f"no token {word!r} in {[t.strip() for t in tokens]}")


def rank_heads(att: Attention, query: int, key: int, top: int | None = None) -> list[tuple[int, int, float]]:
    """Heads sorted by the weight that position ``query`` puts on position ``key``: [(layer, head, w)]."""
    T = att.weights.shape[-1]
    _check_index("query", query, T)
    _check_index("key", key, T)
    if key > query:
        raise ValueError(f"key {key} comes after query {query}: a causal model cannot look there")
    w = att.weights[:, :, query, key]
    order = torch.argsort(w.flatten(), descending=True, stable=True).tolist()
    ranked = [(i // att.n_head, i % att.n_head, float(w.flatten()[i])) for i in order]
    return ranked if top is None else ranked[:top]


# ---------------------------------------------------------------------------
# Heatmaps
# ---------------------------------------------------------------------------
def _window(T: int, start: int, size: int | None) -> tuple[int, int]:
    size = T if size is None else size
    if not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"window size must be a positive integer, got {size!r}")
    if not isinstance(start, (int, np.integer)) or not 0 <= start < T:
        raise ValueError(f"window start must be in 0..{T - 1}, got {start!r}")
    return int(start), int(min(T, start + size))


def attention_heatmap(weights, tokens: Sequence[str], title: str = "Attention", start: int = 0,
                      size: int | None = None, height: int | None = None) -> go.Figure:
    """One head's (T, T) weights as a heatmap; ``start``/``size`` crop a square window of positions."""
    w = np.asarray(weights, dtype=float)
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.shape[0] != len(tokens):
        raise ValueError(f"weights of shape {w.shape} do not match {len(tokens)} tokens")
    a, b = _window(len(tokens), start, size)
    labels = [f"{show_token(t)}" for t in tokens[a:b]]
    fig = heatmap(w[a:b, a:b], labels, labels, title=title, zmax=1.0, height=height)
    if b - a > 40:   # too many labels to read: show every few, hover still names each token
        step = math.ceil((b - a) / 40)
        ticks = list(range(0, b - a, step))
        fig.update_xaxes(tickvals=ticks, ticktext=[labels[i] for i in ticks])
        fig.update_yaxes(tickvals=ticks, ticktext=[labels[i] for i in ticks])
    return fig


def head_grid(att: Attention, layer: int, title: str | None = None, start: int = 0,
              size: int | None = None, cols: int | None = None) -> go.Figure:
    """Small multiples: every head of one layer, same colour scale, hover shows query/key/weight."""
    from plotly.subplots import make_subplots

    _check_index("layer", layer, att.n_layer)
    a, b = _window(len(att.tokens), start, size)
    H = att.n_head
    cols = cols or min(H, 3 if H % 3 == 0 else 4)
    rows = math.ceil(H / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"head {h}" for h in range(H)],
                        horizontal_spacing=0.03, vertical_spacing=0.06)
    labels = [show_token(t) for t in att.tokens[a:b]]
    custom = [[[labels[i], labels[j]] for j in range(b - a)] for i in range(b - a)]
    for h in range(H):
        fig.add_trace(go.Heatmap(z=att.weights[layer, h, a:b, a:b].numpy(), zmin=0, zmax=1, colorscale="Blues",
                                 customdata=custom, showscale=h == 0,
                                 hovertemplate=f"head {h}<br>query: %{{customdata[0]}}<br>key: %{{customdata[1]}}"
                                               "<br>weight: %{z:.3f}<extra></extra>"),
                      row=h // cols + 1, col=h % cols + 1)
    fig.update_yaxes(autorange="reversed", showticklabels=False)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(title=title or f"All {H} heads of layer {layer}", height=280 * rows + 80,
                      margin=dict(l=20, r=20, t=70, b=20))
    return fig


def layer_grid_widget(att: Attention, layer: int = 0, name: str = "SmolLM2"):
    """A layer slider over :func:`head_grid`: every head of the chosen layer side by side."""
    import ipywidgets as widgets

    _check_index("layer", layer, att.n_layer)
    pick = widgets.IntSlider(value=layer, min=0, max=att.n_layer - 1, description="layer")
    title = lambda l: f"{name}: all {att.n_head} heads of layer {l}"
    fig = go.FigureWidget(head_grid(att, layer, title=title(layer)))
    pick.observe(lambda change: replace_figure(fig, head_grid(att, change["new"], title=title(change["new"]))),
                 "value")
    return widgets.VBox([pick, fig])


class AttentionExplorer:
    """Text box + layer/head selectors + word view + cropping window over the course GPT's heatmaps.

    Bad text (empty, too long, unknown characters) shows the error message and keeps the last plot.
    """

    TITLE = "Attention explorer"

    def __init__(self, model: GPT, tokenizer, text: str, layer: int = 0, head: int = 0, window: int = 64):
        import ipywidgets as widgets

        self.model, self.tokenizer = model, tokenizer
        cfg = model.config
        self.att = char_attention(model, tokenizer, text)
        self.text = widgets.Textarea(value=text, description="text", layout=widgets.Layout(width="95%", height="70px"),
                                     continuous_update=False)
        self.layer = widgets.IntSlider(value=layer, min=0, max=cfg.n_layer - 1, description="layer")
        self.head = widgets.IntSlider(value=head, min=0, max=cfg.n_head - 1, description="head")
        self.words = widgets.Checkbox(value=False, description="word view (sum over characters)")
        self.size = widgets.IntSlider(value=min(window, len(text)), min=8, max=cfg.block_size, step=8,
                                      description="window")
        self.start = widgets.IntSlider(value=0, min=0, max=max(0, len(text) - 1), description="start")
        self.message = widgets.HTML()
        self.figure = go.FigureWidget(self._figure())
        for w in (self.layer, self.head, self.words, self.size, self.start):
            w.observe(self._redraw, "value")
        self.text.observe(self._new_text, "value")
        self.widget = widgets.VBox([self.text, widgets.HBox([self.layer, self.head, self.words]),
                                    widgets.HBox([self.start, self.size]), self.message, self.figure])

    def _figure(self) -> go.Figure:
        w = self.att.head(self.layer.value, self.head.value)
        tokens = self.att.tokens
        if self.words.value:
            groups, tokens = word_groups(self.att.text)
            w = aggregate(w, groups)
        start = min(self.start.value, len(tokens) - 1)
        fig = attention_heatmap(w, tokens, start=start, size=self.size.value, height=560,
                                title=f"{self.TITLE}: layer {self.layer.value}, head {self.head.value}")
        return fig

    def _redraw(self, *_):
        replace_figure(self.figure, self._figure())

    def _new_text(self, change):
        try:
            self.att = char_attention(self.model, self.tokenizer, change["new"])
        except ValueError as exc:
            self.message.value = error_html(f"{exc} (showing the last valid text)")
            return
        self.message.value = ""
        self.start.max = max(0, len(self.att.tokens) - 1)
        self._redraw()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


def pattern_figure(scores: dict[str, np.ndarray], pattern: str) -> go.Figure:
    """One pattern's score for every (layer, head) as a heatmap."""
    if pattern not in scores:
        raise ValueError(f"unknown pattern {pattern!r}; choose one of {', '.join(scores)}")
    s = scores[pattern]
    return heatmap(s, [f"head {h}" for h in range(s.shape[1])], [f"layer {l}" for l in range(s.shape[0])],
                   title=f"Head scores: {pattern}", x_title="head", y_title="layer", zmax=1.0,
                   hover_value="mean weight", height=360, token_labels=False)


def pattern_widget(scores: dict[str, np.ndarray]):
    """A dropdown over the patterns and the matching (layer x head) score heatmap."""
    import ipywidgets as widgets

    choice = widgets.Dropdown(options=list(scores), description="pattern")
    fig = go.FigureWidget(pattern_figure(scores, choice.value))

    def redraw(_):
        new = pattern_figure(scores, choice.value)
        with fig.batch_update():
            fig.data[0].z = new.data[0].z
            fig.layout.title.text = new.layout.title.text
    choice.observe(redraw, "value")
    return widgets.VBox([choice, fig])
