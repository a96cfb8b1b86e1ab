"""Companion of notebook 06 (the reversal curse): accuracy curves and bars, the rank histogram,
the wrong-answer and query helpers, and the exercise checkers.

The experiment itself (world, sentences, training, evaluation, ``run_experiment`` and its command
line) is the core module :mod:`course_utils.reversal`, which the command line also runs.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence

import torch

from ..model import GPT
from ..plots import LivePlot, grouped_bars
from ..reversal import (SEP, fill, flatten, rank_percentile, reverse_units,
                        sequence_logprobs)
from ..tokenizers import WordTokenizer
from ..world import Fact


# --------------------------------------------------------------------------- looking inside
@torch.no_grad()
def top_names(model: GPT, tok: WordTokenizer, world: Sequence[Fact], prompt: str, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` names of the world the model finds most likely after ``prompt``, with
    P(name | prompt) = P(first name) * P(surname | first name)."""
    if not isinstance(k, int) or not 1 <= k <= len(world):
        raise ValueError(f"k must be an integer in 1..{len(world)}, got {k!r}")
    words = prompt.split()
    if not words:
        raise ValueError("the prompt is empty; try 'the composer of <title> is called'")
    if len(words) + 3 > model.config.block_size:
        raise ValueError(f"the prompt has {len(words)} words; at most {model.config.block_size - 3} fit the model's context")
    tok.encode(words)                                  # clear error for unknown words
    names = [f.name for f in world]
    scores = sequence_logprobs(model, tok, [[SEP] + words] * len(names), names)
    best = scores.topk(k)
    return [(" ".join(names[i]), math.exp(v)) for v, i in zip(best.values.tolist(), best.indices.tolist())]


def check_wrong_answers(result: dict) -> dict:
    """The wrong reverse answers about n2d facts (where the model must name someone): how many are
    a well-formed name (a first name followed by a surname of this world) and how many are exactly
    the full name of another person. Fluent, confident, wrong."""
    world = result["world"]
    names = {" ".join(f.name) for f in world}
    firsts, lasts = {f.name[0] for f in world}, {f.name[1] for f in world}
    wrong = [e for e in result["reverse_examples"] if e["subset"] == "n2d" and not e["correct"]]
    formed = [e for e in wrong if len(e["model"].split()) == 2 and e["model"].split()[0] in firsts
              and e["model"].split()[1] in lasts]
    other = [e for e in wrong if e["model"] in names]
    n = max(1, len(wrong))
    return {"wrong": len(wrong), "well_formed": len(formed), "other_person": len(other),
            "well_formed_share": len(formed) / n, "other_person_share": len(other) / n}


# --------------------------------------------------------------------------- plots
ACC_KEYS = (("same_direction_accuracy_n2d", "same direction, N2D facts", "#1f77b4", "solid"),
            ("same_direction_accuracy_d2n", "same direction, D2N facts", "#17becf", "dash"),
            ("reverse_accuracy_n2d", "reverse, N2D facts", "#d62728", "solid"),
            ("reverse_accuracy_d2n", "reverse, D2N facts", "#ff7f0e", "dash"))


