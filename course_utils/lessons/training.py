"""Notebook 03, training a transformer: the arithmetic of loss and compute, the live-training
display, the over-fitting plot and the exercise checkers.

The training loop itself is ``course_utils.train``; this module only adds what the lesson
needs around it.
"""
from __future__ import annotations

import html
import math
from typing import Callable, Sequence

import plotly.graph_objects as go
import torch

from ..model import GPT, Block, GPTConfig
from ..plots import COLORS, LiveLossPlot, loss_curve
from ..tokenizers import CharTokenizer
from ..runtime import seeded
from ..train import TrainConfig, get_batch, train

# ---------------------------------------------------------------------------------------------
# Loss, perplexity and compute as numbers
# ---------------------------------------------------------------------------------------------


def training_flops(params: float, tokens: float) -> float:
    """Training compute ~ 6 x parameters x tokens (forward 2 N D, backward 4 N D; Kaplan et al. 2020)."""
    for name, value in (("params", params), ("tokens", tokens)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    return 6.0 * params * tokens


def chinchilla_tokens(params: float, tokens_per_param: float = 20.0) -> float:
    """Compute-optimal number of training tokens (Hoffmann et al. 2022: about 20 per parameter)."""
    if not isinstance(params, (int, float)) or not params > 0:
        raise ValueError(f"params must be a positive number, got {params!r}")
    if not isinstance(tokens_per_param, (int, float)) or not tokens_per_param > 0:
        raise ValueError(f"tokens_per_param must be a positive number, got {tokens_per_param!r}")
    return params * tokens_per_param


def human_duration(seconds: float) -> str:
    """3.2e7 -> '1.0 years'; a readable duration for very different magnitudes."""
    if not isinstance(seconds, (int, float)) or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size:
            return f"{seconds / size:,.1f} {unit}"
    return f"{seconds:.1f} seconds"


YEAR_SECONDS = 365.25 * 86400

# (name, parameters, training tokens, source). Published figures, rounded; each checked against its source.
FAMOUS_MODELS = [
    ("GPT-2 XL (2019)", 1.5e9, 9e9,
     ("Radford et al. 2019: 1.5 B parameters; WebText is 40 GB of text in 8 M documents, which is about "
      "9 B GPT-2 tokens (9.04 B counted on OpenWebText, its open re-creation, by nanoGPT's "
      "data/openwebtext/prepare.py); one pass assumed, the number of passes was not published")),
    ("GPT-3 (2020)", 175e9, 300e9, "Brown et al. 2020, arXiv 2005.14165: 175 B parameters, 300 B tokens"),
    ("Chinchilla (2022)", 70e9, 1.4e12, "Hoffmann et al. 2022, arXiv 2203.15556: 70 B parameters, 1.4 T tokens"),
    ("Llama 2 7B (2023)", 7e9, 2e12, "Touvron et al. 2023, arXiv 2307.09288: 2 T tokens"),
    ("Llama 3 8B (2024)", 8e9, 15e12, "Meta's Llama 3 model card (2024): 'over 15T tokens'"),
]


def laptop_years(models, flops_per_second: float) -> dict[str, float]:
    """Years that training each ``(name, params, tokens, ...)`` model would take at ``flops_per_second``."""
    if not isinstance(flops_per_second, (int, float)) or not math.isfinite(flops_per_second) or flops_per_second <= 0:
        raise ValueError(f"flops_per_second must be a positive number, got {flops_per_second!r}")
    return {m[0]: training_flops(m[1], m[2]) / flops_per_second / YEAR_SECONDS for m in models}


def famous_models_table(models, flops_per_second: float) -> str:
    """A markdown table: parameters, tokens, 6·N·D and the years at the measured speed, with sources."""
    years = laptop_years(models, flops_per_second)
    rows = ["| model | parameters | tokens | tokens/param | training FLOPs (6·N·D) | years on this machine | source |",
            "|---|---:|---:|---:|---:|---:|---|"]
    for name, p, d, src in models:
        rows.append(f"| {name} | {p / 1e9:,.1f} B | {d / 1e9:,.0f} B | {d / p:,.0f} | {training_flops(p, d):.1e} "
                    f"| {years[name]:.1e} | {src} |")
    return "\n".join(rows)


def describe(model: GPT, meta: dict | None = None) -> str:
    """One line about a model: its shape and size, and for a checkpoint what it was trained on and where."""
    c = model.config
    text = (f"{c.n_layer} blocks, {c.n_embd} channels, context {c.block_size}, vocabulary {c.vocab_size}, "
            f"{model.num_parameters():,} parameters")
    if meta:
        device = "a GPU" if "--device cuda" in meta.get("command", "") else "a CPU"
        corpus = meta["data"].split(":")[-1].strip()
        text += f"; trained on the {corpus} corpus on {device} in {meta['train_seconds']:.0f} s"
    return text


def perplexity_widget(max_loss: float, vocab_size: int):
    """A loss slider (nats) and the perplexity e^loss it stands for."""
    import ipywidgets as widgets

    slider = widgets.FloatSlider(value=min(2.0, max_loss), min=0.0, max=round(max_loss, 2), step=0.05,
                                 description="loss (nats)", continuous_update=True)
    out = widgets.HTML()

    def show(change=None):
        p = math.exp(slider.value)
        out.value = (f"perplexity e^{slider.value:.2f} = <b>{p:.1f}</b> effective choices per character "
                     f"(guessing among all {vocab_size}: {vocab_size})")

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, out])


