"""Notebook 04's companion: text metrics, exercise checkers, the surgeon widget and the experiments' claims."""
import math

import pytest
import torch

from course_utils import lm, sampling
from course_utils.checkpoints import load_checkpoint
from course_utils.lessons import sampling as lab


@pytest.fixture(scope="module")
def char_lm():
    model, tok, _ = load_checkpoint("shakespeare-char")
    return lm.CourseGPT(model, tok)


def test_metrics():
    assert lab.distinct_n("abcabcabc", 3) == pytest.approx(3 / 7)
    assert lab.distinct_n("abcdef", 2) == 1.0
    assert lab.repeated_ngram_share("abcdef", 2) == 0.0
    assert lab.repeated_ngram_share("xyzxyz", 3) == 1.0
    assert lab.repeated_ngram_share("abXab", 2) == pytest.approx(4 / 5)
    assert lab.repeated_ngram_share([1, 2, 3, 1, 2, 9], 2) == pytest.approx(4 / 6)
    with pytest.raises(ValueError, match="n must be an integer >= 1"):
        lab.distinct_n("abc", 0)
    p = torch.tensor([0.5, 0.5, 0.0])
    assert sampling.entropy(p).item() == pytest.approx(math.log(2))
    assert int(sampling.kept(p)) == 2
    assert sampling.top2_margin(torch.tensor([1.0, 3.0, 2.5])).item() == pytest.approx(0.5)
    assert lab.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert lab.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


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
    lab.check_temperature(ref_temperature)
    lab.check_top_k(ref_top_k)
    lab.check_top_p(ref_top_p)
    lab.check_sampler(ref_sampler)


@pytest.mark.parametrize("checker, wrong", [
    (lab.check_temperature, lambda l, t: (l * t).softmax(-1)),
    (lab.check_top_k, lambda l, k: ref_top_k(l, max(1, k - 1))),
    (lab.check_top_k, lambda l, k: torch.where(ref_top_k(l, k) > 0, l.exp(), torch.zeros_like(l))),
    (lab.check_top_p, top_p_without_crossing_token),
    (lab.check_top_p, lambda l, p: ref_top_p(l, min(1.0, p + 0.05))),
    (lab.check_sampler, lambda l, t, k, p, g: int(torch.multinomial(l.softmax(-1), 1, generator=g))),
    (lab.check_sampler, lambda l, t, k, p, g: int(l.argmax())),
])
def test_checkers_reject_wrong_answers(checker, wrong):
    with pytest.raises(AssertionError):
        checker(wrong)


def test_checker_lets_not_implemented_through():
    def stub(*args):
        raise NotImplementedError
    with pytest.raises(NotImplementedError):
        lab.check_top_k(stub)


def test_repetition_penalty_reduces_loops(char_lm):
    greedy = char_lm.generate("ROMEO:\nI", 200, lm.GREEDY).texts[0]
    penalised = char_lm.generate("ROMEO:\nI", 200, lm.Knobs(0.0, repetition_penalty=1.3)).texts[0]
    assert lab.repeated_ngram_share(penalised, 20) < lab.repeated_ngram_share(greedy, 20)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_best_of_n_favours_repetition_for_other_seeds(char_lm, seed):
    pool = char_lm.generate("ROMEO:\nI", 240, lm.Knobs(1.0), seed=seed, n=32)
    rep = [lab.repeated_ngram_share(x, 10) for x in pool.texts]
    assert lab.spearman(pool.mean_logprob.tolist(), rep) > 0.2
    greedy = char_lm.generate("ROMEO:\nI", 240, lm.GREEDY)
    assert greedy.mean_logprob.item() > pool.mean_logprob.max().item()


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1])
def test_temperature_sweep_claims_hold_for_other_seeds(char_lm, seed):
    words = lab.shakespeare_words()
    def measure(t):
        gen = char_lm.generate("ROMEO:\nI", 240, lm.Knobs(t), seed=seed, n=4)
        return (sum(lab.repeated_ngram_share(x, 20) for x in gen.texts) / 4,
                sum(lab.nonword_share(x, words) for x in gen.texts) / 4)
    (rep0, _), (rep1, _), (_, nw05), (rep2, nw2) = measure(0.0), measure(1.0), measure(0.5), measure(2.0)
    assert rep0 > 0.5 and rep1 < 0.2 and rep2 < 0.2
    assert nw2 > nw05 + 0.15


