"""Notebook 15 (evaluation), sections 4 and 5: a contaminated benchmark and pass@k.

Split from :mod:`course_utils.lessons.evaluation` (which re-exports everything here) to keep each
file short. A benchmark of invented facts that nobody can know without reading them; two small
word-level GPTs trained with ``train.train``, one with the test set in its training data; the
perplexity gap that gives contamination away; exact and estimated pass@k.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from .. import metrics, plots, train
from ..model import GPT
from ..runtime import seeded
from ..tokenizers import WordTokenizer
from ..world import make_people

__all__ = ["Benchmark", "make_benchmark", "fact_words", "training_stream", "city_logprobs", "mc_accuracy",
           "fact_loss", "eval_fn", "train_model", "live_plot", "correct_probs", "pass_at_k_estimates",
           "pass_at_k_curves", "pass_at_k_figure"]


# ------------------------------------------------------------------------ 4. contamination
@dataclass
class Benchmark:
    """Facts "NAME lives in CITY ." about invented people: a public test set, a fresh set of the same kind,
    and "web" text the model learns the format from. Nobody can know these cities without reading them."""
    web: list[tuple[str, str]]
    test: list[tuple[str, str]]
    fresh: list[tuple[str, str]]
    cities: list[str]
    tokenizer: WordTokenizer


def make_benchmark(n_web: int = 40, n_test: int = 20, n_fresh: int = 20, n_cities: int = 8,
                   seed: int = 0) -> Benchmark:
    for name, v, lo in (("n_web", n_web, 10), ("n_test", n_test, 5), ("n_fresh", n_fresh, 5)):
        if not isinstance(v, int) or not lo <= v <= 2000:
            raise ValueError(f"{name} must be an integer in [{lo}, 2000], got {v!r}")
    people = make_people(n_web + n_test + n_fresh, seed=seed, n_cities=n_cities)
    facts = [("-".join(p.name), p.city) for p in people]
    cities = sorted({p.city for p in people})
    tok = WordTokenizer([w for f in facts for w in f] + ["lives", "in", "."])
    return Benchmark(facts[:n_web], facts[n_web:n_web + n_test], facts[n_web + n_test:], cities, tok)


def fact_words(fact: tuple[str, str]) -> list[str]:
    return [fact[0], "lives", "in", fact[1], "."]


def training_stream(bench: Benchmark, contaminated: bool, copies: int = 3, epochs: int = 40,
                    seed: int = 0) -> torch.Tensor:
    """Token ids of the training text: the web facts, shuffled anew each epoch, plus (if ``contaminated``)
    ``copies`` copies of the test set mixed in (a leaked benchmark is copied onto many pages)."""
    rng = random.Random(seed)
    facts = bench.web + (bench.test * copies if contaminated else [])
    words: list[str] = []
    for _ in range(epochs):
        order = facts[:]
        rng.shuffle(order)
        for f in order:
            words += fact_words(f)
    return torch.tensor(bench.tokenizer.encode(words))


@torch.no_grad()
def city_logprobs(model: GPT, bench: Benchmark, facts) -> torch.Tensor:
    """(len(facts), n_cities): log p(city | "NAME lives in") over the benchmark's cities (renormalised)."""
    tok = bench.tokenizer
    x = torch.tensor([tok.encode([f[0], "lives", "in"]) for f in facts])
    logits = model(x).logits[:, -1].float()
    city_ids = torch.tensor([tok.stoi[c] for c in bench.cities])
    return logits[:, city_ids].log_softmax(-1)


def mc_accuracy(model: GPT, bench: Benchmark, facts) -> float:
    """Multiple choice by likelihood (as many leaderboards score): the most likely city is the answer."""
    pred = city_logprobs(model, bench, facts).argmax(-1)
    gold = torch.tensor([bench.cities.index(f[1]) for f in facts])
    return (pred == gold).float().mean().item()


@torch.no_grad()
def fact_loss(model: GPT, bench: Benchmark, facts) -> float:
    """Mean loss (nats per token) of the whole sentences "NAME lives in CITY ." after a "." context."""
    tok = bench.tokenizer
    rows = torch.tensor([tok.encode(["."] + fact_words(f)) for f in facts])
    return model(rows[:, :-1], rows[:, 1:]).loss.item()


