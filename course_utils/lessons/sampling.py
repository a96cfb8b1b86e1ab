"""Companion of notebook 04 (sampling knobs): its widget, figures, experiments and exercise checkers.

The models come through the core adapter :mod:`course_utils.lm`; the knobs themselves are
:mod:`course_utils.sampling`.

* :class:`DistributionSurgeon`: the slider widget (temperature, top-k, top-p, min-p,
  repetition penalty) over a plotly bar chart of the next-token distribution; its Generate button
  says how long the continuation took.
* The float experiments behind "temperature 0 is not deterministic" and the figures.
* Text-quality measures (distinct-n, repeated n-grams, non-words, Spearman) and the checkers.
* Temperature 0 on SmolLM2 (:mod:`.sampling_batch`): greedy chat answers alone, in a left-padded
  batch and with extra padding (:func:`batch_invariance`, :func:`greedy_padded`).
"""
from __future__ import annotations

import html
import re
import time
from typing import Callable, Sequence

import plotly.graph_objects as go
import torch

from .. import sampling
from ..lm import Knobs, LanguageModel
from ..plots import COLORS, error_html, grouped_bars
from .sampling_batch import CHAT_QUESTIONS, BatchInvariance, batch_invariance, greedy_padded  # noqa: F401


# ------------------------------------------------------------- text metrics
_WORD = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?")


def shakespeare_words() -> frozenset[str]:
    """Every lower-cased word of the full Shakespeare corpus (the yardstick for gibberish)."""
    from ..assets import shakespeare
    return frozenset(w.lower() for w in _WORD.findall(shakespeare("full")))


def nonword_share(text: str, vocabulary: frozenset[str]) -> float:
    """Share of the words in ``text`` that never occur in ``vocabulary`` (0 if it has no words)."""
    words = [w.lower() for w in _WORD.findall(text)]
    return sum(w not in vocabulary for w in words) / len(words) if words else 0.0


# ------------------------------------------------------ the surgeon widget
SURGEON_TITLE = "Distribution surgeon: next-token probabilities"


def surgeon_figure(top_n: int = 30) -> go.Figure:
    """The empty two-panel bar chart the surgeon fills (raw left, after the knobs right)."""
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.08,
                        subplot_titles=("raw model (T = 1, no filters)", "after the knobs (renormalised)"))
    xs = list(range(top_n))
    fig.add_trace(go.Bar(x=xs, y=[0] * top_n, name="raw", marker_color=[COLORS["removed"]] * top_n,
                         hovertemplate="%{customdata}<br>raw p = %{y:.4f}<extra></extra>",
                         customdata=[""] * top_n), row=1, col=1)
    fig.add_trace(go.Bar(x=xs, y=[0] * top_n, name="after", marker_color=[COLORS["kept"]] * top_n,
                         hovertemplate="%{customdata}<br>final p = %{y:.4f}<extra></extra>",
                         customdata=[""] * top_n), row=1, col=2)
    fig.update_layout(title=SURGEON_TITLE, height=430, showlegend=False, margin=dict(l=50, r=20, t=80, b=80),
                      bargap=0.15)
    for col in (1, 2):
        fig.update_xaxes(tickmode="array", tickvals=xs, ticktext=[""] * top_n, tickangle=-60, row=1, col=col)
        fig.update_yaxes(title="probability" if col == 1 else None, range=[0, 1], row=1, col=col)
    return fig


def surgeon_view(lm: LanguageModel, prompt: str, knobs: Knobs, top_n: int = 30) -> dict:
    """Everything the surgeon draws for one prompt and setting (the model runs once per prompt)."""
    ids, logits = lm.next_logits(prompt)
    raw = logits.softmax(-1)
    final = sampling.probs(logits, **knobs.kwargs(), context=ids if knobs.repetition_penalty != 1 else None)
    top = torch.topk(raw, min(top_n, raw.numel())).indices
    return {"labels": [lm.token_label(i) for i in top.tolist()], "raw": raw[top].tolist(),
            "final": final[top].tolist(), "kept_mask": (final[top] > 0).tolist(),
            "kept": int(sampling.kept(final)), "vocab": raw.numel(),
            "entropy_raw": float(sampling.entropy(raw)), "entropy": float(sampling.entropy(final)),
            "shown_mass": float(final[top].sum())}