def compute_widget(flops_per_second: float):
    """Parameters and tokens sliders; shows 6·N·D, tokens per parameter and the time at the measured speed."""
    import ipywidgets as widgets

    p = widgets.FloatLogSlider(value=1e8, base=10, min=5, max=12, step=0.1, description="parameters",
                               readout_format=".2e")
    d = widgets.FloatLogSlider(value=2e9, base=10, min=6, max=14, step=0.1, description="tokens",
                               readout_format=".2e")
    out = widgets.HTML()

    def show(change=None):
        f = training_flops(p.value, d.value)
        out.value = (f"6 × {p.value:.2e} × {d.value:.2e} = <b>{f:.2e} FLOPs</b>; "
                     f"{d.value / p.value:,.1f} tokens per parameter (Chinchilla: about 20); "
                     f"on this machine: <b>{human_duration(f / flops_per_second)}</b>")

    for s in (p, d):
        s.observe(show, names="value")
    show()
    return widgets.VBox([p, d, out])


def parameter_table(model: GPT) -> list[tuple[str, int, float]]:
    """(component, parameters, share of the total) for every component of ``model``."""
    parts = model.parameter_breakdown()
    total = model.num_parameters()
    if sum(parts.values()) != total:
        raise RuntimeError(f"breakdown {parts} does not add up to {total} parameters")
    return [(name, n, n / total) for name, n in parts.items()]


# ---------------------------------------------------------------------------------------------
# Live training: loss curve + a sample of generated text at every evaluation
# ---------------------------------------------------------------------------------------------


@torch.no_grad()
def sample_text(model: GPT, tokenizer: CharTokenizer, prompt: str = "\n", length: int = 200,
                temperature: float = 0.8, seed: int = 0) -> str:
    """``length`` characters generated after ``prompt`` (a fixed seed: the same model gives the same text)."""
    if not isinstance(length, int) or not 1 <= length <= 5000:
        raise ValueError(f"length must be an integer in 1..5000, got {length!r}")
    if not prompt:
        raise ValueError("prompt must contain at least one character (try '\\n')")
    idx = torch.tensor([tokenizer.encode(prompt)], device=next(model.parameters()).device)
    g = torch.Generator(device=idx.device).manual_seed(seed)
    out = model.generate(idx[:, -model.config.block_size:], length, temperature=temperature, generator=g)
    return tokenizer.decode(out[0, idx.size(1):])


def _pre(text: str) -> str:
    return ("<pre style='white-space:pre-wrap;font-size:12px;margin:0;background:#f6f8fa;padding:6px'>"
            f"{html.escape(text)}</pre>")


class LiveTraining:
    """The ``callback`` for ``course_utils.train.train``: redraws the loss curve and shows a
    fresh sample of generated text at every evaluation. Display ``.widget`` before training."""

    def __init__(self, model: GPT, tokenizer: CharTokenizer, prompt: str = "\n", sample_length: int = 150,
                 temperature: float = 0.8, title: str = "Training live: loss", reference: float | None = None):
        import ipywidgets as widgets

        self.model, self.tokenizer = model, tokenizer
        self.prompt, self.sample_length, self.temperature = prompt, sample_length, temperature
        self.plot = LiveLossPlot(title=title, reference=reference)
        self.samples: list[dict] = []
        self.text = widgets.HTML(_pre("(samples appear here as the model trains)"))
        self.widget = widgets.VBox([self.plot.widget, widgets.HTML("<b>Latest sample</b>"), self.text])

    @property
    def history(self) -> list[dict]:
        return self.plot.history

    def __call__(self, record: dict) -> bool:
        self.plot.update(record)
        was_training = self.model.training
        text = sample_text(self.model, self.tokenizer, self.prompt, self.sample_length, self.temperature,
                           seed=len(self.samples))
        self.model.train(was_training)
        self.samples.append({"step": record["step"], "val_loss": record["val_loss"], "text": text})
        self.text.value = _pre(f"step {record['step']}, validation loss {record['val_loss']:.2f}:\n{text}")
        return False


def sample_browser(samples: Sequence[dict]):
    """A slider over the recorded training steps that shows the sample generated at each one."""
    import ipywidgets as widgets

    if not samples:
        raise ValueError("no samples recorded: train with a LiveTraining callback first")
    options = [(f"{s['step']}", i) for i, s in enumerate(samples)]
    slider = widgets.SelectionSlider(options=options, value=len(samples) - 1, description="step",
                                     continuous_update=True, layout=widgets.Layout(width="600px"))
    text = widgets.HTML()

    def show(change=None):
        s = samples[slider.value]
        text.value = _pre(f"step {s['step']}, validation loss {s['val_loss']:.2f}:\n{s['text']}")

    slider.observe(show, names="value")
    show()
    return widgets.VBox([slider, text])


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def overfitting_figure(history: Sequence[dict], title: str = "Over-fitting: the recorded curve") -> go.Figure:
    """Train and validation loss against tokens seen, with the best validation step marked."""
    if len(history) < 2:
        raise ValueError(f"need at least 2 evaluations to draw a curve, got {len(history)}")
    fig = loss_curve(history, title=title, x="step")
    best = min(history, key=lambda r: r["val_loss"])
    fig.add_vline(x=best["step"], line_dash="dot", line_color=COLORS["kept"],
                  annotation_text=f"best validation loss (step {best['step']})")
    return fig


def positional_figure(table: torch.Tensor, title: str) -> go.Figure:
    """A (positions x channels) table of position vectors as a heatmap."""
    z = table.detach().float().cpu().numpy()
    fig = go.Figure(go.Heatmap(z=z, colorscale="RdBu", zmid=0,
                               hovertemplate="position %{y}<br>channel %{x}<br>value %{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title="channel", yaxis_title="position", height=380,
                      margin=dict(l=60, r=20, t=50, b=50))
    fig.update_yaxes(autorange="reversed")
    return fig


def position_similarity(table: torch.Tensor) -> torch.Tensor:
    """Cosine similarity between every pair of position vectors (T x T)."""
    t = torch.nn.functional.normalize(table.detach().float(), dim=-1)
    return t @ t.T


# ---------------------------------------------------------------------------------------------
# Learning rates: a tiny, fast training run
# ---------------------------------------------------------------------------------------------

TINY = dict(n_layer=2, n_head=2, n_embd=32, block_size=32)


def tiny_run(data: torch.Tensor, vocab_size: int, lr: float, steps: int = 150, batch_size: int = 16,
             seed: int = 0) -> list[float]:
    """Train a 2-layer, 32-channel model for ``steps`` AdamW steps at a constant ``lr``; return the
    training loss of every step (a diverged run reports its non-finite losses as 99)."""
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or not 0 < lr <= 100:
        raise ValueError(f"learning rate must be a number in (0, 100], got {lr!r}")
    if not isinstance(steps, int) or not 1 <= steps <= 5000:
        raise ValueError(f"steps must be an integer in 1..5000, got {steps!r}")
    with seeded(seed):                          # the weights' seed, without touching the notebook's stream
        model = GPT(GPTConfig(vocab_size=vocab_size, **TINY))
    cfg = TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr, warmup_steps=0, weight_decay=0.0,
                      grad_clip=0.0, eval_interval=1, seed=seed)
    diverged = lambda record: not math.isfinite(record.get("train_loss", 0.0))  # noqa: E731
    history = train(model, None, None, cfg, callback=diverged, progress=False,
                    batch_fn=lambda g: get_batch(data, TINY["block_size"], batch_size, g))
    losses = [r["train_loss"] for r in history if "train_loss" in r]
    if losses and not math.isfinite(losses[-1]):
        losses = losses[:-1] + [99.0] * (steps - len(losses) + 1)
    return losses