def eval_fn(bench: Benchmark):
    """The ``train.train`` hook: test and fresh accuracy and loss at every evaluation."""
    return lambda model: {"test_acc": mc_accuracy(model, bench, bench.test),
                          "fresh_acc": mc_accuracy(model, bench, bench.fresh),
                          "test_loss": fact_loss(model, bench, bench.test),
                          "fresh_loss": fact_loss(model, bench, bench.fresh)}


def train_model(bench: Benchmark, contaminated: bool, steps: int = 300, seed: int = 0, callback=None, lr: float = 3e-3,
                progress: bool = True) -> tuple[GPT, list[dict]]:
    """A small word-level GPT (the CPU recipe) trained briefly with ``train.train``."""
    model_cfg, cfg = train.cpu_recipe(bench.tokenizer.vocab_size, steps=steps, seed=seed, block_size=20,
                                      eval_interval=max(1, steps // 6), warmup_steps=min(50, steps // 5),
                                      lr=lr)
    with seeded(seed):                     # the model's initial weights from this seed, globals untouched
        model = GPT(model_cfg)
    data = training_stream(bench, contaminated, seed=seed)
    history = train.train(model, data, None, cfg, callback=callback, progress=progress,
                          eval_fn=eval_fn(bench), desc="contaminated" if contaminated else "clean")
    return model, history


def live_plot(title: str):
    return plots.LivePlot({"test_acc": "test set (public)", "fresh_acc": "fresh questions"}, title=title,
                          y_title="multiple-choice accuracy", y_range=[0, 1.05],
                          colors={"test_acc": plots.PALETTE[3], "fresh_acc": plots.PALETTE[0]})


# ------------------------------------------------------------------------ 5. pass@k
def correct_probs(model: GPT, bench: Benchmark, facts, temperature: float) -> torch.Tensor:
    """Exact probability that one sampled city is right, per question, at ``temperature`` (over the cities)."""
    if not (isinstance(temperature, (int, float)) and 0.05 <= temperature <= 5):
        raise ValueError(f"temperature must be a number in [0.05, 5], got {temperature!r}")
    logp = city_logprobs(model, bench, facts) / temperature
    gold = torch.tensor([bench.cities.index(f[1]) for f in facts])
    return logp.softmax(-1).gather(-1, gold[:, None])[:, 0]


def pass_at_k_estimates(p: torch.Tensor, n: int, k: int, trials: int = 200, seed: int = 0) -> dict:
    """Many re-runs of "sample ``n`` answers per question, count the right ones ``c``": the mean of the
    unbiased estimator 1 - C(n-c,k)/C(n,k) and of the naive plug-in 1 - (1 - c/n)^k, against the truth
    1 - (1 - p)^k (known here because the answer is one token)."""
    if not (isinstance(n, int) and isinstance(k, int) and 1 <= k <= n <= 1000):
        raise ValueError(f"need integers 1 <= k <= n <= 1000, got n={n!r}, k={k!r}")
    g = torch.Generator().manual_seed(seed)
    c = torch.binomial(p.double().expand(trials, -1) * 0 + n, p.double().expand(trials, -1), generator=g).long()
    unbiased = torch.tensor([[metrics.pass_at_k(n, int(ci), k) for ci in row] for row in c]).mean(-1)
    naive = (1 - (1 - c.double() / n) ** k).mean(-1)
    truth = (1 - (1 - p.double()) ** k).mean().item()
    return {"truth": truth, "unbiased": unbiased.mean().item(), "naive": naive.mean().item(),
            "unbiased_spread": unbiased.std().item(), "naive_spread": naive.std().item()}


def pass_at_k_curves(model: GPT, bench: Benchmark, facts, temperatures=(0.3, 1.0, 2.0), ks=(1, 2, 3, 5, 8)) -> dict:
    """Exact pass@k (mean over questions) for each temperature: {T: {k: value}}."""
    out = {}
    for t in temperatures:
        p = correct_probs(model, bench, facts, t).double()
        out[f"T={t:g}"] = {k: (1 - (1 - p) ** k).mean().item() for k in ks}
    return out


def pass_at_k_figure(curves: dict):
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, vals) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(vals), y=list(vals.values()), mode="lines+markers", name=name,
                                 line=dict(color=plots.PALETTE[i % len(plots.PALETTE)])))
    fig.update_layout(title="pass@k on fresh questions depends on k and on the temperature", xaxis_title="k",
                      yaxis_title="pass@k", yaxis_range=[0, 1.05], height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig
