"""Notebook 12's companion, part 3: the majority-label and recency biases of Zhao et al. 2021.

*Calibrate Before Use* (arXiv 2102.09690, section 4 and its figure 3: 4-shot SST-2 on GPT-3 2.7B)
varied the class balance of four examples ([P P P P] ... [N N N N]) and, for a balanced set, their
order ([P P N N] vs [N N P P]), and counted how often the model predicted each class on a balanced
test set. Here the same design on the four-continent task: two continents A and B per prompt,
four examples, the 24 balanced test countries, and the share of answers that are A or B, raw and
after contextual calibration. Imported through :mod:`course_utils.lessons.context` (one alias).
"""
from __future__ import annotations

import random
from typing import Sequence

import torch

from .. import plots
from ..lm import LanguageModel
from .context import LABELS, Example, calibrate_probs, countries, evaluate

PAIRS = (("Africa", "Europe"), ("Americas", "Asia"))    # every continent is A or B once
PATTERNS = ("AAAA", "mostly A", "AABB", "BBAA", "mostly B", "BBBB")   # the prompts of one (pair, seed)


def bias_examples(test: Sequence[Example], labels: Sequence[str], n: int = 4,
                  seed: int = 0) -> dict[str, list[Example]]:
    """``n`` demonstration countries per label, none of them in the test set (drawn among the 2n largest)."""
    unknown = [l for l in labels if l not in LABELS]
    if unknown:
        raise ValueError(f"labels must be among {LABELS}, got {unknown}")
    rng, held_out = random.Random(seed), {e.country for e in test}
    out = {}
    for label in labels:
        mine = [e for e in countries() if e.label == label and e.country not in held_out]
        if len(mine) < n:
            raise ValueError(f"only {len(mine)} {label} countries outside the test set, asked for {n}")
        out[label] = rng.sample(mine[: 2 * n], n)
    return out


def pattern_labels(pattern: str, seed: int = 0) -> str:
    """'AABB' as is; 'mostly A' -> three A and one B in a seeded order (e.g. 'ABAA'); same for 'mostly B'."""
    if pattern in ("mostly A", "mostly B"):
        major, minor = ("A", "B") if pattern == "mostly A" else ("B", "A")
        letters = [major] * 3 + [minor]
        random.Random(seed).shuffle(letters)
        return "".join(letters)
    if not pattern or set(pattern) - {"A", "B"}:
        raise ValueError(f"a pattern is 'mostly A', 'mostly B' or a string of A and B such as 'AABB', got {pattern!r}")
    return pattern


def label_bias(lm: LanguageModel, test: Sequence[Example], pair: Sequence[str] = PAIRS[0], seed: int = 0,
               patterns: Sequence[str] = PATTERNS, fmt: str = "colon") -> list[dict]:
    """One row per prompt: the labels of its examples in order, and per label the share of the test answers
    and the mean probability, raw and after contextual calibration (4-vectors in ``LABELS`` order)."""
    if len(pair) != 2 or pair[0] == pair[1]:
        raise ValueError(f"pair must be two different labels, got {pair!r}")
    a, b = pair
    all_letters = [pattern_labels(p, seed) for p in patterns]
    too_many = [x for x in all_letters if max(x.count("A"), x.count("B")) > 4]
    if too_many:
        raise ValueError(f"at most 4 examples of each label per prompt, got {too_many}")
    examples = bias_examples(test, pair, n=4, seed=seed)
    rows = []
    for letters in all_letters:
        picked = {"A": iter(examples[a]), "B": iter(examples[b])}
        demos = [next(picked[x]) for x in letters]
        r = evaluate(lm, demos, test, fmt)
        cal = calibrate_probs(r["probs"], r["content_free"])
        rows.append(dict(pair=(a, b), seed=seed, letters=letters, labels=tuple(e.label for e in demos),
                         share=answer_shares(r["probs"]), calibrated=answer_shares(cal),
                         p=r["probs"].mean(0), p_calibrated=cal.mean(0), content_free=r["content_free"],
                         accuracy=r["accuracy"]))
    return rows


def answer_shares(probs: torch.Tensor) -> torch.Tensor:
    """Share of the rows (questions) whose most probable label is each label: a (n_labels,) tensor."""
    if probs.ndim != 2 or probs.shape[0] == 0:
        raise ValueError(f"probs must be a (questions, labels) tensor with at least one row, got {tuple(probs.shape)}")
    return torch.bincount(probs.argmax(-1), minlength=probs.shape[-1]).float() / probs.shape[0]


