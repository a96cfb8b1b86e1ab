"""Notebook 02's companion, part 3: induction heads. A copying task of random tokens, an
attention-only GPT trained on it through ``train.train``, induction scores, the loss figure and the
attention-snapshot widget. Imported through :mod:`course_utils.lessons.attention`."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from ..model import GPT, GPTConfig
from ..plots import grouped_bars, replace_figure
from ..runtime import seeded
from ..train import TrainConfig, train

from .attention_heads import attention_heatmap


# ---------------------------------------------------------------------------
# Induction heads
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
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

    def collapse_steps(self, high: float = 3.5, low: float = 1.0) -> int | None:
        """Training steps between the repeated-part loss first falling below ``high`` and below ``low``
        (None if it never gets below ``low``): how sudden the drop is."""
        a, b = self.crossing(high), self.crossing(low)
        return None if a is None or b is None else b - a


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


def induction_score_figure(runs: dict[str, InductionRun], step: int | None = None,
                           title: str = "Induction and previous-token scores of every head") -> go.Figure:
    """Bars: for each model, layer and head, its induction score and its previous-token score
    (:func:`induction_scores`) on the probe, at training ``step`` (default: the last snapshot)."""
    groups: dict[str, dict[str, float]] = {"induction score": {}, "previous-token score": {}}
    for name, run in runs.items():
        at = max(run.snapshots) if step is None else step
        if at not in run.snapshots:
            raise ValueError(f"no snapshot at step {at!r} for {name}; saved steps: {sorted(run.snapshots)}")
        ind, prev = induction_scores(run.snapshots[at], run.probe_repeat)
        for layer in range(ind.shape[0]):
            for head in range(ind.shape[1]):
                label = f"{name} L{layer} H{head}"
                groups["induction score"][label] = float(ind[layer, head])
                groups["previous-token score"][label] = float(prev[layer, head])
    fig = grouped_bars(groups, title=title, y_title="mean attention weight", text_format="%{y:.2f}",
                       y_range=(0, 1.1))
    fig.update_xaxes(title="model, layer (L) and head (H)")
    return fig


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
