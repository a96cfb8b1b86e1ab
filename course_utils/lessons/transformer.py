"""Companion of notebook 08, "Inside the transformer": what embeddings, positions, residuals,
LayerNorm and the MLP are for, and why GPT is a decoder.

Experiment drivers (each trains through ``course_utils.train.train``), figures, the embedding
explorer and the parameter calculator (``transformer_params``), and the exercise checkers.
``python -m course_utils.lessons.transformer`` re-makes the shipped sweep results
(``course_utils/data/transformer_results.json``).
"""
from __future__ import annotations

import functools
import json
import pathlib
import random
import statistics
import time

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from course_utils import assets, plots, train
from course_utils.model import GPT, Block, GPTConfig, attention, causal_mask, rope, sinusoidal_positions
from course_utils.objectives import masked_batch_fn, masked_lm_loss
from course_utils.runtime import seeded
from course_utils.tokenizers import CharTokenizer

RESULTS = pathlib.Path(__file__).resolve().parents[1] / "data" / "transformer_results.json"
POSITIONS = ("none", "learned", "sinusoidal", "rope")
# Experiment 3: a deep, narrow model, so that depth is what matters; 200 steps of the CPU recipe.
DEPTH = dict(n_layer=6, n_embd=32, n_head=4, steps=200, eval_interval=25, eval_batches=10)
ABLATIONS = {"residual + LayerNorm": {}, "no residual": dict(residual=False), "no LayerNorm": dict(layernorm=False)}
# Experiment 5: the CPU recipe's network, trained as a decoder (causal, next token) or an encoder (masked tokens).
# Windows of 16 characters and batches of 64: masked-token training gets only 15 % of the positions as
# targets, so it needs many windows per step (pilot: with batches of 16 it stays at the unigram guess).
ENC_DEC = dict(n_embd=64, block_size=16, batch_size=64, steps=600, eval_interval=50, eval_batches=10)


# ----------------------------------------------------------------------------- data and models
@functools.lru_cache(maxsize=1)
def corpus() -> tuple[CharTokenizer, torch.Tensor, torch.Tensor]:
    """(character tokenizer, train ids, validation ids) of the course's small Shakespeare corpus."""
    tok = CharTokenizer(assets.corpus_alphabet())
    ids = lambda split: torch.tensor(tok.encode(assets.shakespeare("small", split)))
    return tok, ids("train"), ids("val")


def new_model(cfg: GPTConfig, seed: int) -> GPT:
    """A freshly initialised GPT; ``seed`` fixes its weights without touching the global generator."""
    with seeded(seed):
        return GPT(cfg)


def train_variant(seed: int = 0, callback=None, desc: str = "training", progress: bool = True, **settings) -> dict:
    """Train the CPU recipe with ``settings`` (any GPTConfig/TrainConfig field) on Shakespeare.

    Returns {"model", "history", "val_loss" (last evaluation), "parameters", "seconds"}."""
    tok, tr, va = corpus()
    model_cfg, cfg = train.cpu_recipe(tok.vocab_size, seed=seed, **settings)
    model = new_model(model_cfg, seed)
    t0 = time.process_time()
    history = train.train(model, tr, va, cfg, callback=callback, desc=desc, progress=progress)
    return {"model": model, "history": history, "val_loss": history[-1]["val_loss"],
            "parameters": model.num_parameters(), "seconds": time.process_time() - t0,
            "stopped": train.stopped_early(history)}


def renamed(callback, key: str):
    """A train callback that files each record's validation loss under ``key`` (several runs, one LivePlot)."""
    return None if callback is None else (lambda r: callback({"step": r["step"], key: r["val_loss"]}))


# ----------------------------------------------------------------------------- 2. positions
@torch.no_grad()
def shuffle_test(model: GPT, ids: list[int], seed: int = 0) -> float:
    """Largest change of the outputs when the input is shuffled (0 = the model reads a bag of tokens).

    A decoder (causal): the context before the last token is shuffled and the next-token logits compared.
    An encoder (bidirectional): the whole input is shuffled and each token's logits compared with its own."""
    rng = random.Random(seed)
    if model.config.causal:
        head, last = list(ids[:-1]), ids[-1]
        a = model(torch.tensor([head + [last]])).logits[0, -1]
        b = model(torch.tensor([rng.sample(head, len(head)) + [last]])).logits[0, -1]
        return (a - b).abs().max().item()
    perm = rng.sample(range(len(ids)), len(ids))
    a = model(torch.tensor([ids])).logits[0, perm]
    b = model(torch.tensor([[ids[i] for i in perm]])).logits[0]
    return (a - b).abs().max().item()