def majority_curve(rows: Sequence[dict], key: str = "share") -> dict[int, float]:
    """Mean ``row[key]`` of label X, by how many of the prompt's examples are labelled X (X = each label of the pair).

    Zhao et al.'s majority-label bias: the value grows with the count although the test set is the same.
    """
    groups: dict[int, list[float]] = {}
    for row in rows:
        for label in row["pair"]:
            groups.setdefault(row["labels"].count(label), []).append(float(row[key][LABELS.index(label)]))
    if not groups:
        raise ValueError("no rows given")
    return {count: sum(v) / len(v) for count, v in sorted(groups.items())}


def is_split(labels: Sequence[str]) -> bool:
    """True for a balanced prompt in two blocks, such as A A B B: the first half one label, the second another."""
    half = len(labels) // 2
    return (len(labels) % 2 == 0 and half > 0 and len(set(labels[:half])) == 1 and len(set(labels[half:])) == 1
            and labels[0] != labels[-1])


def recency_shift(rows: Sequence[dict], key: str = "share") -> float:
    """Recency bias: mean over the two-block prompts (A A B B, B B A A) of value(last block's label) - value(first's).

    With both orders of each pair, this is the mean over labels X of value(X | X's examples last) - value(X | first).
    """
    shifts = [float(r[key][LABELS.index(r["labels"][-1])] - r[key][LABELS.index(r["labels"][0])])
              for r in rows if is_split(r["labels"])]
    if not shifts:
        raise ValueError("no balanced two-block prompt (such as A A B B) among the rows")
    return sum(shifts) / len(shifts)


def bias_summary(rows: Sequence[dict]) -> dict[str, dict[str, float]]:
    """Both biases, raw and calibrated, in share of answers: majority = share(X | all examples X) - share(X | none),
    recency = :func:`recency_shift`; ``removed`` = 1 - calibrated / raw (1: calibration removed it all)."""
    out = {}
    for name, raw, cal in (("majority label", *(_span(majority_curve(rows, k)) for k in ("share", "calibrated"))),
                           ("recency", recency_shift(rows, "share"), recency_shift(rows, "calibrated"))):
        out[name] = dict(raw=raw, calibrated=cal, removed=removed_fraction(raw, cal))
    return out


def _span(curve: dict[int, float]) -> float:
    return curve[max(curve)] - curve[min(curve)]


def removed_fraction(raw: float, calibrated: float) -> float:
    """1 - calibrated / raw: the share of a bias that calibration removed (negative: it grew)."""
    if raw <= 0:
        raise ValueError(f"the raw bias must be positive to say how much of it was removed, got {raw!r}")
    return 1 - calibrated / raw


def majority_figure(raw: dict[int, float], calibrated: dict[int, float], truth: float = 0.25):
    """Share of answers X by the number of examples labelled X, raw and calibrated, with the truth as a line."""
    k = max(raw)
    names = {c: f"{c} of {k}" for c in raw}
    fig = plots.grouped_bars({"raw": {names[c]: v for c, v in raw.items()},
                              "calibrated": {names[c]: v for c, v in calibrated.items()}},
                             title="Majority label: answers X, by how many of the 4 examples are labelled X",
                             y_title="share of the 24 answers that are X", text_format="%{y:.0%}", y_range=[0, 1])
    fig.add_hline(y=truth, line_dash="dot", annotation_text=f"truth {truth:.0%}")
    fig.update_xaxes(title="examples labelled X")
    return fig


def recency_figure(rows: Sequence[dict], truth: float = 0.25):
    """Share of answers X when X's two examples come first or last (A A B B vs B B A A), raw and calibrated."""
    groups = {}
    for key, name in (("share", "raw"), ("calibrated", "calibrated")):
        first, last = [], []
        for r in rows:
            if is_split(r["labels"]):
                last.append(float(r[key][LABELS.index(r["labels"][-1])]))
                first.append(float(r[key][LABELS.index(r["labels"][0])]))
        groups[name] = {"X's examples first": sum(first) / len(first), "X's examples last": sum(last) / len(last)}
    fig = plots.grouped_bars(groups, title="Recency: answers X when X's 2 examples come first or last",
                             y_title="share of the 24 answers that are X", text_format="%{y:.0%}", y_range=[0, 1])
    fig.add_hline(y=truth, line_dash="dot", annotation_text=f"truth {truth:.0%}")
    return fig
