"""Companion of notebook 12 (context): data, prompts, calibration, checkers, and the measured effects on SmolLM2."""
import random

import pytest
import torch

from course_utils.lessons import context as lab


# ---------------------------------------------------------------- no model needed
def test_countries_come_from_countryinfo_with_four_unambiguous_continents():
    rows = lab.countries()
    names = {e.country for e in rows}
    assert {"France", "Kenya", "Brazil", "Japan"} <= names
    assert not names & lab.AMBIGUOUS
    assert {e.label for e in rows} == set(lab.LABELS)
    assert dict((e.country, e.label) for e in rows)["Nigeria"] == "Africa"


def test_split_is_balanced_disjoint_and_seeded():
    pool, test = lab.split(2, 6, seed=0)
    assert len(pool) == 8 and len(test) == 24
    assert not {e.country for e in pool} & {e.country for e in test}
    for label in lab.LABELS:
        assert sum(e.label == label for e in test) == 6
    assert lab.split(2, 6, seed=0) == (pool, test) and lab.split(2, 6, seed=1) != (pool, test)
    with pytest.raises(ValueError, match="countries in"):
        lab.split(40, 40)


def test_prompt_formats():
    demos = [lab.Example("Kenya", "Africa"), lab.Example("Peru", "Americas")]
    assert lab.few_shot_prompt(demos, "colon", instruction=False) == "Kenya: Africa\nPeru: Americas\n"
    assert lab.few_shot_prompt(demos, "Q/A").startswith(lab.INSTRUCTION + "Q: Kenya\nA: Africa\n")
    assert lab.question("Spain", "sentence") == "Spain is in"
    with pytest.raises(ValueError, match="format 'yaml'"):
        lab.question("Spain", "yaml")


def test_calibration_matches_the_formula_and_uniformises_the_content_free_input():
    p_cf = torch.tensor([0.7, 0.1, 0.1, 0.1])
    assert torch.allclose(lab.calibrate_probs(p_cf, p_cf), torch.full((4,), 0.25))
    p = torch.tensor([[0.4, 0.2, 0.2, 0.2]])
    q = torch.tensor([0.4 / 0.7, 2.0, 2.0, 2.0])
    assert torch.allclose(lab.calibrate_probs(p, p_cf), (q / q.sum())[None])


def test_relabel_and_flip():
    demos = [lab.Example("Kenya", "Africa"), lab.Example("Spain", "Europe")]
    assert [e.label for e in lab.relabel(demos, "flipped")] == ["Americas", "Africa"]
    assert lab.relabel(demos, "correct") == demos
    assert all(e.label in lab.LABELS for e in lab.relabel(demos * 5, "random", seed=3))
    with pytest.raises(ValueError, match="'wrong'"):
        lab.relabel(demos, "wrong")


def test_parse_order_rejects_bad_input_with_the_range():
    assert lab.parse_order("3 1, 2", 8) == [2, 0, 1]
    assert lab.parse_order("", 8) == []
    for bad in ("0", "9", "a", "1 2 3 4 5 6 7 8 1"):
        with pytest.raises(ValueError, match="between 1 and 8"):
            lab.parse_order(bad, 8)


def test_changed_answers_and_answer_stats():
    test = [lab.Example("Kenya", "Africa"), lab.Example("Spain", "Europe")]
    assert lab.changed_answers(test, ["Africa", "Europe"], ["Asia", "Europe"]) == [("Kenya", "Africa", "Africa", "Asia")]
    s = lab.answer_stats("La capitale de la France est Paris.", keyword="paris")
    assert s["words"] == 7 and s["french"] > 0.5 and s["keyword"]
    assert lab.answer_stats("The capital is Paris.")["french"] == 0


def test_repeated_random_is_two_copies_and_seeded():
    x = lab.repeated_random(5000, length=10, batch=3, seed=1)
    assert x.shape == (3, 20) and torch.equal(x[:, :10], x[:, 10:])
    assert torch.equal(x, lab.repeated_random(5000, length=10, batch=3, seed=1))


# ---------------------------------------------------------------- majority-label and recency biases (no model)
def _row(labels, share, calibrated=None, pair=("Africa", "Europe")):
    """A row as lab.label_bias makes it: shares in LABELS order (Africa, Americas, Asia, Europe)."""
    share = torch.tensor(share)
    return dict(pair=pair, labels=tuple(labels), share=share,
                calibrated=share if calibrated is None else torch.tensor(calibrated))


