"""course_utils.metrics: loss yardsticks and pass@k against their formulas; BLEU / ROUGE-L by hand and against
sacrebleu and rouge-score."""
import math
import random

import pytest

from course_utils import metrics
from course_utils import metrics as M


def test_uniform_loss_and_perplexity():
    assert metrics.uniform_loss(65) == pytest.approx(4.1744, abs=1e-4)
    assert metrics.perplexity(metrics.uniform_loss(83)) == pytest.approx(83)
    assert metrics.perplexity(0) == 1
    for bad in (-0.1, float("nan"), float("inf"), 51, "2"):
        with pytest.raises(ValueError, match="loss"):
            metrics.perplexity(bad)
    with pytest.raises(ValueError, match="vocab_size"):
        metrics.uniform_loss(0)


@pytest.mark.parametrize("n,c,k", [(10, 3, 1), (10, 3, 5), (20, 0, 3), (5, 5, 2), (200, 7, 10), (50, 49, 1)])
def test_pass_at_k_equals_the_binomial_formula(n, c, k):
    assert metrics.pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k), abs=1e-12)


def test_pass_at_1_is_the_success_rate_and_bad_inputs_are_named():
    assert metrics.pass_at_k(40, 10, 1) == pytest.approx(0.25)
    with pytest.raises(ValueError, match="k must be between 1 and n=5, got 6"):
        metrics.pass_at_k(5, 1, 6)
    with pytest.raises(ValueError, match="at most n=5"):
        metrics.pass_at_k(5, 6, 1)
    with pytest.raises(ValueError, match="n must be an integer"):
        metrics.pass_at_k(5.0, 1, 1)


# ------------------------------------------------------------------ hand-worked BLEU
def test_words_is_lowercase_alphanumeric_runs():
    assert M.words("Water boils at 100°C!") == ["water", "boils", "at", "100", "c"]


def test_clipped_precision_papineni_example():
    # Papineni et al. 2002, section 2.1: "the" x7 against "the cat is on the mat" -> 2/7 (not 7/7).
    assert M.clipped_precision("the the the the the the the", ["the cat is on the mat"], 1) == pytest.approx(2 / 7)
    # with two references the clip is the larger count in any one reference
    assert M.clipped_precision("the the the the the the the", ["the cat is on the mat", "there is a cat on the mat"],
                               1) == pytest.approx(2 / 7)
    assert M.clipped_precision("the cat sat on the mat", ["the cat is on the mat"], 2) == pytest.approx(3 / 5)


def test_bleu_by_hand():
    cand, ref = "the cat sat on the mat", "the cat is on the mat"
    # p1 = 5/6, p2 = 3/5, p3 = 1/4, p4 = 0/3: no 4-gram matches, so unsmoothed BLEU is 0
    assert M.bleu(cand, ref, smooth=0) == 0.0
    # add-one for n >= 2: p2 = 4/6, p3 = 2/5, p4 = 1/4; the product is 1/18, same length so BP = 1
    assert M.bleu(cand, ref) == pytest.approx((1 / 18) ** 0.25)
    # brevity penalty: "the cat" is a perfect-precision prefix, but 2 words against 6: BP = e^(1 - 6/2)
    assert M.bleu("the cat", ref, max_n=2, smooth=0) == pytest.approx(math.exp(-2))
    assert M.brevity_penalty(7, 6) == 1.0 and M.brevity_penalty(0, 6) == 0.0
    assert M.bleu(ref, ref) == pytest.approx(1.0)


def test_bleu_rejects_bad_input():
    with pytest.raises(ValueError, match="max_n"):
        M.bleu("a b", "a b", max_n=0)
    with pytest.raises(ValueError, match="references"):
        M.corpus_bleu(["a b"], [])
    with pytest.raises(ValueError, match="smooth"):
        M.bleu("a b", "a b", smooth=-1)


# ------------------------------------------------------------------ hand-worked ROUGE-L
def test_lcs_and_rouge_l_lin_2004_example():
    # Lin 2004, section 3.1: reference "police killed the gunman"
    ref = "police killed the gunman"
    assert M.lcs_length(M.words("police kill the gunman"), M.words(ref)) == 3      # police the gunman
    assert M.rouge_l("police kill the gunman", ref) == pytest.approx(3 / 4)
    assert M.rouge_l("the gunman kill police", ref) == pytest.approx(1 / 2)       # the gunman
    assert M.rouge_l("nothing shared", ref) == 0.0
    # unequal lengths: LCS 2, P = 2/3, R = 2/4, F1 = 2PR/(P+R) = 4/7
    assert M.rouge_l("the gunman fled", ref) == pytest.approx(4 / 7)
    with pytest.raises(ValueError, match="beta"):
        M.rouge_l("a", "a", beta=0)


# ------------------------------------------------------------------ against the reference packages
def _random_sentences(seed: int, n: int):
    rng = random.Random(seed)
    vocab = "the a cat dog sat on mat is was red big small ran fast slow".split()
    out = []
    for _ in range(n):
        ref = [rng.choice(vocab) for _ in range(rng.randint(4, 14))]
        cand = [w if rng.random() < 0.6 else rng.choice(vocab) for w in ref]
        if rng.random() < 0.5:
            cand = cand[: rng.randint(4, len(cand))]
        out.append((cand, ref))
    return out


@pytest.mark.parametrize("smooth", [0.0, 1.0])
def test_corpus_bleu_matches_sacrebleu(smooth):
    pytest.importorskip("sacrebleu")
    from sacrebleu.metrics import BLEU

    scorer = BLEU(tokenize="none", smooth_method="add-k" if smooth else "none", smooth_value=smooth or None)
    for seed in range(5):
        pairs = _random_sentences(seed, 12)
        cands = [" ".join(c) for c, _ in pairs]
        refs = [" ".join(r) for _, r in pairs]
        ours = M.corpus_bleu(cands, [[r] for r in refs], smooth=smooth)
        theirs = scorer.corpus_score(cands, [refs]).score / 100
        assert ours == pytest.approx(theirs, abs=1e-9), (seed, ours, theirs)
        # one sentence at a time (sentence BLEU), and with two references each
        for c, r in zip(cands[:6], refs[:6]):
            assert M.bleu(c, r, smooth=smooth) == pytest.approx(scorer.corpus_score([c], [[r]]).score / 100, abs=1e-9)
        two = [" ".join(reversed(r.split())) for r in refs]
        ours2 = M.corpus_bleu(cands, [[r, s] for r, s in zip(refs, two)], smooth=smooth)
        theirs2 = scorer.corpus_score(cands, [refs, two]).score / 100
        assert ours2 == pytest.approx(theirs2, abs=1e-9)


def test_rouge_l_matches_rouge_score():
    rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    texts = [("Water boils at 100 degrees Celsius at sea level.", "At sea level, water boils at 100 °C."),
             ("Paris is the capital of France", "The capital of France is Paris!"),
             ("Nothing in common", "completely different words")]
    texts += [(" ".join(c), " ".join(r)) for c, r in _random_sentences(7, 30)]
    for cand, ref in texts:
        want = scorer.score(ref, cand)["rougeL"].fmeasure     # rouge-score takes (target, prediction)
        assert M.rouge_l(cand, ref) == pytest.approx(want, abs=1e-12), (cand, ref)