class DistributionSurgeon:
    """Sliders for the knobs over a live bar chart; generate continuations with the same knobs.

    ``models``: display name -> :class:`LanguageModel`; ``prompts``: a starting prompt per name.
    """

    def __init__(self, models: dict[str, LanguageModel], prompts: dict[str, str], top_n: int = 30,
                 lengths: dict[str, int] | None = None):
        import ipywidgets as W

        if not models:
            raise ValueError("DistributionSurgeon needs at least one model")
        if not isinstance(top_n, int) or not 1 <= top_n <= 100:
            raise ValueError(f"top_n must be an integer in 1..100, got {top_n!r}")
        self.models, self.prompts, self.top_n = models, dict(prompts), top_n
        self.lengths = {name: (lengths or {}).get(name, 40) for name in models}
        self.seed = 0
        names = list(models)
        style = {"description_width": "150px"}
        layout = W.Layout(width="460px")
        self.model_choice = W.ToggleButtons(options=names, value=names[0], description="model")
        self.prompt = W.Text(value=self.prompts.get(names[0], ""), description="prompt",
                             continuous_update=False, layout=W.Layout(width="700px"))
        self.temperature = W.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.05, description="temperature (0=greedy)",
                                         style=style, layout=layout, readout_format=".2f")
        self.top_k = W.IntSlider(value=0, min=0, max=100, step=1, description="top-k (0 = off)", style=style,
                                 layout=layout)
        self.top_p = W.FloatSlider(value=1.0, min=0.05, max=1.0, step=0.01, description="top-p (1 = off)",
                                   style=style, layout=layout, readout_format=".2f")
        self.min_p = W.FloatSlider(value=0.0, min=0.0, max=0.5, step=0.01, description="min-p (0 = off)",
                                   style=style, layout=layout, readout_format=".2f")
        self.penalty = W.FloatSlider(value=1.0, min=1.0, max=2.0, step=0.05, description="repetition penalty",
                                     style=style, layout=layout, readout_format=".2f")
        self.stats = W.HTML()
        self.figure = go.FigureWidget(surgeon_figure(top_n))
        self.length = W.IntSlider(value=self.lengths[names[0]], min=5, max=200, step=5,
                                  description="tokens to generate", style=style, layout=layout)
        self.generate_button = W.Button(description="Generate", icon="play", button_style="primary")
        self.new_seed_button = W.Button(description="New seed", icon="refresh")
        self.text = W.HTML()
        for w in (self.prompt, self.temperature, self.top_k, self.top_p, self.min_p, self.penalty):
            w.observe(lambda _change: self.refresh(), names="value")
        self.model_choice.observe(self._switch_model, names="value")
        self.generate_button.on_click(lambda _b: self.generate())
        self.new_seed_button.on_click(lambda _b: self.new_seed())
        self.widget = W.VBox([self.model_choice, self.prompt,
                              W.HBox([W.VBox([self.temperature, self.top_k, self.top_p]),
                                      W.VBox([self.min_p, self.penalty])]),
                              self.stats, self.figure,
                              W.HBox([self.length, self.generate_button, self.new_seed_button]), self.text])
        self.refresh()

    @property
    def lm(self) -> LanguageModel:
        return self.models[self.model_choice.value]

    def knobs(self) -> Knobs:
        """The sliders as a :class:`Knobs` (0 / 1.0 mean "off")."""
        return Knobs(temperature=float(self.temperature.value), top_k=int(self.top_k.value) or None,
                     top_p=None if self.top_p.value >= 1.0 else float(self.top_p.value),
                     min_p=float(self.min_p.value) or None, repetition_penalty=float(self.penalty.value))

    def _switch_model(self, change) -> None:
        self.prompts[change["old"]] = self.prompt.value
        self.length.value = self.lengths[change["new"]]
        if self.prompt.value != self.prompts.get(change["new"], self.prompt.value):
            self.prompt.value = self.prompts[change["new"]]        # triggers refresh
        else:
            self.refresh()

    def refresh(self) -> dict | None:
        """Re-filter the cached logits and redraw; returns what was drawn (None on a bad prompt)."""
        try:
            view = surgeon_view(self.lm, self.prompt.value, self.knobs(), self.top_n)
        except ValueError as exc:
            self.stats.value = error_html(exc)
            return None
        colors = [COLORS["kept"] if k else COLORS["removed"] for k in view["kept_mask"]]
        hover = [f"token {lab}" for lab in view["labels"]]
        with self.figure.batch_update():
            raw, after = self.figure.data
            raw.y, raw.marker.color, raw.customdata = view["raw"], colors, hover
            after.y, after.marker.color, after.customdata = view["final"], colors, hover
            ticks = view["labels"] + [""] * (self.top_n - len(view["labels"]))
            self.figure.layout.xaxis.ticktext = ticks
            self.figure.layout.xaxis2.ticktext = ticks
        self.stats.value = (
            f"<b>{view['kept']:,}</b> of {view['vocab']:,} tokens kept &nbsp;|&nbsp; entropy "
            f"{view['entropy_raw']:.2f} nats raw &rarr; <b>{view['entropy']:.2f}</b> nats after the knobs "
            f"&nbsp;|&nbsp; the {len(view['labels'])} bars hold {view['shown_mass']:.1%} of the final probability")
        return view

    def generate(self) -> str | None:
        """Continue the prompt with the current knobs and seed; show and return the text."""
        try:
            start = time.perf_counter()
            gen = self.lm.generate(self.prompt.value, int(self.length.value), self.knobs(), seed=self.seed)
            seconds = time.perf_counter() - start
        except ValueError as exc:
            self.text.value = error_html(exc)
            return None
        n_new = len(gen.new_ids[0])
        self.text.value = (f"<div style='font-family:monospace;white-space:pre-wrap;border:1px solid #ddd;"
                           f"padding:6px'><b>{html.escape(self.prompt.value)}</b>{html.escape(gen.texts[0])}</div>"
                           f"<small>seed {self.seed} &middot; {html.escape(self.knobs().label())} &middot; "
                           f"mean log-prob {gen.mean_logprob[0]:.2f} nats/token &middot; "
                           f"{n_new} tokens in {seconds:.1f} s ({n_new / max(seconds, 1e-9):.0f} tokens/s)</small>")
        return gen.texts[0]

    def new_seed(self) -> str | None:
        self.seed += 1
        return self.generate()

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