AF, EU = "Africa", "Europe"


def test_answer_shares_count_the_argmax_of_each_row():
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.2, 0.3, 0.4], [0.2, 0.5, 0.2, 0.1], [0.6, 0.2, 0.1, 0.1]])
    assert torch.allclose(lab.answer_shares(probs), torch.tensor([0.5, 0.25, 0.0, 0.25]))
    with pytest.raises(ValueError, match=r"at least one row, got \(0, 4\)"):
        lab.answer_shares(torch.empty(0, 4))
    with pytest.raises(ValueError, match=r"got \(4,\)"):
        lab.answer_shares(torch.tensor([0.7, 0.1, 0.1, 0.1]))


def test_pattern_labels_keep_three_to_one_and_are_seeded():
    assert lab.pattern_labels("AABB") == "AABB"
    for seed in range(5):
        a = lab.pattern_labels("mostly A", seed)
        assert sorted(a) == ["A", "A", "A", "B"] and a == lab.pattern_labels("mostly A", seed)
        assert sorted(lab.pattern_labels("mostly B", seed)) == ["A", "B", "B", "B"]
    assert len({lab.pattern_labels("mostly A", s) for s in range(10)}) > 1
    with pytest.raises(ValueError, match="'AAC'"):
        lab.pattern_labels("AAC")


def test_majority_curve_groups_each_label_by_its_count():
    rows = [_row([AF] * 4, [0.6, 0.0, 0.1, 0.3]),          # Africa 4 of 4, Europe 0 of 4
            _row([AF, AF, EU, EU], [0.3, 0.0, 0.2, 0.5]),  # both 2 of 4
            _row([EU] * 4, [0.2, 0.0, 0.1, 0.7])]          # Europe 4 of 4, Africa 0 of 4
    # by hand: count 0 -> (Europe 0.3 + Africa 0.2) / 2; count 2 -> (0.3 + 0.5) / 2; count 4 -> (0.6 + 0.7) / 2
    assert lab.majority_curve(rows) == pytest.approx({0: 0.25, 2: 0.4, 4: 0.65})
    with pytest.raises(ValueError, match="no rows"):
        lab.majority_curve([])


def test_recency_shift_is_last_label_minus_first_label_over_two_block_prompts():
    rows = [_row([AF, AF, EU, EU], [0.25, 0.0, 0.25, 0.5]),   # Europe last: 0.5 - 0.25
            _row([EU, EU, AF, AF], [0.40, 0.0, 0.3, 0.3]),    # Africa last: 0.4 - 0.3
            _row([AF, EU, AF, AF], [0.9, 0.0, 0.0, 0.1])]     # not two blocks: ignored
    assert lab.recency_shift(rows) == pytest.approx((0.25 + 0.1) / 2)
    assert lab.is_split([AF, AF, EU, EU]) and not lab.is_split([AF, EU, AF, EU]) and not lab.is_split([AF] * 4)
    with pytest.raises(ValueError, match="two-block"):
        lab.recency_shift(rows[2:])


def test_bias_summary_and_removed_fraction():
    rows = [_row([AF] * 4, [0.6, 0.0, 0.1, 0.3], [0.3, 0, 0.3, 0.4]),
            _row([AF, AF, EU, EU], [0.25, 0.0, 0.25, 0.5], [0.2, 0, 0.2, 0.6]),
            _row([EU, EU, AF, AF], [0.4, 0.0, 0.3, 0.3], [0.5, 0, 0.3, 0.2]),
            _row([EU] * 4, [0.2, 0.0, 0.1, 0.7], [0.3, 0, 0.3, 0.4])]
    s = lab.bias_summary(rows)
    # by hand: raw majority (0.6 + 0.7) / 2 - (0.3 + 0.2) / 2 = 0.4; calibrated (0.3 + 0.4) / 2 - (0.4 + 0.3) / 2 = 0
    assert s["majority label"] == pytest.approx(dict(raw=0.4, calibrated=0.0, removed=1.0))
    # raw recency ((0.5 - 0.25) + (0.4 - 0.3)) / 2 = 0.175; calibrated ((0.6 - 0.2) + (0.5 - 0.2)) / 2 = 0.35
    assert s["recency"] == pytest.approx(dict(raw=0.175, calibrated=0.35, removed=-1.0))
    assert lab.removed_fraction(0.4, 0.1) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="positive.*got 0"):
        lab.removed_fraction(0, 0.1)