@torch.no_grad()
def rope_scores(model: GPT, ids: list[int], starts=(0, 10, 100)) -> dict:
    """Layer-0, head-0 attention scores of ``ids`` placed at several absolute positions with RoPE.

    Returns {start: (T, T) score matrix}: with RoPE the scores depend only on the offset, so all match."""
    block = model.blocks[0]
    x = block.ln1(model.tok_emb(torch.tensor([ids])))
    C = x.size(-1)
    q, k, _ = block.attn.qkv(x).split(C, dim=2)
    d = C // block.attn.n_head
    q, k = q[0, :, :d], k[0, :, :d]
    return {s: rope(q, s) @ rope(k, s).T / d ** 0.5 for s in starts}


def score_by_position(q: torch.Tensor, k: torch.Tensor, n: int = 24, use_rope: bool = True) -> torch.Tensor:
    """Score of one query vector at position m against one key vector at position n, for all m, n < ``n``."""
    qs, ks = q.expand(n, -1), k.expand(n, -1)
    if use_rope:
        qs, ks = rope(qs), rope(ks)
    return qs @ ks.T / q.numel() ** 0.5


# ----------------------------------------------------------------------------- 3. depth
def depth_runs(seed: int = 0, callback=None, progress: bool = True) -> dict:
    """Experiment 3: the deep model with both, without residuals, without LayerNorm; same budget."""
    return {name: train_variant(seed, renamed(callback, name), name, progress, **DEPTH, **kw)
            for name, kw in ABLATIONS.items()}


def grad_norms_at_init(seed: int = 0, batches: int = 4) -> dict[str, list[float]]:
    """Gradient norm of each block's parameters at initialisation (mean over a few batches), per variant."""
    tok, tr, _ = corpus()
    out = {}
    for name, kw in ABLATIONS.items():
        model_cfg, cfg = train.cpu_recipe(tok.vocab_size, **DEPTH, **kw)
        model = new_model(model_cfg, seed)
        g = torch.Generator().manual_seed(seed)
        norms = torch.zeros(model_cfg.n_layer)
        for _ in range(batches):
            model.zero_grad()
            model(*train.get_batch(tr, model_cfg.block_size, cfg.batch_size, g)).loss.backward()
            norms += torch.stack([torch.cat([p.grad.flatten() for p in b.parameters()]).norm() for b in model.blocks])
        out[name] = (norms / batches).tolist()
    return out


def grad_norm_figure(norms: dict[str, list[float]]) -> go.Figure:
    groups = {name: {f"block {i + 1}": v for i, v in enumerate(vals)} for name, vals in norms.items()}
    return plots.grouped_bars(groups, title="Gradient norm per block at initialisation",
                              y_title="gradient norm (log scale)", log_y=True)


def final_losses_figure(runs: dict, title: str) -> go.Figure:
    return plots.bars(list(runs), [r["val_loss"] for r in runs.values()], title=title,
                      y_title="validation loss (nats per character)", text_format="%{y:.2f}",
                      colors=list(plots.PALETTE[: len(runs)]))


# ----------------------------------------------------------------------------- 4. parameters
def parameter_pie(model: GPT, title: str) -> go.Figure:
    parts = {k: v for k, v in model.parameter_breakdown().items() if v}
    fig = go.Figure(go.Pie(labels=list(parts), values=list(parts.values()), sort=False,
                           marker=dict(colors=list(plots.PALETTE)), textinfo="label+percent"))
    fig.update_layout(title=title, height=380, margin=dict(l=20, r=20, t=50, b=20))
    return fig