def accuracy_curves(history: Sequence[dict], title: str = "Accuracy during training"):
    """Same-direction and reverse exact-match accuracy (per subset) against training step."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label, color, dash in ACC_KEYS:
        fig.add_trace(go.Scatter(x=[r["step"] for r in history if key in r],
                                 y=[100 * r[key] for r in history if key in r], name=label,
                                 mode="lines+markers", line=dict(color=color, dash=dash)))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="exact match (%)",
                      yaxis_range=[-3, 103], height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def LiveAccuracyPlot(title: str = "Reversal curse: accuracy during training") -> LivePlot:
    """``accuracy_curves`` that grows while the model trains: pass ``plot.update`` as callback."""
    return LivePlot({key: label for key, label, _, _ in ACC_KEYS}, title=title, x_title="training step",
                    y_title="exact match (%)", y_scale=100, y_range=(-3, 103),
                    lines={key: dict(color=color, dash=dash) for key, _, color, dash in ACC_KEYS})


def accuracy_bars(results: dict[str, dict], title: str = "Four accuracies per recipe"):
    """Grouped bars: for each recipe, same/reverse exact match on the N2D and D2N subsets."""
    groups = {label: {r: 100 * results[r][key] for r in results} for key, label, _, _ in ACC_KEYS}
    return grouped_bars(groups, title=title, y_title="exact match (%)", y_range=(0, 112), text_format="%{y:.0f}",
                        colors={label: color for _, label, color, _ in ACC_KEYS})


def rank_histogram(result: dict, title: str = "Where does the correct answer rank?"):
    """Histogram of the correct answer's rank percentile, same direction against reverse."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key, label, color in (("same_direction_rank_percentiles", "same direction", "#1f77b4"),
                              ("reverse_rank_percentiles", "reverse direction", "#d62728")):
        fig.add_trace(go.Histogram(x=result[key], name=label, marker_color=color, opacity=0.7,
                                   xbins=dict(start=0, end=100.01, size=10)))
    fig.add_vline(x=50, line_dash="dot", annotation_text="chance")
    fig.update_layout(title=title, barmode="overlay", height=360,
                      xaxis_title="rank percentile of the correct answer among 20 wrong ones (0 = ranked first)",
                      yaxis_title="questions", margin=dict(l=60, r=20, t=50, b=50))
    return fig


# --------------------------------------------------------------------------- exercise checkers
def check_reverse_units(fn: Callable[[Sequence], list[str]]) -> None:
    """Exercise: entity-preserving reversal."""
    cases = [[("Hilvor", "Mornelka"), "is", "the", "composer", "of",
              ("Ithquinic", "Pelfenum"), "."],
             ["ever", "heard", "of", ("Ka", "Lis"), "?"], [("A", "B")], ["a", "b", "c"]]
    for units in cases:
        got = fn(units)
        want = reverse_units(units)
        assert isinstance(got, list), f"return a list of words, got {type(got).__name__}"
        if got == flatten(units)[::-1] and got != want:
            raise AssertionError("you also reversed the words inside names and titles: 'Mornelka Hilvor' is a "
                                 "different name; keep each tuple (name, title) in its own order")
        assert got == want, f"for {units} expected {want}, got {got}"


def check_rank_percentile(fn: Callable[[float, Sequence[float]], float]) -> None:
    """Exercise: Berglund's rank percentile (ties count half)."""
    cases = [(-1.0, [-5.0, -4.0, -3.0]), (-9.0, [-1.0, -2.0]), (-2.0, [-1.0, -3.0, -2.0, -4.0]),
             (0.0, [0.0]), (-3.0, [-1.0, -5.0])]
    for correct, others in cases:
        got, want = fn(correct, others), rank_percentile(correct, others)
        assert isinstance(got, (int, float)), f"return a number, got {type(got).__name__}"
        assert abs(got - want) < 1e-9, (f"rank_percentile({correct}, {others}) should be {want:g} "
                                        f"(percent of wrong answers scoring higher; ties count half), got {got}")
    g = random.Random(0)
    chance = [fn(g.gauss(0, 1), [g.gauss(0, 1) for _ in range(20)]) for _ in range(2000)]
    assert abs(sum(chance) / len(chance) - 50) < 3, "a random correct answer should average 50 (chance)"


def check_answer_logprob(fn: Callable, model: GPT, tok: WordTokenizer, world: Sequence[Fact]) -> None:
    """Exercise: log P(multi-token answer | prompt) by the chain rule."""
    for f in list(world)[:3] + list(world)[-3:]:
        for prompt, answer in ((fill("{n} is remembered as", f), f.description), (fill("{d} is called", f), f.name)):
            prompt = [SEP] + flatten(prompt)
            got = fn(model, tok, prompt, list(answer))
            want = sequence_logprobs(model, tok, [prompt], [answer])[0].item()
            got = float(got)
            assert got <= 1e-6, f"a log-probability is <= 0, got {got:.3f}"
            assert abs(got - want) < 1e-3, (f"log P({' '.join(answer)!r} | {' '.join(prompt)!r}) should be "
                                            f"{want:.4f}, got {got:.4f}")