def final_loss(losses: Sequence[float], last: int = 20) -> float:
    """Mean of the last ``last`` losses (one batch is noisy)."""
    tail = list(losses)[-last:]
    return sum(tail) / len(tail)


def lr_figure(curves: dict[float, Sequence[float]], title: str = "Learning-rate sweep") -> go.Figure:
    fig = go.Figure()
    for lr, losses in curves.items():
        fig.add_trace(go.Scatter(y=[min(l, 6.0) for l in losses], mode="lines", name=f"lr = {lr:g}"))
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="training loss (capped at 6)", height=380,
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig


# ---------------------------------------------------------------------------------------------
# Exercise checkers (each asserts with a message a student can act on)
# ---------------------------------------------------------------------------------------------


def check_training_flops(fn: Callable[[float, float], float]) -> None:
    """``fn(params, tokens)`` must give the training compute 6·N·D (forward 2·N·D plus backward 4·N·D)."""
    for n, d in ((1e6, 1e9), (234_912, 5e6), (7e9, 2e12)):
        got = fn(n, d)
        assert isinstance(got, (int, float)) and not isinstance(got, bool), f"return a number, got {got!r}"
        want = training_flops(n, d)
        if math.isclose(got, want / 3, rel_tol=1e-6):
            raise AssertionError("that is the forward pass only (2·N·D): the backward pass costs about twice as much")
        assert math.isclose(got, want, rel_tol=1e-6), f"for N={n:g}, D={d:g} expected {want:.3g} FLOPs, got {got:.3g}"


def block_parameters_reference(n_embd: int) -> int:
    """Parameters of one course Block with biases and a 4x MLP: 12 d^2 + 13 d."""
    d = n_embd
    attention = (d * 3 * d + 3 * d) + (d * d + d)
    mlp = (d * 4 * d + 4 * d) + (4 * d * d + d)
    layernorms = 2 * (2 * d)
    return attention + mlp + layernorms


def check_block_parameters(block_parameters: Callable[[int], int]) -> None:
    """``block_parameters(d)`` must equal the parameter count of a real ``Block`` of width d."""
    for d in (8, 64, 128, 192, 768):
        real = sum(p.numel() for p in Block(GPTConfig(vocab_size=2, n_embd=d, n_head=1)).parameters())
        got = block_parameters(d)
        assert isinstance(got, int) and not isinstance(got, bool), \
            f"block_parameters({d}) returned {got!r}; return a whole number (int)"
        assert got == real, (f"block_parameters({d}) = {got:,}, but a real block of width {d} has {real:,} "
                             f"parameters (off by {got - real:+,})")


def check_learning_rate(lr: float, data: torch.Tensor, vocab_size: int, target: float,
                        steps: int = 150) -> None:
    """Train the tiny model at ``lr`` for ``steps`` steps; its final loss must be below ``target``."""
    assert isinstance(lr, (int, float)) and not isinstance(lr, bool), f"lr must be a number, got {lr!r}"
    assert math.isfinite(lr) and 0 < lr <= 100, f"lr must be in (0, 100], got {lr!r}"
    losses = tiny_run(data, vocab_size, float(lr), steps=steps)
    end = final_loss(losses)
    assert end < target, (f"with lr = {lr:g} the loss after {steps} steps is {end:.2f}, not below {target:.2f}: "
                          + ("it barely moved, the steps are too small" if end > losses[0] - 0.5 else
                             "it learned, but not enough; or it was unstable"))
