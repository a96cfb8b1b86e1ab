"""Companion of notebook 06 (the reversal curse): accuracy curves and bars, the rank histogram,
the result tables, the wrong-answer and query helpers, the query box and recipe widgets, the
in-context test (the fact in the prompt) and the exercise checkers.

The experiment itself (world, sentences, training, evaluation, ``run_experiment`` and its command
line) is the core module :mod:`course_utils.reversal`, which the command line also runs.
"""
from __future__ import annotations

import html
import math
import random
import statistics
from typing import Callable, Sequence

import torch

from ..lm import hf_forward
from ..model import GPT
from ..plots import LivePlot, error_html, grouped_bars, replace_figure
from ..reversal import (SEP, SUBSETS, fill, flatten, rank_percentile, reverse_units,
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


# --------------------------------------------------------------------------- tables
def _table(header: Sequence[str], rows: Sequence[Sequence]) -> "HTML":
    from IPython.display import HTML

    cells = lambda tag, row: "".join(f"<{tag}>{html.escape(str(v))}</{tag}>" for v in row)
    return HTML("<table><tr>" + cells("th", header) + "</tr>"
                + "".join("<tr>" + cells("td", r) + "</tr>" for r in rows) + "</table>")


def world_table(world: Sequence[Fact], per_subset: int = 3):
    """The first ``per_subset`` facts of each subset."""
    rows = [[s, str(f)] for s in SUBSETS for f in [g for g in world if g.subset == s][:per_subset]]
    return _table(["subset", f"fact ({per_subset} of {len(world) // len(SUBSETS)} per subset)"], rows)


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def results_table(result: dict):
    """The three tests (same direction, reverse exact match, reverse rank percentile) per subset."""
    rows = [[label, _pct(result[f"same_direction_accuracy{sfx}"]), _pct(result[f"reverse_accuracy{sfx}"]),
             f"{result[f'reverse_rank_percentile{sfx}']:.1f}"]
            for label, sfx in (("N2D facts", "_n2d"), ("D2N facts", "_d2n"), ("all", ""))]
    return _table(["", "same direction (held-out paraphrase)", "reverse, exact match",
                   "reverse, rank percentile (chance = 50)"], rows)


def wrong_answers_table(model: GPT, tok: WordTokenizer, result: dict, n: int = 8):
    """The first ``n`` reverse questions about N2D facts: the model's greedy answer, the probability
    it gives its top name, and the right answer."""
    world = result["world"]
    rows = []
    for e in [e for e in result["reverse_examples"] if e["subset"] == "n2d"][:n]:
        (_, p), = top_names(model, tok, world, e["prompt"], k=1)
        rows.append([e["prompt"] + " …", e["model"], f"{p:.0%}", e["answer"]])
    return _table(["question", "model says", "its probability", "right answer"], rows)


def top_name_confidence(model: GPT, tok: WordTokenizer, result: dict) -> float:
    """Mean probability the model gives its top name, over the reverse questions about N2D facts."""
    world = result["world"]
    return statistics.mean(top_names(model, tok, world, e["prompt"], k=1)[0][1]
                           for e in result["reverse_examples"] if e["subset"] == "n2d")


def mean_over_seeds(runs: Sequence[dict], recipe: str) -> dict:
    """Mean of every float metric of the ``runs`` of one recipe, with their ``seeds`` and the first history."""
    mine = [r for r in runs if r["recipe"] == recipe]
    if not mine:
        raise ValueError(f"no run of recipe {recipe!r} among {sorted({r['recipe'] for r in runs})}")
    keys = [k for k, v in mine[0].items() if isinstance(v, float)]
    return {**{k: statistics.mean(r[k] for r in mine) for k in keys}, "seeds": [r["seed"] for r in mine],
            "history": mine[0]["history"]}


def recipes_table(results: dict[str, dict], plain_seed: int):
    """Per recipe: seeds, same-direction accuracy, reverse exact match (N2D / D2N), reverse rank percentile."""
    rows = []
    for name, r in results.items():
        seeds = ", ".join(map(str, r.get("seeds", [plain_seed])))
        rows.append([name, seeds, _pct(r["same_direction_accuracy"]),
                     f"{_pct(r['reverse_accuracy_n2d'])} / {_pct(r['reverse_accuracy_d2n'])}",
                     f"{r['reverse_rank_percentile']:.1f}"])
    return _table(["recipe", "seeds", "same direction", "reverse exact match (N2D / D2N)",
                   "reverse rank percentile"], rows)


# --------------------------------------------------------------------------- widgets
def query_box(model: GPT, tok: WordTokenizer, world: Sequence[Fact], per_subset: int = 15):
    """Pick a fact or type a prompt; a bar chart shows the model's five most likely names (right one green)."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    choices = [(f"[{f.subset}] {' '.join(f.description)}", f) for s in SUBSETS
               for f in [g for g in world if g.subset == s][:per_subset]]
    pick = widgets.Dropdown(options=choices, description="fact:", layout=widgets.Layout(width="520px"))
    text = widgets.Text(description="prompt:", layout=widgets.Layout(width="520px"))
    note = widgets.HTML()
    who = go.FigureWidget(go.Bar(x=[], y=[], marker_color=[]))
    who.update_layout(title="Who is it? The model's top 5 names", yaxis_title="probability", yaxis_range=[0, 1],
                      height=330, margin=dict(l=60, r=20, t=50, b=60))
    trained = {"n2d": "only name → description (this question is the REVERSE)",
               "d2n": "only description → name (this question is the SAME direction)",
               "both": "both directions"}

    def ask(_=None):
        fact = pick.value
        try:
            top = top_names(model, tok, world, text.value, k=5)
        except ValueError as err:
            note.value = error_html(str(err))
            return
        right = " ".join(fact.name)
        with who.batch_update():
            who.data[0].x = [n for n, _ in top]
            who.data[0].y = [p for _, p in top]
            who.data[0].marker.color = ["#2ca02c" if n == right else "#d62728" for n, _ in top]
        note.value = f"Right answer: <b>{html.escape(right)}</b>. This fact was trained {trained[fact.subset]}."

    def on_pick(_=None):
        text.value = " ".join(pick.value.description) + " is called"

    pick.observe(on_pick, "value")
    text.observe(ask, "value")
    on_pick()
    return widgets.VBox([pick, text, note, who])


def recipe_curves(results: dict[str, dict]):
    """Toggle buttons over the recipes; the figure shows the chosen recipe's accuracies during training."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    pick = widgets.ToggleButtons(options=list(results), description="recipe:")
    title = "Accuracy during training, chosen recipe"
    curves = go.FigureWidget(accuracy_curves(results[pick.value]["history"], title))
    pick.observe(lambda _: replace_figure(curves, accuracy_curves(results[pick.value]["history"], title)), "value")
    return widgets.VBox([pick, curves])


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


# --------------------------------------------------------------------------- the fact in the prompt
IN_CONTEXT_PROMPT = "{n} is {d} . " + SEP + " {d} is called"


@torch.no_grad()
def in_context_reversal(model: GPT, tok: WordTokenizer, world: Sequence[Fact], n_distractors: int = 20,
                        seed: int = 0) -> dict:
    """The reverse question about each N2D fact, asked with and without the fact itself in the prompt.

    With context the prompt is "NAME is DESCRIPTION . <s> DESCRIPTION is called" (the fact, then the
    reverse question); without, only "<s> DESCRIPTION is called". Returns the exact-match accuracy and
    the mean rank percentile of the right name among ``n_distractors`` other N2D names, for both.
    """
    facts = [f for f in world if f.subset == "n2d"]
    rng = random.Random(seed)
    out: dict = {}
    for key, template in (("with_fact", IN_CONTEXT_PROMPT), ("without_fact", SEP + " {d} is called")):
        prompts = [flatten(fill(template, f)) for f in facts]
        longest = max(len(p) for p in prompts) + 2
        if longest > model.config.block_size + 1:
            raise ValueError(f"prompt + answer is {longest} tokens; the model's context is {model.config.block_size}")
        hits, ranks = 0, []
        for f, p in zip(facts, prompts):
            ids = torch.tensor([tok.encode(p)])
            got = model.generate(ids, len(f.name), temperature=0.0)[0, -len(f.name):].tolist()
            hits += tuple(tok.words[t] for t in got) == f.name
            others = rng.sample([g for g in facts if g != f], min(n_distractors, len(facts) - 1))
            scores = sequence_logprobs(model, tok, [p] * (1 + len(others)), [f.name] + [g.name for g in others])
            ranks.append(rank_percentile(scores[0].item(), scores[1:].tolist()))
        out[f"{key}_accuracy"] = hits / len(facts)
        out[f"{key}_rank_percentile"] = sum(ranks) / len(ranks)
    out["questions"] = len(facts)
    return out


def _continuation_scores(hf_model, prompt: list[int], continuations: list[list[int]]) -> list[float]:
    """sum_t log p(c_t | prompt, c_<t) for each continuation, running the prompt only once: its KV cache
    is extended by each continuation and cropped back to the prompt afterwards."""
    out, cache = hf_forward(hf_model, torch.tensor([prompt]))
    first = out.logits[0, -1].float().log_softmax(-1)
    scores = []
    for c in continuations:
        total = first[c[0]].item()
        if len(c) > 1:
            rest = hf_forward(hf_model, torch.tensor([c[:-1]]), cache)[0].logits[0].float().log_softmax(-1)
            cache.crop(-(len(c) - 1))          # drop the continuation again, keep the prompt
            total += sum(rest[j, t].item() for j, t in enumerate(c[1:]))
        scores.append(total)
    return scores


@torch.inference_mode()
def smollm2_in_context(smol, world: Sequence[Fact], n_facts: int = 12, n_wrong: int = 5, seed: int = 0) -> dict:
    """SmolLM2-Instruct (an ``lm.HFModel``), asked "Who is the composer of TITLE?" in its chat template,
    with the fact "NAME is the composer of TITLE." before the question or without it.

    The assistant's answer is started as "The composer of TITLE is" and the right name is scored
    against ``n_wrong`` other names of the world (summed log-probabilities; the prompt is run once and
    its KV cache reused for every name). Returns how often the right name scores highest, with and without the fact, chance
    = 1 / (n_wrong + 1), and one example prompt.
    """
    facts = [f for f in world if f.subset == "n2d"]
    if not 1 <= n_facts <= len(facts) or not 1 <= n_wrong < len(facts):
        raise ValueError(f"n_facts must be in 1..{len(facts)} and n_wrong in 1..{len(facts) - 1}")
    tokenizer, rng = smol.tokenizer, random.Random(seed)
    wins = {"with_fact": 0, "without_fact": 0}
    example = ""
    for f in facts[:n_facts]:
        d = " ".join(f.description)
        names = [f.name] + [g.name for g in rng.sample([g for g in facts if g != f], n_wrong)]
        cands = [tokenizer.encode(" " + " ".join(n), add_special_tokens=False) for n in names]
        for key in wins:
            question = (f"{' '.join(f.name)} is {d}. " if key == "with_fact" else "") + f"Who is {d}?"
            prompt = smol.chat_ids(question) + tokenizer.encode(f"{d[0].upper()}{d[1:]} is", add_special_tokens=False)
            example = example or tokenizer.decode(prompt)
            scores = _continuation_scores(smol.model, prompt, cands)
            wins[key] += scores[0] == max(scores)
    return {"with_fact": wins["with_fact"] / n_facts, "without_fact": wins["without_fact"] / n_facts,
            "chance": 1 / (n_wrong + 1), "facts": n_facts, "example": example}