# ----------------------------------------------------------------------------- 5. encoder vs decoder
def probe_windows(data: torch.Tensor, T: int = 32, n: int = 1024, seed: int = 0) -> torch.Tensor:
    """``n`` random windows of ``T`` tokens (fixed by ``seed``) to probe a model with."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(data) - T, (n,), generator=g)
    return data[starts[:, None] + torch.arange(T)]


@torch.no_grad()
def predict_at(model: GPT, kind: str, windows: torch.Tensor, pos: int, mask_id: int) -> torch.Tensor:
    """Log-probabilities (n, vocab) of the token at ``pos`` of each window.

    The decoder reads the tokens before ``pos`` and predicts the next one; the encoder reads the
    whole window with the token at ``pos`` replaced by [MASK] (left *and* right context)."""
    if kind == "decoder":
        logits = model(windows[:, :pos]).logits[:, -1]
    elif kind == "encoder":
        x = windows.clone()
        x[:, pos] = mask_id
        logits = model(x).logits[:, pos]
    else:
        raise ValueError(f"kind must be 'encoder' or 'decoder', got {kind!r}")
    return logits[:, :mask_id].log_softmax(-1)          # never predict [MASK] itself


def probe(model: GPT, kind: str, windows: torch.Tensor, mask_id: int) -> dict:
    """Accuracy at a masked middle character, and at the next character after a context (left to right)."""
    T = windows.size(1)
    mid = predict_at(model, kind, windows, T // 2, mask_id)
    nxt = predict_at(model, kind, windows[:, : T // 2 + 1], T // 2, mask_id)   # nothing to the right
    return {"fill_middle": (mid.argmax(-1) == windows[:, T // 2]).float().mean().item(),
            "next_char": (nxt.argmax(-1) == windows[:, T // 2]).float().mean().item()}


def enc_dec_runs(seed: int = 0, callback=None, progress: bool = True, steps: int | None = None) -> dict:
    """Experiment 5: the same network trained as a decoder (causal, next token) and as an encoder
    (bidirectional, BERT masked tokens), same steps and batches; both probed during training."""
    tok, tr, va = corpus()
    mask_id = tok.vocab_size                      # one extra id for [MASK] (both models have it)
    windows = probe_windows(va, T=ENC_DEC["block_size"], seed=seed + 100)
    runs = {}
    for kind in ("decoder", "encoder"):
        model_cfg, cfg = train.cpu_recipe(mask_id + 1, seed=seed, causal=kind == "decoder",
                                          **{**ENC_DEC, **({"steps": steps} if steps else {})})
        model = new_model(model_cfg, seed)
        extra = {}
        if kind == "encoder":
            extra = dict(batch_fn=masked_batch_fn(tr, model_cfg.block_size, cfg.batch_size, mask_id, mask_id),
                         loss_fn=masked_lm_loss)
        cb = None if callback is None else (
            lambda r, kind=kind: callback({"step": r["step"], **{f"{kind} {k}": r[k] for k in ("fill_middle", "next_char")}}))
        t0 = time.process_time()
        history = train.train(model, None if extra else tr, None, cfg, callback=cb, progress=progress, desc=kind,
                              eval_fn=lambda m, kind=kind: probe(m, kind, windows, mask_id), **extra)
        runs[kind] = {"model": model, "history": history, **probe(model, kind, windows, mask_id),
                      "seconds": time.process_time() - t0, "stopped": train.stopped_early(history)}
    runs["mask_id"] = mask_id
    return runs


@torch.no_grad()
def continue_text(model: GPT, kind: str, prompt: str, n: int = 60, mask_id: int | None = None) -> str:
    """Greedy left-to-right continuation; the encoder predicts a [MASK] appended after the text each step."""
    tok = corpus()[0]
    ids = tok.encode(prompt)
    if kind == "decoder":
        return tok.decode(model.generate(torch.tensor([ids]), n, temperature=0)[0, len(ids):].tolist())
    T = model.config.block_size
    for _ in range(n):
        ctx = ids[-(T - 1):] + [mask_id]
        ids.append(int(model(torch.tensor([ctx])).logits[0, -1, :mask_id].argmax()))
    return tok.decode(ids[len(tok.encode(prompt)):])


def masks_figure(T: int = 8) -> go.Figure:
    """The decoder's causal mask next to the encoder's full (bidirectional) mask."""
    fig = make_subplots(1, 2, subplot_titles=("decoder (GPT): causal", "encoder (BERT): bidirectional"))
    for col, m in enumerate((causal_mask(T), torch.ones(T, T, dtype=torch.bool)), 1):
        fig.add_trace(go.Heatmap(z=m.int().tolist(), colorscale=[[0, "#f0f0f0"], [1, plots.PALETTE[0]]],
                                 showscale=False, hovertemplate="query %{y} → key %{x}: %{z}<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="key position", row=1, col=col)
        fig.update_yaxes(title_text="query position", autorange="reversed", row=1, col=col)
    fig.update_layout(title="Attention masks: which positions may each position see?", height=360)
    return fig


def encoder_decoder_diagram() -> go.Figure:
    """The original transformer for translation (Vaswani et al. 2017, Figure 1), as boxes and arrows."""
    fig = go.Figure()
    boxes = {  # name: (x0, y0, x1, y1, colour)
        "source tokens: « le chat dort »": (0, 0, 4, 0.8, PALETTE_GREY),
        "self-attention (bidirectional)": (0, 1.6, 4, 2.4, plots.PALETTE[0]),
        "MLP": (0, 2.8, 4, 3.6, plots.PALETTE[2]),
        "target so far: « the cat »": (6, 0, 10, 0.8, PALETTE_GREY),
        "masked self-attention (causal)": (6, 1.2, 10, 2.0, plots.PALETTE[1]),
        "cross-attention (queries: decoder, keys/values: encoder)": (6, 2.4, 10, 3.2, plots.PALETTE[3]),
        "MLP ": (6, 3.6, 10, 4.4, plots.PALETTE[2]),
        "next target token: « sleeps »": (6, 5.2, 10, 6.0, PALETTE_GREY),
    }
    for text, (x0, y0, x1, y1, color) in boxes.items():
        fig.add_shape(type="rect", x0=x0, y0=y0, x1=x1, y1=y1, fillcolor=color, opacity=0.35, line_color=color)
        fig.add_annotation(x=(x0 + x1) / 2, y=(y0 + y1) / 2, text=text.strip(), showarrow=False, font_size=11)
    arrows = [((2, 0.8), (2, 1.6)), ((2, 2.4), (2, 2.8)), ((8, 0.8), (8, 1.2)), ((8, 2.0), (8, 2.4)),
              ((8, 3.2), (8, 3.6)), ((8, 4.4), (8, 5.2)), ((2, 3.6), (6, 2.8))]
    for (x0, y0), (x1, y1) in arrows:
        fig.add_annotation(x=x1, y=y1, ax=x0, ay=y0, xref="x", yref="y", axref="x", ayref="y",
                           showarrow=True, arrowhead=3, arrowwidth=1.5, text="")
    fig.add_annotation(x=2, y=4.3, text="<b>encoder</b> (× N layers)", showarrow=False)
    fig.add_annotation(x=8, y=6.6, text="<b>decoder</b> (× N layers)", showarrow=False)
    fig.add_trace(go.Scatter(x=[0, 10], y=[0, 6.8], mode="markers", marker_opacity=0, hoverinfo="skip",
                             showlegend=False))
    fig.update_xaxes(visible=False, range=[-0.5, 10.5])
    fig.update_yaxes(visible=False, range=[-0.3, 7])
    fig.update_layout(title="The original encoder–decoder transformer (translation)", height=440,
                      plot_bgcolor="white", margin=dict(l=20, r=20, t=50, b=20))
    return fig


PALETTE_GREY = "#bab0ac"


# ----------------------------------------------------------------------------- exercise checkers
def check_rope(fn) -> None:
    """Exercise 1: ``fn(x, start)`` rotates each feature pair of x (..., T, d) as ``model.rope`` does."""
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0))
    for start in (0, 3):
        got = fn(x.clone(), start)
        assert isinstance(got, torch.Tensor) and got.shape == x.shape, \
            f"return a tensor of shape {tuple(x.shape)}, got {getattr(got, 'shape', type(got).__name__)}"
        assert torch.allclose(got.norm(dim=-1), x.norm(dim=-1), atol=1e-4), \
            "a rotation keeps each vector's length; yours changes it"
        assert torch.allclose(got, rope(x, start), atol=1e-5), \
            f"with start={start} your rotation differs from RoPE (largest gap {(got - rope(x, start)).abs().max():.3g})"


def check_sinusoidal(fn) -> None:
    """Exercise 2: ``fn(T, d)`` is the (T, d) table PE[p, 2i] = sin(p / 10000^(2i/d)),
    PE[p, 2i+1] = cos(p / 10000^(2i/d)) (Vaswani et al. 2017, section 3.5)."""
    for T, d in ((5, 8), (16, 32), (3, 96)):
        got = fn(T, d)
        assert isinstance(got, torch.Tensor) and got.shape == (T, d), \
            f"return a tensor of shape ({T}, {d}), got {getattr(got, 'shape', type(got).__name__)}"
        want = sinusoidal_positions(T, d)
        assert torch.allclose(got[0], want[0], atol=1e-5), \
            "position 0 should be sin(0) = 0 in the even columns and cos(0) = 1 in the odd ones"
        assert torch.allclose(got, want, atol=1e-4), \
            f"T={T}, d={d}: your table differs from the paper's (largest gap {(got - want).abs().max():.3g}); " \
            "check which columns get sin, and the exponent 2i/d"


def check_padding_mask(fn) -> None:
    """Exercise 3: ``fn(lengths, T)`` is the (B, T, T) bool mask of a bidirectional encoder over a
    right-padded batch: True where key j is a real token of sequence b (j < lengths[b])."""
    lengths, T = [5, 2, 3], 5
    got = fn(lengths, T)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.bool and got.shape == (3, T, T), \
        f"return a (3, {T}, {T}) tensor of dtype torch.bool, got {getattr(got, 'dtype', type(got).__name__)} " \
        f"{tuple(getattr(got, 'shape', ()))}"
    want = (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])[:, None, :].expand(3, T, T)
    assert torch.equal(got, want), f"wrong mask for lengths {lengths}:\n{got.int()}"
    # the point of the mask: a padded sequence's real tokens get the outputs they get alone
    x = torch.randn(3, T, 4, generator=torch.Generator().manual_seed(2))
    out = attention(x, x, x, got)[0]
    for b, n in enumerate(lengths):
        alone = attention(x[b:b + 1, :n], x[b:b + 1, :n], x[b:b + 1, :n])[0]
        assert torch.allclose(out[b, :n], alone[0], atol=1e-5), "with your mask the padding still changes the outputs"


# ----------------------------------------------------------------------------- shipped sweep results
SWEEP = dict(steps=600, eval_interval=100, eval_batches=20)
LONG_ENC_DEC_STEPS = 1500


def summary(run: dict) -> dict:
    """The JSON-safe part of a run (no model)."""
    return {k: v for k, v in run.items() if k != "model"}


def load_results() -> dict:
    return json.loads(RESULTS.read_text(encoding="utf-8"))


def mean_by(runs: list[dict], key: str, value: str = "val_loss") -> dict[str, float]:
    """{run[key]: mean of run[value] over the seeds}, in the order first seen."""
    names = list(dict.fromkeys(r[key] for r in runs))
    return {n: statistics.mean(r[value] for r in runs if r[key] == n) for n in names}


def main(seeds=(0, 1), parts=("positions", "mlp", "depth_runs", "enc_dec_runs")) -> dict:
    """Re-make ``course_utils/data/transformer_results.json`` (about 5 minutes of CPU on one thread).

    ``parts`` re-makes only those sections of an existing file (``--parts enc_dec_runs``); every run is
    seeded, so the full command reproduces all of them."""
    import platform
    import sys

    torch.set_num_threads(1)
    old = load_results() if RESULTS.exists() and len(parts) < 4 else {}
    out = {"command": "python -m course_utils.lessons.transformer", "torch": torch.__version__,
           "python": platform.python_version(), "seeds": list(seeds), "sweep": SWEEP, "depth": DEPTH,
           "enc_dec": {**ENC_DEC, "steps": LONG_ENC_DEC_STEPS}}
    out.update({k: ([] if k in parts else old[k]) for k in ("positions", "mlp", "depth_runs", "enc_dec_runs")})
    for seed in seeds:
        for pos in POSITIONS if "positions" in parts else ():
            run = train_variant(seed, desc=f"{pos} seed {seed}", progress=False, pos_encoding=pos, **SWEEP)
            out["positions"].append({"pos_encoding": pos, "seed": seed, **summary(run)})
            print(pos, seed, round(run["val_loss"], 3), file=sys.stderr, flush=True)
        for mlp in (True, False) if "mlp" in parts else ():
            run = train_variant(seed, progress=False, mlp=mlp, **SWEEP)
            out["mlp"].append({"blocks": "attention + MLP" if mlp else "attention only", "seed": seed, **summary(run)})
        for name, run in depth_runs(seed, progress=False).items() if "depth_runs" in parts else ():
            out["depth_runs"].append({"variant": name, "seed": seed, **summary(run)})
    for seed in seeds if "enc_dec_runs" in parts else ():
        runs = enc_dec_runs(seed, progress=False, steps=LONG_ENC_DEC_STEPS)
        for kind in ("decoder", "encoder"):
            out["enc_dec_runs"].append({"kind": kind, "seed": seed, **summary(runs[kind])})
            print(kind, seed, runs[kind]["fill_middle"], runs[kind]["next_char"], file=sys.stderr, flush=True)
    RESULTS.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


# The embedding explorer and the parameter calculator live in a sibling module; re-exported here so the
# notebook keeps one alias, ``lab``.
from .transformer_explorers import *  # noqa: E402,F401,F403


if __name__ == "__main__":
    import argparse

    cli = argparse.ArgumentParser(prog="python -m course_utils.lessons.transformer", description=main.__doc__)
    cli.add_argument("--parts", nargs="+", default=["positions", "mlp", "depth_runs", "enc_dec_runs"],
                     choices=["positions", "mlp", "depth_runs", "enc_dec_runs"])
    main(parts=tuple(cli.parse_args().parts))
