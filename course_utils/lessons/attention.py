"""Companion of notebook 02 (attention), seen from the inside: hand-made attention, attention capture, heatmaps and induction heads.

* Hand-made attention: :func:`toy_attention` (on the core's ``model.attention`` and ``causal_mask``)
  and the slider widget :func:`handmade_widget`.
* Capture: :func:`char_attention` (the course GPT, ``return_attn=True``) and :func:`hf_attention`
  (a Hugging Face model such as SmolLM2, eager attention, ``output_attentions=True``). Both
  return an :class:`Attention` with the token strings and weights of shape (layers, heads, T, T).
* The causal mask, proved: :func:`forward_with_mask_switch` re-runs the course GPT with the mask on
  or off, and :func:`mask_identity` compares the logits of one prefix with two different futures.
* Reading heads: :func:`word_groups` / :func:`aggregate` (character -> word view),
  :func:`pattern_scores` (previous-character, whitespace, newline, first-token heads) and
  :func:`rank_heads` (which heads make one token look at another).
* Heatmaps: :func:`attention_heatmap` (one head, cropping window), :func:`head_grid` (all heads of a
  layer as small multiples) and :class:`AttentionExplorer` (layer/head/text/window widgets).
* Induction heads: :func:`repeat_batch` (random tokens with a repeated segment of random length),
  :func:`train_induction` (attention-only GPT, loss on the repeated vs the random part) and
  :func:`induction_scores`.
* Exercise checkers: :func:`check_attention_fn`, :func:`check_mask_fn`, :func:`check_attention_row`.
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from ..model import GPT, GPTConfig, attention, causal_mask
from ..plots import heatmap, replace_figure, show_token
from ..runtime import seeded
from ..train import TrainConfig, train


# ---------------------------------------------------------------------------
# Hand-made attention
# ---------------------------------------------------------------------------
@dataclass
class ToyAttention:
    scores: np.ndarray    # (T, T) scaled scores, -inf where masked
    weights: np.ndarray   # (T, T) softmax rows
    output: np.ndarray    # (T, d_v) weighted sums of the values


def toy_attention(q, k, v, scale: float = 1.0, causal: bool = False) -> ToyAttention:
    """Attention on a handful of small hand-written vectors (lists or arrays of shape (T, d))."""
    q, k, v = (torch.as_tensor(np.asarray(a, dtype=np.float32)) for a in (q, k, v))
    if not (q.dim() == k.dim() == v.dim() == 2):
        raise ValueError("q, k and v must be 2-D: one row per token")
    if not len(q) == len(k) == len(v):
        raise ValueError(f"q, k and v need one row per token, got {len(q)}, {len(k)} and {len(v)} rows")
    if not (isinstance(scale, (int, float)) and 0 < scale <= 100):
        raise ValueError(f"scale must be in (0, 100], got {scale!r}")
    mask = causal_mask(len(q)) if causal else None
    out, w = attention(q, k, v, mask, return_weights=True, scale=float(scale))
    scores = (q @ k.T) * scale
    if causal:
        scores = scores.masked_fill(~mask, float("-inf"))
    return ToyAttention(scores.numpy(), w.numpy(), out.numpy())


# "The table is red": queries and keys chosen so that words look at the noun they belong with.
TOY_TOKENS = ["The", "table", "is", "red"]
TOY_Q = [[0.0, 1.0], [1.0, 0.5], [1.5, 0.0], [2.0, 0.0]]
TOY_K = [[0.0, 1.5], [2.0, 0.0], [0.5, 0.5], [1.0, -0.5]]
TOY_V = [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]]


def handmade_widget(tokens: Sequence[str] = TOY_TOKENS, q=TOY_Q, k=TOY_K, v=TOY_V):
    """Sliders for one token's query and key, a scale slider (standing for 1/√d), a causal toggle,
    and three live heatmaps: scores, softmax weights, output (weighted sum of the values)."""
    import ipywidgets as widgets

    q, k, v = (np.array(a, dtype=float) for a in (q, k, v))
    if q.shape[1] != 2 or k.shape[1] != 2:
        raise ValueError("the widget drags 2-D queries and keys; got dimensions "
                         f"{q.shape[1]} and {k.shape[1]}")
    tokens = list(tokens)
    dims = [f"v{i}" for i in range(v.shape[1])]

    def figures(res: ToyAttention):
        scores = np.where(np.isinf(res.scores), np.nan, res.scores)
        f1 = heatmap(np.nan_to_num(scores, nan=0.0), tokens, tokens, title="Scores q·k × scale",
                     zmin=None, colorscale="RdBu", hover_value="score", height=330)
        f1.data[0].z = scores   # masked cells are blank
        f2 = heatmap(res.weights, tokens, tokens, title="Attention weights (softmax of each row)",
                     zmax=1.0, height=330)
        f3 = heatmap(res.output, dims, tokens, title="Output = weights × values", x_title="value dimension",
                     zmin=None, colorscale="Greens", hover_value="output", height=330)
        return f1, f2, f3

    figs = [go.FigureWidget(f) for f in figures(toy_attention(q, k, v))]
    for f in figs:
        f.update_layout(width=380, margin=dict(l=60, r=10, t=50, b=50))
    which = widgets.Dropdown(options=[(t, i) for i, t in enumerate(tokens)], value=len(tokens) - 1,
                             description="token")
    sliders = {name: widgets.FloatSlider(min=-3, max=3, step=0.1, description=name, continuous_update=True)
               for name in ("q x", "q y", "k x", "k y")}
    scale = widgets.FloatSlider(value=1.0, min=0.1, max=5.0, step=0.1, description="scale",
                                tooltip="multiplies every score; 1/√d in a real model")
    causal = widgets.ToggleButtons(options=[("bidirectional", False), ("causal (masked)", True)], value=False)
    busy = {"syncing": False}

    def load_sliders(*_):
        busy["syncing"] = True
        i = which.value
        sliders["q x"].value, sliders["q y"].value = q[i]
        sliders["k x"].value, sliders["k y"].value = k[i]
        busy["syncing"] = False

    def redraw(*_):
        if busy["syncing"]:
            return
        i = which.value
        q[i] = [sliders["q x"].value, sliders["q y"].value]
        k[i] = [sliders["k x"].value, sliders["k y"].value]
        new = figures(toy_attention(q, k, v, scale=scale.value, causal=causal.value))
        for fw, f in zip(figs, new):
            with fw.batch_update():
                fw.data[0].z = f.data[0].z
                fw.data[0].zmin, fw.data[0].zmax = f.data[0].zmin, f.data[0].zmax

    which.observe(load_sliders, "value")
    for w in (*sliders.values(), scale, causal):
        w.observe(redraw, "value")
    load_sliders()
    redraw()
    controls = widgets.VBox([widgets.HBox([which, causal]), widgets.HBox([sliders["q x"], sliders["q y"]]),
                             widgets.HBox([sliders["k x"], sliders["k y"]]), scale])
    return widgets.VBox([controls, widgets.HBox(figs)])


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
# The causal mask, proved
# ---------------------------------------------------------------------------
@torch.no_grad()
def forward_with_mask_switch(model: GPT, idx: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """The course GPT's forward pass written out, with the causal mask switchable; returns logits.

    With ``causal=True`` it matches ``model(idx).logits``; with ``causal=False`` every token can
    see the future (which a language model must never do).
    """
    if idx.dim() != 2:
        raise ValueError(f"idx must have shape (batch, time), got {tuple(idx.shape)}")
    B, T = idx.shape
    if T > model.config.block_size:
        raise ValueError(f"{T} tokens; allowed 1..{model.config.block_size}")
    x = model.tok_emb(idx) + model.positions(0, T, idx.device)
    mask = causal_mask(T) if causal else None
    for block in model.blocks:
        attn = block.attn
        C = x.size(-1)
        q, k, v = attn.qkv(block.ln1(x)).split(C, dim=2)
        q, k, v = (t.view(B, T, attn.n_head, C // attn.n_head).transpose(1, 2) for t in (q, k, v))
        y, _ = attention(q, k, v, mask)
        x = x + attn.proj(y.transpose(1, 2).reshape(B, T, C))
        if block.mlp is not None:
            x = x + block.mlp(block.ln2(x))
    return model.head(model.ln_f(x))


@dataclass
class MaskCheck:
    prefix_len: int
    max_diff_model: float        # the course GPT (causal): prefix logits, future A vs future B
    max_diff_unmasked: float     # the same weights with the mask removed


@torch.no_grad()
def mask_identity(model: GPT, tokenizer, prefix: str, future_a: str, future_b: str) -> MaskCheck:
    """Feed ``prefix + future_a`` and ``prefix + future_b``; compare the logits at the prefix positions."""
    for name, s in (("prefix", prefix), ("future_a", future_a), ("future_b", future_b)):
        if not s:
            raise ValueError(f"{name} is empty")
    if future_a == future_b:
        raise ValueError("the two futures are identical: choose two different ones")
    a = torch.tensor([tokenizer.encode(prefix + future_a)])
    b = torch.tensor([tokenizer.encode(prefix + future_b)])
    n = len(prefix)
    model.eval()
    d_model = (model(a).logits[0, :n] - model(b).logits[0, :n]).abs().max().item()
    d_free = (forward_with_mask_switch(model, a, causal=False)[0, :n]
              - forward_with_mask_switch(model, b, causal=False)[0, :n]).abs().max().item()
    return MaskCheck(n, d_model, d_free)


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
            self.message.value = f"<span style='color:#cf222e'>&#10008; {exc}</span> (showing the last valid text)"
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
                   hover_value="mean weight", height=360)


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


# ---------------------------------------------------------------------------
# Induction heads
# ---------------------------------------------------------------------------
@dataclass
class InductionTask:
    vocab_size: int = 64
    seq_len: int = 64
    min_repeat: int = 10
    max_repeat: int = 31

    def __post_init__(self):
        if not (isinstance(self.vocab_size, int) and 2 <= self.vocab_size <= 4096):
            raise ValueError(f"vocab_size must be in 2..4096, got {self.vocab_size!r}")
        if not (isinstance(self.min_repeat, int) and 1 <= self.min_repeat <= self.max_repeat):
            raise ValueError(f"need 1 <= min_repeat <= max_repeat, got {self.min_repeat!r}, {self.max_repeat!r}")
        if 2 * self.max_repeat > self.seq_len:
            raise ValueError(f"max_repeat={self.max_repeat} does not fit twice into seq_len={self.seq_len}; "
                             f"allowed 1..{self.seq_len // 2}")


def repeat_batch(batch_size: int, task: InductionTask = InductionTask(), generator: torch.Generator | None = None,
                 repeat: int | None = None):
    """Random token sequences: a segment of R tokens (R random per row), its exact copy, then random tokens.

    Returns (x, y, repeated) with shapes (B, T): inputs, next-token targets, and a mask of the
    targets a perfect copier can predict (the 2nd..R-th token of the copy).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    T = task.seq_len
    x = torch.randint(task.vocab_size, (batch_size, T + 1), generator=generator)
    if repeat is None:
        R = torch.randint(task.min_repeat, task.max_repeat + 1, (batch_size,), generator=generator)
    else:
        if not (isinstance(repeat, int) and 1 <= repeat <= T // 2):
            raise ValueError(f"repeat must be in 1..{T // 2}, got {repeat!r}")
        R = torch.full((batch_size,), repeat)
    pos = torch.arange(T + 1)[None]
    in_copy = (pos >= R[:, None]) & (pos < 2 * R[:, None])
    x = torch.gather(x, 1, torch.where(in_copy, pos - R[:, None], pos))
    repeated = ((pos >= R[:, None] + 1) & (pos < 2 * R[:, None]))[:, 1:]
    return x[:, :-1], x[:, 1:], repeated


def induction_model(n_layer: int, task: InductionTask = InductionTask(), n_head: int = 2, n_embd: int = 32,
                    seed: int = 0, qkv_init_std: float = 0.15) -> GPT:
    """An attention-only GPT (no MLP) for the copying task."""
    if n_layer not in (1, 2, 3):
        raise ValueError(f"n_layer must be 1, 2 or 3, got {n_layer!r}")
    if not 0 < qkv_init_std <= 1:
        raise ValueError(f"qkv_init_std must be in (0, 1], got {qkv_init_std!r}")
    with seeded(seed):                     # seeded weights, without touching the notebook's random stream
        model = GPT(GPTConfig(vocab_size=task.vocab_size, block_size=task.seq_len, n_layer=n_layer, n_head=n_head,
                              n_embd=n_embd, mlp=False))
        # GPT-2's init (std 0.02) makes every score q·k almost 0: attention starts uniform and sits on a long
        # plateau (measured: 600 to >1500 steps depending on the seed). Larger query/key/value weights start
        # it off the plateau, so the phase change comes after a few hundred steps for every seed we tried.
        for block in model.blocks:
            torch.nn.init.normal_(block.attn.qkv.weight, std=qkv_init_std)
    return model


@torch.no_grad()
def split_loss(model: GPT, x, y, repeated) -> tuple[float, float]:
    """Mean loss on the repeated (copyable) targets and on the purely random ones."""
    was_training = model.training
    model.eval()
    loss = F.cross_entropy(model(x).logits.transpose(1, 2), y, reduction="none")
    model.train(was_training)
    return loss[repeated].mean().item(), loss[~repeated].mean().item()


@dataclass
class InductionRun:
    model: GPT
    history: list[dict] = field(default_factory=list)   # step, repeated, random, cpu_seconds
    snapshots: dict[int, torch.Tensor] = field(default_factory=dict)   # step -> (L, H, T, T) on the probe
    probe: torch.Tensor | None = None                   # (1, T) a sequence with a repeat, for heatmaps
    probe_repeat: int = 0
    cpu_seconds: float = 0.0

    def crossing(self, threshold: float = 2.0) -> int | None:
        """First evaluated step where the repeated-part loss is below ``threshold`` (None if never)."""
        return next((r["step"] for r in self.history if r["repeated"] < threshold), None)


def train_induction(n_layer: int = 2, steps: int = 1000, task: InductionTask = InductionTask(), seed: int = 0,
                    batch_size: int = 64, lr: float = 1e-3, eval_every: int = 50, probe_repeat: int = 20,
                    n_head: int = 2, n_embd: int = 32,
                    progress: bool = True, callback: Callable[[dict], None] | None = None) -> InductionRun:
    """Train an attention-only GPT on :func:`repeat_batch` data through ``train.train`` (constant
    learning rate, no weight decay); record both losses and the probe's attention at every evaluation.

    ``cpu_seconds`` in each record is the CPU time spent training so far (``time.process_time``,
    evaluations excluded).
    """
    if not isinstance(steps, int) or not 1 <= steps <= 20000:
        raise ValueError(f"steps must be in 1..20000, got {steps!r}")
    if not isinstance(eval_every, int) or eval_every < 1:
        raise ValueError(f"eval_every must be a positive integer, got {eval_every!r}")
    model = induction_model(n_layer, task, n_head=n_head, n_embd=n_embd, seed=seed)
    ex, ey, em = repeat_batch(256, task, torch.Generator().manual_seed(10_000 + seed))
    probe = repeat_batch(1, task, torch.Generator().manual_seed(20_000 + seed), repeat=probe_repeat)[0]
    run = InductionRun(model, probe=probe, probe_repeat=probe_repeat)
    clock = {"start": time.process_time(), "in_eval": 0.0}

    def evaluate(m: GPT) -> dict:
        t0 = time.process_time()
        rep, rnd = split_loss(m, ex, ey, em)
        snapshot = torch.stack([w[0] for w in m(probe, return_attn=True).attentions])
        run.cpu_seconds = t0 - clock["start"] - clock["in_eval"]
        clock["in_eval"] += time.process_time() - t0
        return {"repeated": rep, "random": rnd, "cpu_seconds": run.cpu_seconds, "snapshot": snapshot}

    def record(r: dict) -> None:
        run.snapshots[r["step"]] = r.pop("snapshot")
        run.history.append({k: r[k] for k in ("step", "repeated", "random", "cpu_seconds")})
        if callback:
            callback(run.history[-1])

    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr, warmup_steps=0, weight_decay=0.0,
                      beta2=0.999, grad_clip=0.0, eval_interval=eval_every, seed=seed)
    train(model, None, None, cfg, callback=record, progress=progress, desc=f"{n_layer}-layer model",
          batch_fn=lambda g: repeat_batch(batch_size, task, g)[:2], eval_fn=evaluate)
    return run