def test_near_tie_fork(char_lm):
    prompt = "ROMEO:\nI"
    gen = char_lm.generate(prompt, 120, lm.GREEDY)
    step = int(gen.margins[0].argmin())
    _, logits = char_lm.next_logits(prompt + gen.texts[0][:step])
    top2 = torch.topk(logits, 2)
    margin = float(top2.values[0] - top2.values[1])
    assert margin == pytest.approx(float(gen.margins[0, step]), abs=1e-4)
    forked = char_lm.generate(prompt, 120, lm.GREEDY, nudge={step: (int(top2.indices[1]), 2 * margin)})
    assert forked.texts[0][:step] == gen.texts[0][:step] and forked.texts[0][step] != gen.texts[0][step]
    small = char_lm.generate(prompt, 120, lm.GREEDY, nudge={step: (int(top2.indices[1]), 0.5 * margin)})
    assert small.texts == gen.texts


def test_float_experiments():
    sums = lab.sum_orders(100_000, seed=1)
    assert len({sums["forward"], sums["reversed"], sums["sorted"]}) > 1
    diff, rerun = lab.batch_dependence((64, 512), (1, 2, 8))
    assert diff.shape == rerun.shape == (2, 3)
    assert float(rerun.max()) == 0.0 and float(diff[:, 0].max()) == 0.0
    with pytest.raises(ValueError, match="batch sizes"):
        lab.batch_dependence((64,), (0, 2))


def test_text_metrics_helpers():
    words = frozenset({"to", "be", "or", "not"})
    assert lab.nonword_share("To be or not to bx", words) == pytest.approx(1 / 6)
    assert lab.nonword_share("  ", words) == 0.0
    html_out = lab.fork_html("pre", "abcd", "abXY", "A", "B")
    assert "cd" in html_out and "XY" in html_out


def test_surgeon_sliders_only_allow_valid_values(char_lm):
    surgeon = lab.DistributionSurgeon({char_lm.name: char_lm}, {char_lm.name: "ROMEO:\n"})
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
    models = lm.load_models()
    smol = models["SmolLM2-135M"]
    view = lab.surgeon_view(smol, "The capital of France is", lm.Knobs(1.0))
    assert view["labels"][0] == "␣Paris" and view["kept"] == smol.vocab_size
    surgeon = lab.DistributionSurgeon(models, {n: "The capital of France is" for n in models})
    surgeon.model_choice.value = "SmolLM2-135M"
    assert surgeon.refresh()["vocab"] == 49152
    gen = smol.generate("The capital of France is", 8, lm.Knobs(0.7, top_p=0.9, repetition_penalty=1.2), seed=0)
    assert len(gen.new_ids[0]) == 8


# ------------------------------------------------------------- temperature 0 on SmolLM2, batched
@pytest.fixture(scope="module")
def smol_lm():
    return lm.load_models()["SmolLM2-135M"]


@pytest.mark.slow
def test_greedy_padded_alone_matches_the_core_generation_loop(smol_lm):
    """Reference: a batch of one, no padding, is the core's greedy loop (lm.generate_ids)."""
    rows = [smol_lm.chat_ids("What do bees make?")]
    new, margins = lab.greedy_padded(smol_lm, rows, 6)
    ref, _, ref_margins = smol_lm.generate_ids(torch.tensor(rows), 6, lm.GREEDY)
    assert new[0] == ref[0, len(rows[0]):].tolist()
    assert torch.allclose(margins, ref_margins, atol=1e-4)
    # left padding with the mask and positions: the padded row gives the same first tokens
    padded, _ = lab.greedy_padded(smol_lm, rows + [smol_lm.chat_ids("Name three primary colours, please.")], 6,
                                  extra_pad=5)
    assert padded[0][:3] == new[0][:3]
    with pytest.raises(ValueError, match="extra_pad"):
        lab.greedy_padded(smol_lm, rows, 2, extra_pad=-1)
    with pytest.raises(ValueError, match="non-empty"):
        lab.greedy_padded(smol_lm, [[]], 2)


@pytest.mark.slow
def test_batch_invariance_counts_and_bf16_leaves_the_model_in_fp32(smol_lm):
    qs = ["What do bees make?", "List two planets.", "Why is the sky blue?"]
    res = lab.batch_invariance(smol_lm, qs, max_new_tokens=4, extra_pad=3, dtype=torch.bfloat16, progress=False)
    assert res.dtype == "bfloat16" and len(res.alone) == len(res.batched) == len(res.padded) == 3
    assert set(res.counts()) == {"alone vs batched", "alone vs padded batch", "batched vs padded batch"}
    assert next(smol_lm.model.parameters()).dtype == torch.float32
    fake = lab.BatchInvariance("float32", ["a", "b"], [[1, 2, 3], [4]], [[1, 2, 9], [4]], [[1, 2, 3], [4]])
    assert fake.differ("alone", "batched") == [0] and fake.first_fork() == (0, 2, "alone", "batched")
    assert fake.counts()["alone vs padded batch"] == 0
    with pytest.raises(ValueError, match="dtype"):
        lab.batch_invariance(smol_lm, qs, dtype=torch.float16)
    with pytest.raises(ValueError, match="at least 2"):
        lab.batch_invariance(smol_lm, qs[:1])
