"""course_utils.sampling against transformers' logits warpers, plus bad inputs."""
import math

import pytest
import torch

from course_utils import sampling

transformers = pytest.importorskip("transformers")
from transformers import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor,  # noqa: E402
                          TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper)


def hf_probs(logits, temperature=1.0, top_k=None, top_p=None, min_p=None, repetition_penalty=1.0, context=None):
    """transformers' processors chained in generate()'s order."""
    scores = logits.clone()
    ids = torch.zeros(scores.size(0), 1, dtype=torch.long) if context is None else context
    if repetition_penalty != 1.0:
        scores = RepetitionPenaltyLogitsProcessor(repetition_penalty)(ids, scores)
    if temperature != 1.0:
        scores = TemperatureLogitsWarper(temperature)(ids, scores)
    if top_k is not None:
        scores = TopKLogitsWarper(top_k)(ids, scores)
    if top_p is not None and top_p < 1.0:
        scores = TopPLogitsWarper(top_p)(ids, scores)
    if min_p is not None and min_p > 0:
        scores = MinPLogitsWarper(min_p)(ids, scores)
    return scores.softmax(-1)


def random_logits(g, rows, vocab, ties: bool):
    scale = torch.rand(rows, 1, generator=g) * 6 + 0.1
    logits = torch.randn(rows, vocab, generator=g) * scale
    if ties:   # coarse rounding makes many exact ties, also at the top-k / top-p boundaries
        logits = (logits * 2).round() / 2
    return logits


SETTINGS = [dict(temperature=t, top_k=k, top_p=p, min_p=m)
            for t in (0.5, 1.0, 1.7) for k in (None, 1, 3, 20) for p in (None, 0.3, 0.9, 1.0)
            for m in (None, 0.0, 0.05, 0.3)]


@pytest.mark.parametrize("ties", [False, True])
def test_matches_transformers_chain(ties):
    g = torch.Generator().manual_seed(7 + ties)
    logits = random_logits(g, 64, 50, ties)
    for s in SETTINGS:
        ours = sampling.probs(logits, **s)
        ref = hf_probs(logits, **s)
        # The same distribution up to which of several *tied* tokens is cut: transformers sorts
        # with an unstable sort, ours is stable (a tie is cut in id order, always the same way).
        torch.testing.assert_close(ours.sort(-1).values, ref.sort(-1).values, rtol=1e-5, atol=1e-6,
                                   msg=f"probabilities differ for {s}")
        differ = (ours > 0) != (ref > 0)
        for row in differ.any(-1).nonzero().flatten().tolist():
            assert ties, f"kept sets differ without ties for {s}"
            assert len(set(logits[row, differ[row]].tolist())) == 1, f"non-tied tokens differ for {s}"
        if not ties:
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6, msg=f"probabilities differ for {s}")


def test_matches_transformers_with_repetition_penalty():
    g = torch.Generator().manual_seed(3)
    logits = random_logits(g, 16, 40, ties=False)
    context = torch.randint(0, 40, (16, 12), generator=g)
    for penalty in (0.8, 1.3, 2.0):
        for s in ({}, {"top_p": 0.8, "temperature": 0.7}, {"top_k": 5, "min_p": 0.1}):
            ours = sampling.probs(logits, repetition_penalty=penalty, context=context, **s)
            ref = hf_probs(logits, repetition_penalty=penalty, context=context, **s)
            torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)


def test_repetition_penalty_lowers_seen_tokens_only():
    logits = torch.tensor([2.0, -1.0, 0.5, 0.5])
    out = sampling.apply_repetition_penalty(logits, [0, 1], 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5, 0.5]
    assert sampling.apply_repetition_penalty(logits, [], 2.0).tolist() == logits.tolist()


def test_temperature_zero_is_argmax_first_on_ties():
    logits = torch.tensor([[1.0, 3.0, 3.0, 0.0], [5.0, 1.0, 5.0, 5.0]])
    p = sampling.probs(logits, temperature=0)
    assert p.tolist() == [[0, 1, 0, 0], [1, 0, 0, 0]]
    assert sampling.sample(logits, temperature=0).flatten().tolist() == [1, 0]
    # temperature -> 0 approaches the greedy distribution without dividing by zero
    assert sampling.probs(logits[:1, :2], temperature=1e-3)[0, 1] > 0.999


def test_top_p_keeps_the_crossing_token():
    logits = torch.tensor([0.5, 0.3, 0.15, 0.05]).log()
    assert (sampling.probs(logits, top_p=0.6) > 0).tolist() == [True, True, False, False]
    assert (sampling.probs(logits, top_p=0.4) > 0).tolist() == [True, False, False, False]
    assert (sampling.probs(logits, top_p=1.0) > 0).all()


def test_ties_are_cut_deterministically():
    logits = torch.zeros(1, 10)      # ten tokens tied: top-p 0.35 keeps 4 of them, always the same ones
    first = sampling.probs(logits, top_p=0.35)
    for _ in range(20):
        assert torch.equal(sampling.probs(logits, top_p=0.35), first)
    assert int(sampling.kept(first)) == 4
    # top-k keeps every token tied with the k-th, as transformers does
    assert int(sampling.kept(sampling.probs(torch.tensor([3.0, 2.0, 2.0, 1.0]), top_k=2))) == 3


def test_min_p_scales_with_confidence():
    confident = torch.tensor([0.9] + [0.1 / 20] * 20).log()
    flat = torch.full((21,), 1 / 21).log()
    assert int(sampling.kept(sampling.probs(confident, min_p=0.1))) == 1
    assert int(sampling.kept(sampling.probs(flat, min_p=0.1))) == 21


def test_sampling_frequencies_follow_probs():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    g = torch.Generator().manual_seed(0)
    draws = sampling.sample(logits.expand(20000, 4), temperature=0.8, top_p=0.9, generator=g).flatten()
    freq = torch.bincount(draws, minlength=4).float() / len(draws)
    assert (freq - sampling.probs(logits, temperature=0.8, top_p=0.9)).abs().max() < 0.015


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(temperature=-0.1), "temperature must be a finite number >= 0"),
    (dict(temperature=float("nan")), "temperature"),
    (dict(temperature=float("inf")), "temperature"),
    (dict(top_k=0), "top_k must be None or an integer >= 1"),
    (dict(top_k=2.5), "top_k"),
    (dict(top_p=0.0), "top_p must be None or in (0, 1]"),
    (dict(top_p=1.2), "top_p"),
    (dict(top_p=float("nan")), "top_p"),
    (dict(min_p=-0.1), "min_p must be None or in [0, 1]"),
    (dict(min_p=1.5), "min_p"),
    (dict(repetition_penalty=0.0), "repetition_penalty must be a finite number > 0"),
    (dict(repetition_penalty=-1.0), "repetition_penalty"),
])
def test_bad_values_name_value_and_range(kwargs, fragment):
    with pytest.raises(ValueError) as err:
        sampling.probs(torch.zeros(5), **kwargs)
    assert fragment in str(err.value)
    assert repr(list(kwargs.values())[0]) in str(err.value)


def test_bad_logits():
    with pytest.raises(ValueError, match="NaN"):
        sampling.probs(torch.tensor([0.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        sampling.probs(torch.tensor([0.0, float("inf")]))
    with pytest.raises(ValueError, match="every logit"):
        sampling.probs(torch.full((3,), float("-inf")))
    with pytest.raises(TypeError):
        sampling.probs(torch.tensor([1, 2]))
    with pytest.raises(ValueError, match="context ids"):
        sampling.probs(torch.zeros(4), repetition_penalty=1.2, context=[7])
