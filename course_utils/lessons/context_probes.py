"""Notebook 12's companion, part 2: the probes beyond few-shot classification: loss by position and a
repeated random sequence, the relevant fact at different depths, system prompts, and answers that change
when only irrelevant context changes. Imported through :mod:`course_utils.lessons.context` (one alias)."""
from __future__ import annotations

import random
from typing import Sequence

import torch

from .. import plots
from ..lm import HFModel, LanguageModel
from .context import Example


# ------------------------------------------------------------------ position of the relevant fact
CITIES = ("Paris", "Rome", "London", "Tokyo", "Cairo", "Lima", "Oslo", "Berlin")


def where_prompt(names: Sequence[str], cities: Sequence[str]) -> str:
    return "".join(f"{n} lives in {c}.\n" for n, c in zip(names, cities))


NAMES = ("Anna", "Tom", "Maria", "John", "Sara", "Omar", "Ivan", "Lucy")


def position_accuracy(lm: LanguageModel, n_facts: int = 6, seed: int = 0) -> list[float]:
    """Accuracy of "where does NAME live?" by the position of NAME's fact in a list of ``n_facts`` facts.

    Each person gets a random city (``random.Random(seed)``), so the model cannot know the answer;
    the list is rotated ``n_facts`` times so every person sits at every position once, and the fact
    list (the shared prefix) runs once per rotation. Answers are scored over the listed cities.
    """
    if not isinstance(n_facts, int) or not 2 <= n_facts <= len(CITIES):
        raise ValueError(f"n_facts must be an integer between 2 and {len(CITIES)}, got {n_facts!r}")
    rng = random.Random(seed)
    names, cities = rng.sample(NAMES, n_facts), rng.sample(CITIES, n_facts)
    ids = label_tokens(lm, cities)
    hits = [0] * n_facts
    for shift in range(n_facts):
        order = [(i + shift) % n_facts for i in range(n_facts)]
        prefix = where_prompt([names[i] for i in order], [cities[i] for i in order])
        logp = lm.prefix_next_logprobs(prefix, [f"Question: where does {names[i]} live?\nAnswer: {names[i]} lives in"
                                                for i in order])
        picked = logp[:, ids].argmax(-1).tolist()
        for pos, person in enumerate(order):
            hits[pos] += picked[pos] == person
    return [h / n_facts for h in hits]


def label_tokens(lm: LanguageModel, words: Sequence[str]) -> list[int]:
    """The single token of " word" for each word (ValueError if one takes several tokens)."""
    ids = [lm.encode(" " + w) for w in words]
    if any(len(i) != 1 for i in ids):
        raise ValueError(f"every word must be one token for {lm.name}, got {dict(zip(words, ids))}")
    return [i[0] for i in ids]


# ------------------------------------------------------------------ loss by position (experiment 1)
@torch.inference_mode()
def loss_by_position(lm: LanguageModel, ids: torch.Tensor) -> torch.Tensor:
    """Mean next-token loss (nats) at each position of a batch of token ids (B, T): shape (T - 1,)."""
    logits = lm.logits(ids)[:, :-1].float()
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none").mean(0)


def repeated_random(vocab_size: int, length: int = 30, batch: int = 4, seed: int = 0, low: int = 1000) -> torch.Tensor:
    """``batch`` random token sequences of ``length`` tokens, each written twice: (batch, 2 * length)."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(low, vocab_size, (batch, length), generator=g)
    return torch.cat([half, half], dim=1)


def loss_figure(curves: dict[str, Sequence[float]], title: str, x_title: str = "position in the context (tokens)",
                marker: int | None = None):
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (name, ys) in enumerate(curves.items()):
        fig.add_trace(go.Scatter(x=list(range(1, len(ys) + 1)), y=list(ys), name=name, mode="lines",
                                 line=dict(color=plots.PALETTE[i % len(plots.PALETTE)])))
    if marker:
        fig.add_vline(x=marker, line_dash="dot", annotation_text="the copy starts")
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title="loss (nats)", height=360)
    return fig


# ------------------------------------------------------------------ system prompts (experiment 6)
FRENCH = {"le", "la", "les", "est", "de", "des", "une", "un", "et", "en", "du", "capitale", "à", "je", "vous"}


def answer_stats(text: str, keyword: str = "") -> dict:
    """Words, share of common French words, and whether ``keyword`` appears (case-insensitive)."""
    words = [w.strip(".,!?;:'\"()").lower() for w in text.split()]
    words = [w for w in words if w]
    return dict(words=len(words), french=sum(w in FRENCH for w in words) / max(len(words), 1),
                keyword=bool(keyword) and keyword.lower() in text.lower())


def default_system_prompt(lm: HFModel) -> str:
    """The system turn SmolLM2's chat template writes when the conversation has none."""
    text = lm.decode(lm.chat_ids("?"))
    return text.split("<|im_start|>system\n", 1)[1].split("<|im_end|>", 1)[0] if "<|im_start|>system" in text else ""


# ------------------------------------------------------------------ same question, other answers (experiment 7)
def changed_answers(test: Sequence[Example], a: Sequence[str], b: Sequence[str]) -> list[tuple[str, str, str, str]]:
    """(country, right answer, answer in context A, answer in context B) wherever A and B disagree."""
    return [(e.country, e.label, x, y) for e, x, y in zip(test, a, b) if x != y]


def table_html(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    import html

    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"