def induction_scores(weights: torch.Tensor, repeat: int) -> tuple[np.ndarray, np.ndarray]:
    """(induction, previous-token) scores per head for attention on a sequence whose first ``repeat``
    tokens are copied right after them.

    induction: mean weight that a token in the copy (position i, R <= i < 2R-1) puts on the token
    *after* its earlier occurrence (position i - R + 1). previous-token: mean weight on i - 1.
    """
    w = weights.numpy() if torch.is_tensor(weights) else np.asarray(weights)
    T = w.shape[-1]
    if not (isinstance(repeat, int) and 2 <= repeat <= T // 2):
        raise ValueError(f"repeat must be in 2..{T // 2}, got {repeat!r}")
    q = np.arange(repeat, 2 * repeat - 1)
    rows = np.arange(1, T)
    return w[..., q, q - repeat + 1].mean(-1), w[..., rows, rows - 1].mean(-1)


def induction_loss_figure(runs: dict[str, InductionRun], title: str = "Induction: loss on the repeated half") -> go.Figure:
    """Loss on the repeated and on the random part against training step, one colour per model."""
    colors = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
    fig = go.Figure()
    for (name, run), c in zip(runs.items(), colors):
        steps = [r["step"] for r in run.history]
        fig.add_trace(go.Scatter(x=steps, y=[r["repeated"] for r in run.history], name=f"{name}: repeated part",
                                 line=dict(color=c)))
        fig.add_trace(go.Scatter(x=steps, y=[r["random"] for r in run.history], name=f"{name}: random part",
                                 line=dict(color=c, dash="dot")))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="cross-entropy (nats per token)",
                      height=420, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def snapshot_widget(runs: dict[str, "InductionRun"], title: str = "Induction heads: attention during training"):
    """Model / layer / head / training-step selectors over the probe-sequence heatmaps saved while training."""
    import ipywidgets as widgets

    if not runs:
        raise ValueError("runs is empty: train at least one model first")
    names = list(runs)
    model = widgets.Dropdown(options=names, value=names[0], description="model")
    layer = widgets.IntSlider(min=0, max=0, description="layer")
    head = widgets.IntSlider(min=0, max=0, description="head")
    step = widgets.SelectionSlider(options=[0], description="step", continuous_update=False)

    def current():
        run = runs[model.value]
        tokens = [str(t) for t in run.probe[0].tolist()]
        return run, tokens

    def figure():
        run, tokens = current()
        w = run.snapshots[step.value][layer.value, head.value].numpy()
        fig = attention_heatmap(w, tokens, height=520,
                                title=f"{title}: {model.value}, layer {layer.value}, head {head.value}, "
                                      f"step {step.value}")
        fig.update_xaxes(title=f"key (tokens; the segment of {run.probe_repeat} repeats from position "
                               f"{run.probe_repeat})")
        return fig

    fig = go.FigureWidget()

    def reset(*_):
        run, _ = current()
        L, H = next(iter(run.snapshots.values())).shape[:2]
        layer.max, head.max = L - 1, H - 1
        layer.value, head.value = L - 1, min(head.value, H - 1)
        steps = sorted(run.snapshots)
        step.options = steps
        step.value = steps[-1]
        redraw()

    def redraw(*_):
        replace_figure(fig, figure())

    model.observe(reset, "value")
    for w in (layer, head, step):
        w.observe(redraw, "value")
    reset()
    return widgets.VBox([widgets.HBox([model, layer, head]), step, fig])


# ---------------------------------------------------------------------------
# Exercise checkers (raise AssertionError with a helpful reason)
# ---------------------------------------------------------------------------
def check_attention_fn(fn: Callable) -> None:
    """``fn(q, k, v)`` must return softmax(q kᵀ/√d) v (no mask) for batched and unbatched inputs."""
    g = torch.Generator().manual_seed(3)
    for shape in ((5, 4), (2, 3, 6, 8)):
        q, k, v = (torch.randn(*shape, generator=g) for _ in range(3))
        got = fn(q, k, v)
        if isinstance(got, tuple):
            got = got[0]
        assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
        want, _ = attention(q, k, v, return_weights=True)
        assert got.shape == want.shape, f"output shape {tuple(got.shape)}, expected {tuple(want.shape)}"
        unscaled = (q @ k.transpose(-2, -1)).softmax(-1) @ v
        if torch.allclose(got, unscaled, atol=1e-5):
            raise AssertionError("you forgot to divide the scores by √d (d = size of the last dimension)")
        assert torch.allclose(got, want, atol=1e-5), \
            f"values differ from softmax(q kᵀ/√d) v by up to {(got - want).abs().max().item():.3g}"


def check_mask_fn(fn: Callable[[int], torch.Tensor]) -> None:
    """``fn(T)`` must return a (T, T) boolean tensor, True where query i may attend to key j (j <= i),
    and with it, changing later tokens must leave earlier outputs unchanged."""
    for T in (4, 7, 1):
        got = fn(T)
        assert torch.is_tensor(got), f"return a tensor, got {type(got).__name__}"
        assert got.shape == (T, T), f"for T={T} the mask must have shape ({T}, {T}), got {tuple(got.shape)}"
        assert got.dtype == torch.bool, (f"for T={T} the mask has dtype {got.dtype}: return a bool tensor "
                                         "(True = may attend), not numbers to add to the scores")
        if T > 1 and torch.equal(got, causal_mask(T).T):
            raise AssertionError("upside down: query i (row) may look at keys j <= i, so keep the LOWER triangle")
        if T > 1 and torch.equal(got, ~causal_mask(T)):
            raise AssertionError("inverted: True must mean 'allowed' (the past and the token itself)")
        if T > 1 and torch.equal(got, causal_mask(T).tril(-1)):
            raise AssertionError("the diagonal is missing: a token may also look at itself")
        assert torch.equal(got, causal_mask(T)), f"for T={T} expected\n{causal_mask(T).int()}\ngot\n{got.int()}"
    # and it really blocks the future: new later keys and values leave the earlier outputs unchanged
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 6, 4, generator=g) for _ in range(3))
    k2, v2 = k.clone(), v.clone()
    k2[:, 4:], v2[:, 4:] = 10.0, -10.0
    a, _ = attention(q, k, v, fn(6), return_weights=True)
    b, _ = attention(q, k2, v2, fn(6), return_weights=True)
    assert torch.allclose(a[:, :4], b[:, :4]), "with your mask, changing tokens 4 and 5 changed earlier outputs"


