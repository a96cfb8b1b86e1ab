"""course_utils.sampling against transformers' logits warpers, plus bad inputs and exercise checkers."""
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


def test_metrics():
    assert sampling.distinct_n("abcabcabc", 3) == pytest.approx(3 / 7)
    assert sampling.distinct_n("abcdef", 2) == 1.0
    assert sampling.repeated_ngram_share("abcdef", 2) == 0.0
    assert sampling.repeated_ngram_share("xyzxyz", 3) == 1.0
    assert sampling.repeated_ngram_share("abXab", 2) == pytest.approx(4 / 5)
    assert sampling.repeated_ngram_share([1, 2, 3, 1, 2, 9], 2) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        sampling.distinct_n("abc", 0)
    p = torch.tensor([0.5, 0.5, 0.0])
    assert sampling.entropy(p).item() == pytest.approx(math.log(2))
    assert int(sampling.kept(p)) == 2
    assert sampling.top2_margin(torch.tensor([1.0, 3.0, 2.5])).item() == pytest.approx(0.5)
    assert sampling.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert sampling.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


# ------------------------------------------------------------- exercise checkers
def ref_temperature(logits, t):
    return (logits / t).softmax(-1)


def ref_top_k(logits, k):
    kth = logits.topk(k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf")).softmax(-1)


def ref_top_p(logits, p):
    sorted_p, order = logits.softmax(-1).sort(-1, descending=True)
    before = sorted_p.cumsum(-1) - sorted_p             # mass of the more likely tokens
    keep_sorted = before < p
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


def top_p_without_crossing_token(logits, p):
    sorted_p, order = logits.softmax(-1).sort(-1, descending=True)
    keep_sorted = sorted_p.cumsum(-1) <= p
    keep_sorted[..., 0] = True
    keep = keep_sorted.scatter(-1, order, keep_sorted)
    return logits.masked_fill(~keep, float("-inf")).softmax(-1)


def ref_sampler(logits, temperature, top_k, top_p, generator):
    return int(torch.multinomial(sampling.probs(logits, temperature, top_k, top_p), 1, generator=generator))


def test_checkers_accept_reference_solutions():
    sampling.check_temperature(ref_temperature)
    sampling.check_top_k(ref_top_k)
    sampling.check_top_p(ref_top_p)
    sampling.check_sampler(ref_sampler)


@pytest.mark.parametrize("checker, wrong", [
    (sampling.check_temperature, lambda l, t: (l * t).softmax(-1)),
    (sampling.check_top_k, lambda l, k: ref_top_k(l, max(1, k - 1))),
    (sampling.check_top_k, lambda l, k: torch.where(ref_top_k(l, k) > 0, l.exp(), torch.zeros_like(l))),
    (sampling.check_top_p, top_p_without_crossing_token),
    (sampling.check_top_p, lambda l, p: ref_top_p(l, min(1.0, p + 0.05))),
    (sampling.check_sampler, lambda l, t, k, p, g: int(torch.multinomial(l.softmax(-1), 1, generator=g))),
    (sampling.check_sampler, lambda l, t, k, p, g: int(l.argmax())),
])
def test_checkers_reject_wrong_answers(checker, wrong):
    with pytest.raises(AssertionError):
        checker(wrong)


def test_checker_lets_not_implemented_through():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        sampling.check_top_k(stub)


# ------------------------------------------------------------------ sampling_lab
from course_utils import sampling_lab as L  # noqa: E402


@pytest.fixture(scope="module")
def char_lm():
    from course_utils.checkpoints import load_checkpoint
    model, tok, _ = load_checkpoint("shakespeare-char")
    return L.CourseGPT(model, tok)


def test_knobs_validate():
    with pytest.raises(ValueError, match="top_p must be None or in"):
        L.Knobs(top_p=1.5)
    with pytest.raises(ValueError, match="repetition_penalty"):
        L.Knobs(repetition_penalty=0)
    assert L.Knobs(0.0).label() == "greedy"


def test_generation_is_seeded_and_cached_logits_match(char_lm):
    knobs = L.Knobs(temperature=1.0, top_p=0.9)
    a = char_lm.generate("ROMEO:\n", 40, knobs, seed=3, n=2)
    b = char_lm.generate("ROMEO:\n", 40, knobs, seed=3, n=2)
    c = char_lm.generate("ROMEO:\n", 40, knobs, seed=4, n=2)
    assert a.texts == b.texts and a.texts != c.texts
    assert a.logprobs.shape == a.margins.shape == (2, 40) and (a.logprobs <= 0).all()
    # the KV-cached generation agrees with the model's own generate() when greedy
    ids = torch.tensor([char_lm.encode("ROMEO:\n")])
    ref = char_lm.model.generate(ids, 40, temperature=0)[0, ids.size(1):].tolist()
    assert char_lm.generate("ROMEO:\n", 40, L.GREEDY).new_ids[0] == ref
    # next_logits equals a plain forward pass
    _, logits = char_lm.next_logits("ROMEO:\n")
    torch.testing.assert_close(logits, char_lm.model(ids).logits[0, -1])


def test_generate_bad_inputs(char_lm):
    with pytest.raises(ValueError, match="not in this model's vocabulary"):
        char_lm.generate("€", 5)
    with pytest.raises(ValueError, match="prompt is empty"):
        char_lm.next_logits("")
    with pytest.raises(ValueError, match="exceeds the 256-token context"):
        char_lm.generate("ab", 300)
    with pytest.raises(ValueError, match="max_new_tokens"):
        char_lm.generate("ab", 0)
    with pytest.raises(ValueError, match="equal token counts"):
        char_lm.generate(["ab", "abc"], 3)


def test_repetition_penalty_reduces_loops(char_lm):
    greedy = char_lm.generate("ROMEO:\nI", 200, L.GREEDY).texts[0]
    penalised = char_lm.generate("ROMEO:\nI", 200, L.Knobs(0.0, repetition_penalty=1.3)).texts[0]
    assert sampling.repeated_ngram_share(penalised, 20) < sampling.repeated_ngram_share(greedy, 20)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_favours_repetition_for_other_seeds(char_lm, seed):
    pool = char_lm.generate("ROMEO:\nI", 240, L.Knobs(1.0), seed=seed, n=32)
    rep = [sampling.repeated_ngram_share(x, 10) for x in pool.texts]
    assert sampling.spearman(pool.mean_logprob.tolist(), rep) > 0.2
    greedy = char_lm.generate("ROMEO:\nI", 240, L.GREEDY)
    assert greedy.mean_logprob.item() > pool.mean_logprob.max().item()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_sweep_claims_hold_for_other_seeds(char_lm, seed):
    words = L.shakespeare_words()
    def measure(t):
        gen = char_lm.generate("ROMEO:\nI", 240, L.Knobs(t), seed=seed, n=4)
        return (sum(sampling.repeated_ngram_share(x, 20) for x in gen.texts) / 4,
                sum(L.nonword_share(x, words) for x in gen.texts) / 4)
    (rep0, _), (rep1, _), (_, nw05), (rep2, nw2) = measure(0.0), measure(1.0), measure(0.5), measure(2.0)
    assert rep0 > 0.5 and rep1 < 0.2 and rep2 < 0.2
    assert nw2 > nw05 + 0.15


def test_near_tie_fork(char_lm):
    prompt = "ROMEO:\nI"
    gen = char_lm.generate(prompt, 120, L.GREEDY)
    step = int(gen.margins[0].argmin())
    _, logits = char_lm.next_logits(prompt + gen.texts[0][:step])
    top2 = torch.topk(logits, 2)
    margin = float(top2.values[0] - top2.values[1])
    assert margin == pytest.approx(float(gen.margins[0, step]), abs=1e-4)
    forked = char_lm.generate(prompt, 120, L.GREEDY, nudge={step: (int(top2.indices[1]), 2 * margin)})
    assert forked.texts[0][:step] == gen.texts[0][:step] and forked.texts[0][step] != gen.texts[0][step]
    small = char_lm.generate(prompt, 120, L.GREEDY, nudge={step: (int(top2.indices[1]), 0.5 * margin)})
    assert small.texts == gen.texts


def test_float_experiments():
    sums = L.sum_orders(100_000, seed=1)
    assert len({sums["forward"], sums["reversed"], sums["sorted"]}) > 1
    diff, rerun = L.batch_dependence((64, 512), (1, 2, 8))
    assert diff.shape == rerun.shape == (2, 3)
    assert float(rerun.max()) == 0.0 and float(diff[:, 0].max()) == 0.0
    with pytest.raises(ValueError, match="batch sizes"):
        L.batch_dependence((64,), (0, 2))


def test_text_metrics_helpers():
    words = frozenset({"to", "be", "or", "not"})
    assert L.nonword_share("To be or not to bx", words) == pytest.approx(1 / 6)
    assert L.nonword_share("  ", words) == 0.0
    html_out = L.fork_html("pre", "abcd", "abXY", "A", "B")
    assert "cd" in html_out and "XY" in html_out


def test_surgeon_sliders_only_allow_valid_values(char_lm):
    surgeon = L.DistributionSurgeon({char_lm.name: char_lm}, {char_lm.name: "ROMEO:\n"})
    for t in (surgeon.temperature.min, surgeon.temperature.max):
        for k in (surgeon.top_k.min, surgeon.top_k.max):
            for p in (surgeon.top_p.min, surgeon.top_p.max):
                for m in (surgeon.min_p.min, surgeon.min_p.max):
                    for r in (surgeon.penalty.min, surgeon.penalty.max):
                        with surgeon.temperature.hold_trait_notifications():
                            surgeon.temperature.value, surgeon.top_k.value = t, k
                            surgeon.top_p.value, surgeon.min_p.value, surgeon.penalty.value = p, m, r
                        view = surgeon.refresh()
                        assert view is not None and view["kept"] >= 1
    surgeon.temperature.value, surgeon.top_k.value, surgeon.top_p.value = 0.0, 0, 1.0
    view = surgeon.refresh()
    assert view["kept"] == 1 and "1</b> of 83" in surgeon.stats.value
    surgeon.prompt.value = "€uro"                        # a character the model does not know
    assert surgeon.refresh() is None and "not in this model" in surgeon.stats.value
    surgeon.prompt.value = "ROMEO:\n"
    assert surgeon.generate() and surgeon.new_seed() is not None and surgeon.seed == 1
    fig_ticks = surgeon.figure.layout.xaxis.ticktext
    assert len(fig_ticks) == surgeon.top_n


@pytest.mark.slow
def test_surgeon_with_smollm2():
    models = L.load_models()
    smol = models["SmolLM2-135M"]
    view = L.surgeon_view(smol, "The capital of France is", L.Knobs(1.0))
    assert view["labels"][0] == "␣Paris" and view["kept"] == smol.vocab_size
    surgeon = L.DistributionSurgeon(models, {n: "The capital of France is" for n in models})
    surgeon.model_choice.value = "SmolLM2-135M"
    assert surgeon.refresh()["vocab"] == 49152
    gen = smol.generate("The capital of France is", 8, L.Knobs(0.7, top_p=0.9, repetition_penalty=1.2), seed=0)
    assert len(gen.new_ids[0]) == 8
