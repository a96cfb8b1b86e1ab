"""course_utils.lessons.evaluation (notebook 15): scores, the judge, contamination, pass@k, exercise checkers."""
import math

import pytest
import torch

from course_utils import metrics
from course_utils.lessons import evaluation as lab


# ------------------------------------------------------------------ reference metrics on the QA set
def test_wrong_copies_outscore_correct_paraphrases():
    rows = lab.overlap_scores()
    assert len(rows) == 2 * len(lab.QA_SET)
    for para, wrong in zip(rows[::2], rows[1::2]):
        assert para["kind"] == "paraphrase" and wrong["kind"] == "wrong"
        assert wrong["bleu"] > para["bleu"] and wrong["rouge_l"] > para["rouge_l"], para["question"]
    fig = lab.overlap_figure(rows)
    assert len(fig.data) == 2 and fig.data[1].y[0] > fig.data[0].y[0]


def test_zheng_figures_are_the_papers():
    z = lab.ZHENG_2023     # arXiv 2306.05685v4, Tables 2, 3, 5 and section 3.4
    assert (z["agreement_gpt4_human_S2"], z["agreement_human_human_S2"]) == (0.85, 0.81)
    assert z["consistency"]["GPT-4"] == 0.650 and z["biased_toward_first"]["Claude-v1"] == 0.750
    assert z["repetitive_list_failure"]["GPT-4"] == 0.087 and z["gpt4_consistency_few_shot"] == 0.775


def test_zheng_table_puts_the_paper_next_to_our_verdicts():
    rows = lab.zheng_table({"consistency": 0.125, "says_A": 1.0, "padded_wins": 0.875}).splitlines()
    assert len(rows) == 5 and all(r.count("|") == 6 for r in rows)
    assert rows[2].endswith("| 23.8% | 46.2% | 65.0% | 12% |")
    assert rows[3].endswith('| 75.0% | 50.0% | 30.0% | 100% say "A" |')
    assert rows[4].endswith("| 91.3% | 91.3% | 8.7% | 88% |")


# ------------------------------------------------------------------ exercise checkers: reference passes, wrong fails
def _raises_assertion(fn):
    with pytest.raises(AssertionError):
        fn()


def test_check_clipped_precision():
    lab.check_clipped_precision(lambda c, r, n: metrics.clipped_precision(c, [r], n))

    def unclipped(c, r, n):
        grams = [tuple(c[i:i + n]) for i in range(len(c) - n + 1)]
        ref = {tuple(r[i:i + n]) for i in range(len(r) - n + 1)}
        return sum(g in ref for g in grams) / len(grams) if grams else 0.0
    _raises_assertion(lambda: lab.check_clipped_precision(unclipped))


def test_check_lcs():
    lab.check_lcs(metrics.lcs_length)

    def common_words(a, b):           # counts shared words, ignores order: wrong
        return len(set(a) & set(b))
    _raises_assertion(lambda: lab.check_lcs(common_words))


def test_check_pass_at_k():
    lab.check_pass_at_k(lambda n, c, k: 1 - math.comb(n - c, k) / math.comb(n, k))
    _raises_assertion(lambda: lab.check_pass_at_k(lambda n, c, k: 1 - (1 - c / n) ** k))


# ------------------------------------------------------------------ pass@k estimators (no model needed)
def test_pass_at_k_estimates_unbiased_vs_naive():
    p = torch.tensor([0.0, 0.05, 0.1, 0.3, 0.6, 0.9])
    e = lab.pass_at_k_estimates(p, n=10, k=10, trials=400, seed=1)
    assert e["truth"] == pytest.approx(float((1 - (1 - p.double()) ** 10).mean()))
    assert abs(e["unbiased"] - e["truth"]) < 0.02
    assert e["naive"] < e["truth"] - 0.03
    e1 = lab.pass_at_k_estimates(p, n=10, k=1, trials=50, seed=1)
    assert e1["naive"] == pytest.approx(e1["unbiased"])          # k = 1: both are c / n
    with pytest.raises(ValueError, match="k <= n"):
        lab.pass_at_k_estimates(p, n=3, k=5)


def test_benchmark_is_seeded_and_disjoint():
    a, b = lab.make_benchmark(seed=3), lab.make_benchmark(seed=3)
    assert a.test == b.test and a.fresh == b.fresh
    names = [f[0] for f in a.web + a.test + a.fresh]
    assert len(set(names)) == len(names) and len(a.cities) >= 2
    with pytest.raises(ValueError, match="n_test"):
        lab.make_benchmark(n_test=1)
    clean, dirty = lab.training_stream(a, False), lab.training_stream(a, True)
    test_ids = {a.tokenizer.stoi[f[0]] for f in a.test}
    assert not test_ids & set(clean.tolist()) and test_ids <= set(dirty.tolist())