def test_bias_examples_avoid_the_test_set_and_are_seeded():
    _, test = lab.split(2, 6, seed=0)
    ex = lab.bias_examples(test, (AF, EU), n=4, seed=0)
    assert {len(v) for v in ex.values()} == {4}
    assert all(e.label == label for label, v in ex.items() for e in v)
    assert not {e.country for v in ex.values() for e in v} & {e.country for e in test}
    assert ex == lab.bias_examples(test, (AF, EU), n=4, seed=0) != lab.bias_examples(test, (AF, EU), n=4, seed=1)
    with pytest.raises(ValueError, match="among"):
        lab.bias_examples(test, ("Oceania",))
    with pytest.raises(ValueError, match="outside the test set"):
        lab.bias_examples(test, (AF,), n=100)


def test_label_bias_rejects_bad_pairs_and_patterns_before_running_a_model():
    _, test = lab.split(2, 6, seed=0)
    with pytest.raises(ValueError, match="two different labels"):
        lab.label_bias(None, test, (AF, AF))
    with pytest.raises(ValueError, match=r"at most 4 .*AAAAA"):
        lab.label_bias(None, test, (AF, EU), patterns=("AABB", "AAAAA"))


def test_bias_figures_have_the_titles_the_notebook_shows():
    rows = [_row([AF, AF, EU, EU], [0.25, 0.0, 0.25, 0.5]), _row([EU, EU, AF, AF], [0.4, 0.0, 0.3, 0.3])]
    fig = lab.recency_figure(rows)
    assert fig.layout.title.text.startswith("Recency")
    assert list(fig.data[0].y) == pytest.approx([0.275, 0.45])     # first (0.25 + 0.3) / 2, last (0.5 + 0.4) / 2
    fig = lab.majority_figure({0: 0.2, 2: 0.3, 4: 0.5}, {0: 0.25, 2: 0.25, 4: 0.3})
    assert fig.layout.title.text.startswith("Majority label") and list(fig.data[0].x) == ["0 of 4", "2 of 4", "4 of 4"]


# ---------------------------------------------------------------- exercise checkers: reference passes, wrong fails
def test_check_prompt():
    lab.check_prompt(lambda ex, c: lab.few_shot_prompt(ex, "colon", instruction=False) + lab.question(c, "colon"))
    with pytest.raises(AssertionError):
        lab.check_prompt(lambda ex, c: "".join(f"{e.country}:{e.label}\n" for e in ex) + c + ":")
    with pytest.raises(AssertionError):
        lab.check_prompt(lambda ex, c: lab.few_shot_prompt(ex, "colon") + lab.question(c, "colon"))


def test_check_calibration():
    lab.check_calibration(lambda p, cf: (p / cf) / (p / cf).sum(-1, keepdim=True))
    with pytest.raises(AssertionError):
        lab.check_calibration(lambda p, cf: p / cf)                      # not renormalised
    with pytest.raises(AssertionError):
        lab.check_calibration(lambda p, cf: (p * cf) / (p * cf).sum(-1, keepdim=True))


def test_check_spread():
    lab.check_spread(lambda a: max(a) - min(a))
    with pytest.raises(AssertionError):
        lab.check_spread(lambda a: max(a))
    with pytest.raises(ValueError):
        lab.spread([])


# ---------------------------------------------------------------- with SmolLM2
@pytest.fixture(scope="module")
def smol():
    from course_utils import lm
    torch.set_num_threads(1)
    return lm.load_models()["SmolLM2-135M"]


@pytest.mark.slow
def test_prefix_cached_scores_match_the_uncached_reference(smol):
    from course_utils.lm import LanguageModel
    prefix = lab.few_shot_prompt([lab.Example("Kenya", "Africa"), lab.Example("Peru", "Americas")])
    suffixes = ["Japan:", "Democratic Republic of the Congo:", "", "Spain:"]
    cached = smol.prefix_next_logprobs(prefix, suffixes, batch_size=3)          # two batches, one with padding
    reference = LanguageModel.prefix_next_logprobs(smol, prefix, suffixes)
    assert cached.shape == (4, smol.vocab_size)
    assert torch.allclose(cached, reference, atol=1e-3), (cached - reference).abs().max()
    ids = smol.prompt_ids(prefix + "Japan:")
    assert torch.allclose(cached[0], smol.next_logits(prefix + "Japan:")[1].log_softmax(-1), atol=1e-3)
    assert ids[-1] == smol.encode("Japan:")[-1]
    with pytest.raises(ValueError, match="prefix is empty"):
        smol.prefix_next_logprobs([], ["a"])