ROW_QUERY = [1.0, 2.0]
ROW_KEYS = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]


def attention_row(q: Sequence[float] = ROW_QUERY, keys=ROW_KEYS, scale: float | None = None) -> list[float]:
    """The attention weights of one query over a few keys (reference for the by-hand exercise)."""
    q_t, k_t = torch.tensor([q], dtype=torch.float64), torch.tensor(keys, dtype=torch.float64)
    _, w = attention(q_t, k_t, k_t, return_weights=True, scale=scale)
    return w[0].tolist()


def check_attention_row(answer: Sequence[float], q: Sequence[float] = ROW_QUERY, keys=ROW_KEYS) -> None:
    """``answer``: the 3 weights of query ``q`` over ``keys`` with scale 1/√2, to 2 decimals."""
    want = np.array(attention_row(q, keys))
    got = np.asarray(answer, dtype=float)
    assert got.shape == want.shape, f"give {len(want)} weights, one per key; got {got.size}"
    assert abs(got.sum() - 1) < 0.02, f"weights must sum to 1 (softmax), yours sum to {got.sum():.3f}"
    unscaled = np.array(attention_row(q, keys, scale=1.0))
    if np.allclose(got, unscaled, atol=0.01) and not np.allclose(got, want, atol=0.01):
        raise AssertionError("close: now divide the scores by √d = √2 before the softmax")
    assert np.allclose(got, want, atol=0.01), "not quite: expected weights within 0.01 of the softmax of q·k/√2"