# ------------------------------------------------------------- figures
def sweep_figure(temperatures, series: dict[str, list[float]], title: str) -> go.Figure:
    """Lines of text-quality measures against temperature."""
    fig = go.Figure()
    for name, ys in series.items():
        fig.add_trace(go.Scatter(x=list(temperatures), y=list(ys), mode="lines+markers", name=name))
    fig.update_layout(title=title, xaxis_title="temperature (0 = greedy)", yaxis_title="share",
                      yaxis_range=[0, 1.02], height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def kept_bars(groups: dict[str, dict[str, float]], title: str, y_title: str, log_y: bool = False) -> go.Figure:
    """Grouped bars: groups[x label][series name] = value."""
    names = list(next(iter(groups.values())))
    by_series = {n: {x: groups[x][n] for x in groups} for n in names}
    return grouped_bars(by_series, title=title, y_title=y_title, text_format="%{y:.3~g}", log_y=log_y)


def best_of_n_figure(mean_logprobs, repetition, labels=None, title: str = "Best-of-n: score vs repetition") -> go.Figure:
    """Each sample as a dot: its mean log-prob (the ranking score) against its repetition."""
    fig = go.Figure(go.Scatter(x=list(repetition), y=list(mean_logprobs), mode="markers",
                               marker=dict(size=9, color=list(mean_logprobs), colorscale="Viridis"),
                               hovertext=labels, hovertemplate="repeated share %{x:.2f}<br>"
                               "mean log-prob %{y:.3f}<br>%{hovertext}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="share of text inside a repeated n-gram",
                      yaxis_title="mean log-prob per token (nats)", height=400, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def margin_histogram(margins, reference: float, reference_name: str,
                     title: str = "How close are the top two tokens? (greedy steps)") -> go.Figure:
    """Histogram of log10 top-1/top-2 margins with a line at a reference size."""
    import numpy as np

    m = np.asarray(margins, dtype=float).ravel()
    logm = np.log10(np.clip(m, 1e-12, None))
    fig = go.Figure(go.Histogram(x=logm, nbinsx=60, marker_color=COLORS["train"]))
    fig.add_vline(x=float(np.log10(reference)), line_dash="dot", line_color=COLORS["val"],
                  annotation_text=reference_name)
    fig.update_layout(title=title, xaxis_title="log10(logit of top-1 minus logit of top-2)",
                      yaxis_title="greedy steps", height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def fork_html(prefix: str, a: str, b: str, label_a: str, label_b: str) -> str:
    """Two continuations of the same text, the part where they differ highlighted."""
    same = 0
    while same < min(len(a), len(b)) and a[same] == b[same]:
        same += 1
    def row(label, text, color):
        return (f"<div><b>{html.escape(label)}</b><br><span style='color:#666'>{html.escape(prefix[-80:])}"
                f"</span>{html.escape(text[:same])}<span style='background:{color}'>{html.escape(text[same:])}</span></div>")
    return ("<div style='font-family:monospace;white-space:pre-wrap;border:1px solid #ddd;padding:6px'>"
            + row(label_a, a, "#d0ebff") + "<hr>" + row(label_b, b, "#ffe3e3") + "</div>")


# --------------------------------------------------- float determinism
def sum_orders(n: int = 1_000_000, seed: int = 0) -> dict[str, float]:
    """The same fp32 numbers summed in three orders (and in float64 for reference)."""
    import numpy as np

    if not isinstance(n, int) or n < 2:
        raise ValueError(f"n must be an integer >= 2, got {n!r}")
    x = np.random.default_rng(seed).standard_normal(n).astype(np.float32)
    def seq(v):                                    # one running fp32 sum, left to right
        return float(np.cumsum(v, dtype=np.float32)[-1])
    return {"forward": seq(x), "reversed": seq(x[::-1]), "sorted": seq(np.sort(x)),
            "float64": float(x.astype(np.float64).sum())}


def batch_dependence(ks=(256, 1024, 4096), batch_sizes=(1, 2, 3, 4, 8, 16, 32, 64), n_out: int = 256,
                     seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Max |difference| of row 0 of ``A[:bs] @ B`` against ``bs = 1``, per K and batch size.

    Returns (batch-size differences, re-run differences), each (len(ks), len(batch_sizes)).
    The re-run repeats the same batch and compares bit for bit.
    """
    if not batch_sizes or min(batch_sizes) < 1:
        raise ValueError(f"batch sizes must be >= 1, got {batch_sizes!r}")
    g = torch.Generator().manual_seed(seed)
    diff = torch.zeros(len(ks), len(batch_sizes))
    rerun = torch.zeros(len(ks), len(batch_sizes))
    for i, k in enumerate(ks):
        A = torch.randn(max(batch_sizes), k, generator=g)
        B = torch.randn(k, n_out, generator=g)
        alone = (A[:1] @ B)[0]
        for j, bs in enumerate(batch_sizes):
            first = (A[:bs] @ B)[0]
            again = (A[:bs] @ B)[0]
            diff[i, j] = (first - alone).abs().max()
            rerun[i, j] = (first - again).abs().max()
    return diff, rerun


def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    tokens = list(tokens)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence, n: int) -> float:
    """Unique n-grams / all n-grams (Li et al. 2016): 1 = nothing repeats, near 0 = a loop.

    ``tokens``: a string (characters) or a list of token ids. Texts shorter than n give 1.0.
    """
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(tokens: Sequence, n: int) -> float:
    """Share of positions covered by an n-gram that occurs at least twice in the text.

    0 = no n-gram repeats; 1 = the whole text is made of repeated n-grams (a loop).
    """
    grams = _ngrams(tokens, n)
    if not grams:
        return 0.0
    counts: dict[tuple, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    covered = [False] * len(list(tokens))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            for j in range(i, i + n):
                covered[j] = True
    return sum(covered) / len(covered)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import numpy as np

    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):            # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need two sequences of equal length >= 3, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


# ------------------------------------------------------ exercise checkers
def _exercise_logits(seed: int = 0, rows: int = 6, vocab: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=g) * torch.linspace(0.5, 4.0, rows)[:, None]


def _as_probs(out, shape, what: str) -> torch.Tensor:
    assert torch.is_tensor(out), f"{what} should return a tensor, got {type(out).__name__}"
    assert tuple(out.shape) == tuple(shape), f"{what} should keep the shape {tuple(shape)}, got {tuple(out.shape)}"
    out = out.detach().float()
    assert not torch.isnan(out).any(), f"{what} returned NaN"
    assert torch.allclose(out.sum(-1), torch.ones(out.shape[:-1]), atol=1e-4), \
        f"{what} should return probabilities that sum to 1 (got sums like {out.sum(-1)[0].item():.4f})"
    return out


def check_temperature(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``fn(logits, temperature) -> probabilities`` for temperature > 0, compared exactly."""
    logits = _exercise_logits(1)
    for t in (0.3, 1.0, 2.5):
        got = _as_probs(fn(logits.clone(), t), logits.shape, f"temperature={t}")
        want = sampling.probs(logits, temperature=t)
        assert torch.allclose(got, want, atol=1e-5), (
            f"at temperature {t} the probabilities differ from the reference by up to "
            f"{(got - want).abs().max().item():.3g}: divide the logits by the temperature, then softmax")


def _same_filtered(got: torch.Tensor, want: torch.Tensor, setting: str) -> None:
    """The student's filtered distribution keeps exactly the reference's tokens, renormalised."""
    assert torch.equal(got > 0, want > 0), (
        f"with {setting} you keep {(got > 0).sum(-1).tolist()} tokens per row, the reference keeps "
        f"{(want > 0).sum(-1).tolist()}")
    assert torch.allclose(got, want, atol=1e-5), f"with {setting} the kept tokens are right but not renormalised"


def check_top_k(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(logits, k) -> probabilities`` keeping the k most likely tokens, compared exactly."""
    logits = _exercise_logits(2)
    for k in (1, 5, 20, 50):
        _same_filtered(_as_probs(fn(logits.clone(), k), logits.shape, f"top_k={k}"), sampling.probs(logits, top_k=k),
                       f"k={k}")


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``fn(logits, p) -> probabilities`` of the nucleus (crossing token kept), compared exactly."""
    handmade = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    got = _as_probs(fn(handmade.clone(), 0.6), handmade.shape, "top_p=0.6")
    assert (got > 0).sum().item() == 2, (
        "for probabilities [0.5, 0.3, 0.15, 0.05] and p=0.6 the nucleus is {0.5, 0.3}: keep the token that "
        f"crosses p, not only those below it (you kept {(got > 0).sum().item()} tokens)")
    logits = _exercise_logits(3)
    for p in (0.1, 0.5, 0.9, 0.99):
        _same_filtered(_as_probs(fn(logits.clone(), p), logits.shape, f"top_p={p}"), sampling.probs(logits, top_p=p),
                       f"p={p}")


SAMPLER_SETTINGS = ((1.0, None, None), (0.5, None, None), (1.5, 3, None), (1.0, None, 0.7))


def check_sampler(fn: Callable[..., int], draws: int = 2500, tolerance: float = 0.04) -> None:
    """``fn(logits, temperature, top_k, top_p, generator) -> token id``, checked statistically.

    Draws ``draws`` tokens per setting; every frequency must be within ``tolerance`` of the
    reference probability (about 4 standard errors) and removed tokens must never appear.
    """
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0])
    g = torch.Generator().manual_seed(1234)
    for t, k, p in SAMPLER_SETTINGS:
        want = sampling.probs(logits, temperature=t, top_k=k, top_p=p)
        counts = torch.zeros_like(want)
        for _ in range(draws):
            tok = fn(logits.clone(), t, k, p, g)
            tok = int(tok.item() if torch.is_tensor(tok) else tok)
            assert 0 <= tok < len(logits), f"token id {tok} is outside 0..{len(logits) - 1}"
            counts[tok] += 1
        freq = counts / draws
        label = f"temperature={t}, top_k={k}, top_p={p}"
        banned = (want == 0) & (counts > 0)
        assert not banned.any(), f"with {label} you drew token(s) {banned.nonzero().flatten().tolist()}, which the filters remove"
        worst = (freq - want).abs().max().item()
        assert worst <= tolerance, (
            f"with {label} the frequencies {[round(f, 3) for f in freq.tolist()]} are up to {worst:.3f} away "
            f"from the probabilities {[round(f, 3) for f in want.tolist()]}")