@pytest.mark.slow
def test_chat_mode_scores_match_full_chat_prompts(smol):
    prefix = lab.few_shot_prompt([lab.Example("Kenya", "Africa")])
    probs = lab.label_probs(smol, prefix, ["Japan:", "Spain:"], system="Answer with one word.", chat=True)
    ids = lab.label_ids(smol, space=False)
    for row, s in zip(probs, ["Japan:", "Spain:"]):
        full = torch.tensor([smol.chat_ids(prefix + s, system="Answer with one word.")])
        ref = smol.logits(full)[0, -1].float().log_softmax(-1)[ids].softmax(-1)
        assert torch.allclose(row, ref, atol=1e-3)


@pytest.mark.slow
def test_zero_shot_scores_match_one_prompt_at_a_time(smol):
    questions = ["Japan:", "Spain:", "Democratic Republic of the Congo:"]
    probs = lab.label_probs(smol, "", questions)
    ids = lab.label_ids(smol)
    for row, q in zip(probs, questions):
        assert torch.allclose(row, smol.next_logits(q)[1][ids].softmax(-1), atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_examples_teach_the_task(smol, seed):
    """Without an instruction, four examples lift accuracy far above zero-shot (pilot, seeds 0, 1, 2: +46, +25, +25 points)."""
    pool, test = lab.split(2, 6, seed=seed)
    zero = lab.evaluate(smol, [], test, instruction=False)["accuracy"]
    four = lab.evaluate(smol, random.Random(seed).sample(pool, 4), test, instruction=False)["accuracy"]
    print(f"seed {seed}: zero-shot {zero:.0%}, four-shot {four:.0%}")
    assert four >= zero + 0.15, (zero, four)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_calibration_helps_and_flipped_labels_are_ignored(smol, seed):
    """The notebook's claims on other splits: calibration raises the mean and narrows the spread; flips not followed."""
    pool, test = lab.split(2, 6, seed=seed)
    rows = lab.order_spread(smol, pool[:4], test, formats=("colon", "Q/A"), n_orders=2, seed=seed)
    raw, cal = [r["accuracy"] for r in rows], [r["calibrated"] for r in rows]
    print(f"seed {seed}: raw {raw}, calibrated {cal}")
    assert sum(cal) / len(cal) > sum(raw) / len(raw) + 0.05
    r = lab.evaluate(smol, lab.relabel(pool, "flipped"), test, instruction=False)
    follows = sum(p == lab.flip(e.label) for p, e in zip(r["predictions"], test)) / len(test)
    assert follows <= 0.25, follows


@pytest.mark.slow
@pytest.mark.parametrize("seeds", [(2, 3)])
def test_the_last_fact_is_retrieved_more_often_than_the_middle_ones(smol, seeds):
    """Notebook seeds (0, 1): last 50%, middle four 17%. Other lists must show the same recency."""
    acc = [sum(v) / len(v) for v in zip(*(lab.position_accuracy(smol, 6, s) for s in seeds))]
    print(f"seeds {seeds}: {acc}")
    assert acc[-1] > sum(acc[1:-1]) / 4 + 0.15, acc


@pytest.mark.slow
@pytest.mark.parametrize("seed", [2, 3])
def test_majority_and_recency_biases_on_other_draws(smol, seed):
    """Notebook seeds (0, 1). Pilot, seeds 0-5 one at a time: majority +24..+42 points raw, calibration removed
    43..100 % of it; recency +7..+10 points raw, calibration removed -100..+43 % of it (it grew in 4 of 6)."""
    _, test = lab.split(2, 6, seed=0)
    rows = [r for pair in lab.PAIRS for r in lab.label_bias(smol, test, pair, seed=seed)]
    s = lab.bias_summary(rows)
    print(f"seed {seed}: {s}")
    assert s["majority label"]["raw"] >= 0.15, s
    assert s["recency"]["raw"] >= 0.04, s
    assert s["majority label"]["removed"] >= 0.3, s
    assert s["recency"]["removed"] < s["majority label"]["removed"] - 0.2, s
    # why: 'N/A' follows the order of Africa/Europe (pilot +6..+13 points) but not of Americas/Asia (-3..+2)
    seen = [lab.recency_shift([r for r in rows if r["pair"] == pair], "content_free") for pair in lab.PAIRS]
    assert seen[0] > seen[1] + 0.02, seen