# ------------------------------------------------------------------ contamination (trains two small models)
@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_contamination_inflates_the_test_score_and_shows_as_a_perplexity_gap(seed):
    bench = lab.make_benchmark(seed=seed)
    dirty, dh = lab.train_model(bench, True, seed=seed, progress=False)
    clean, ch = lab.train_model(bench, False, seed=seed, progress=False)
    d, c = dh[-1], ch[-1]
    assert d["test_acc"] >= 0.9 and d["fresh_acc"] <= 0.4 and c["test_acc"] <= 0.4
    assert d["fresh_loss"] - d["test_loss"] >= 1.0
    assert abs(c["fresh_loss"] - c["test_loss"]) <= 0.6
    p = lab.correct_probs(clean, bench, bench.fresh, 1.0)
    e = lab.pass_at_k_estimates(p, n=10, k=10, seed=seed)
    assert abs(e["unbiased"] - e["truth"]) < 0.02 and e["naive"] < e["truth"] - 0.03
    curves = lab.pass_at_k_curves(clean, bench, bench.fresh)
    assert curves["T=2"][8] > curves["T=0.3"][8] + 0.15
    with pytest.raises(ValueError, match="temperature"):
        lab.correct_probs(clean, bench, bench.fresh, 0)


# ------------------------------------------------------------------ SmolLM2 as the judge
@pytest.fixture(scope="module")
def smol():
    from course_utils import lm
    from course_utils.assets import load_smollm2
    return lm.HFModel(*load_smollm2(verbose=False))


@pytest.mark.slow
def test_judge_verdict_logprobs_equal_continuation_logprobs_and_batching_is_exact(smol):
    judge = lab.Judge(smol)
    q = lab.QA_SET[1]
    triples = [(q.question, q.reference, q.wrong), (q.question, q.wrong + lab.FILLER, q.reference)]
    batched = judge.logprobs_many(triples)
    for t, (la, lb) in zip(triples, batched):
        ids = judge.prompt_ids(*t)
        want = smol.continuation_logprobs(ids, [judge.tokens[0], judge.tokens[1]])
        assert (la, lb) == pytest.approx(want, abs=1e-4)
    with pytest.raises(ValueError, match="answer B is empty"):
        judge.logprobs("q?", "a", "  ")


@pytest.mark.slow
def test_small_judge_shows_position_and_length_bias(smol):
    v = lab.judge_experiment(lab.Judge(smol), items=lab.QA_SET[:4])
    assert v["says_A"] >= 0.9 and v["consistency"] <= 0.25
    assert v["padded_wins"] >= 0.75 and v["mean_debiased_padded"] < v["mean_debiased"] - 0.1
    item = lab.QA_SET[0]
    s = lab.score_pair(lab.Judge(smol), item.question, item.reference, "Paris.", item.wrong, swap=True)
    assert s["shown_first"] == "B" and sum(s["judge"]) == pytest.approx(1.0)
    assert s["bleu"][1] > s["bleu"][0]


# ------------------------------------------------------------------ the widget, with a stand-in judge model
class _StubLM:
    """Prefers whichever answer comes first, more so when it is longer (a caricature of SmolLM2)."""

    def encode(self, text):
        return [{"A": 1, "B": 2}.get(text, 3)]

    def chat_ids(self, text, system=None):
        return [5] + [7 + len(line) % 50 for line in text.split("\n")]

    def logits(self, ids):
        out = torch.zeros(ids.shape[0], ids.shape[1], 60)
        out[:, :, 1] = 2.0 + ids[:, 2:3].float() / 50       # "A": the first answer's line length helps
        out[:, :, 2] = 1.0 + ids[:, 3:4].float() / 50
        return out


def test_pair_explorer_updates_and_reports_bad_input():
    ex = lab.PairExplorer(lab.Judge(_StubLM()))
    assert "first and prefers answer <b>A</b>" in ex.info.value
    fig_before = [list(t.y) for t in ex.figure.data]
    ex.answer_a.value = "The capital of France is Paris."
    assert [list(t.y) for t in ex.figure.data] != fig_before
    ex.swap.value = True
    assert "saw answer <b>B</b> first" in ex.info.value
    ex.answer_b.value = "   "
    assert "answer" in ex.info.value and "empty" in ex.info.value and "#cf222e" in ex.info.value
    ex.answer_b.value = "x" * 401
    assert "under 400" in ex.info.value
