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

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import numpy as np
import plotly.graph_objects as go
import torch

from ..model import GPT, attention, causal_mask
from ..plots import heatmap
from .attention_heads import *  # noqa: F401,F403  (one alias for the notebook: lab.<name>)

from .attention_induction import *  # noqa: F401,F403


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
# Why 1/sqrt(d): the softmax of unscaled dot products saturates as d grows
# ---------------------------------------------------------------------------
def scale_entropy(dims: Sequence[int] = (4, 16, 64, 256, 1024), n_keys: int = 32, n_queries: int = 256,
                  seed: int = 0) -> dict[str, list[float]]:
    """Mean softmax entropy (nats) of the scores of random queries against ``n_keys`` random keys,
    with entries drawn from N(0, 1), for each vector size d in ``dims``: {"without the scale": [...],
    "with 1/√d": [...]}.

    q·k is a sum of d products of variance 1, so its variance is d: unscaled, the scores spread out
    as d grows and the softmax puts nearly all weight on one key (entropy -> 0); divided by √d they
    keep variance 1 and the entropy stays put. The maximum, an even spread, is ln(n_keys).
    """
    if not dims or any(not isinstance(d, int) or d < 1 for d in dims):
        raise ValueError(f"dims must be positive integers, got {dims!r}")
    if not isinstance(n_keys, int) or n_keys < 2:
        raise ValueError(f"n_keys must be an integer >= 2, got {n_keys!r}")
    g = torch.Generator().manual_seed(seed)
    out: dict[str, list[float]] = {"without the scale": [], "with 1/√d": []}
    for d in dims:
        q = torch.randn(n_queries, d, generator=g)
        k = torch.randn(n_keys, d, generator=g)
        scores = q @ k.T
        for name, s in (("without the scale", scores), ("with 1/√d", scores / d ** 0.5)):
            p = s.softmax(-1)
            out[name].append(float(-(p * p.clamp_min(1e-30).log()).sum(-1).mean()))
    return out


def scale_entropy_figure(dims: Sequence[int], entropies: dict[str, list[float]], n_keys: int = 32) -> go.Figure:
    """Entropy against d (log axis) for both curves, with the even-spread maximum ln(n_keys) dashed."""
    import math

    from ..plots import PALETTE

    fig = go.Figure()
    for i, (name, ys) in enumerate(entropies.items()):
        fig.add_trace(go.Scatter(x=list(dims), y=ys, name=name, mode="lines+markers", line=dict(color=PALETTE[i])))
    fig.add_hline(y=math.log(n_keys), line_dash="dash", line_color="grey",
                  annotation_text=f"even spread over {n_keys} keys: ln {n_keys} = {math.log(n_keys):.2f}")
    fig.update_layout(title="Softmax entropy of random q·k scores as the vector size d grows",
                      xaxis_title="vector size d", yaxis_title="entropy of the attention row (nats)",
                      xaxis_type="log", height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


# ---------------------------------------------------------------------------
# The causal mask, proved
# ---------------------------------------------------------------------------
@torch.no_grad()
def forward_with_mask_switch(model: GPT, idx: torch.Tensor, causal: bool = True) -> torch.Tensor:
    """Logits of ``idx`` from the course GPT, with the causal mask on (the model as trained) or off.

    With ``causal=False`` the same weights run as a bidirectional model (``GPTConfig(causal=False)``):
    every token can see the future, which a language model must never do.
    """
    if causal:
        return model(idx).logits
    free = GPT(replace(model.config, causal=False)).to(next(model.parameters()).device)
    free.load_state_dict(model.state_dict())
    return free.eval()(idx).logits


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
