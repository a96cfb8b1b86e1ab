"""Numbers that say how good a model is: loss-based yardsticks, the pass@k estimator, and the
text-overlap metrics BLEU and ROUGE-L.

Used by the training, evaluation and reasoning notebooks. BLEU and ROUGE-L are written from their
definitions (Papineni et al. 2002; Lin 2004) and tested against ``sacrebleu`` and ``rouge-score``.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from typing import Sequence


def _check_loss(loss) -> float:
    if not isinstance(loss, (int, float)) or isinstance(loss, bool) or not math.isfinite(loss) \
            or not 0 <= loss <= 50:
        raise ValueError(f"loss must be a number in [0, 50] nats, got {loss!r}")
    return float(loss)


def uniform_loss(vocab_size: int) -> float:
    """Cross-entropy of a model that spreads its bet evenly over ``vocab_size`` tokens: ln(V)."""
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 1:
        raise ValueError(f"vocab_size must be an integer >= 1, got {vocab_size!r}")
    return math.log(vocab_size)


def perplexity(loss: float) -> float:
    """e^loss: the number of equally likely choices that would give the same loss."""
    return math.exp(_check_loss(loss))


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` are correct (Chen et al. 2021, arXiv 2107.03374):

        pass@k = 1 - C(n - c, k) / C(n, k)

    the probability that at least one of ``k`` samples drawn without replacement from the ``n`` is
    correct. Computed as a running product, which stays exact for large ``n``.
    """
    for name, v in (("n", n), ("c", c), ("k", k)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {v!r}")
    if not 1 <= k <= n:
        raise ValueError(f"k must be between 1 and n={n}, got {k}")
    if c > n:
        raise ValueError(f"c (correct samples) must be at most n={n}, got {c}")
    if n - c < k:
        return 1.0
    fail = 1.0
    for i in range(n - c + 1, n + 1):          # C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i)
        fail *= 1.0 - k / i
    return 1.0 - fail


# --------------------------------------------------------------- text overlap: BLEU and ROUGE-L
def words(text: str) -> list[str]:
    """Lower-cased runs of letters and digits: the tokenizer of the ``rouge-score`` package
    (``"Water boils at 100°C!"`` -> ``['water', 'boils', 'at', '100', 'c']``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return re.findall(r"[a-z0-9]+", text.lower())


def _tokens(x: str | Sequence[str]) -> list[str]:
    return words(x) if isinstance(x, str) else list(x)


def ngrams(tokens: Sequence[str], n: int) -> Counter:
    """Counts of the ``n``-grams (tuples of ``n`` consecutive tokens) of a token list."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    return Counter(tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1))


def clipped_counts(candidate: Sequence[str], references: Sequence[Sequence[str]], n: int) -> tuple[int, int]:
    """(matched, total) ``n``-grams of ``candidate``: each n-gram counts at most as often as it occurs
    in the one reference where it occurs most (Papineni et al. 2002, "modified n-gram precision")."""
    cand = ngrams(candidate, n)
    most = Counter()
    for ref in references:
        for gram, c in ngrams(ref, n).items():
            most[gram] = max(most[gram], c)
    return sum(min(c, most[gram]) for gram, c in cand.items()), sum(cand.values())


def clipped_precision(candidate: str | Sequence[str], references: Sequence[str | Sequence[str]], n: int) -> float:
    """Modified ``n``-gram precision of one candidate: matched / total (0 when it has no n-grams)."""
    matched, total = clipped_counts(_tokens(candidate), [_tokens(r) for r in references], n)
    return matched / total if total else 0.0


def brevity_penalty(candidate_length: int, reference_length: int) -> float:
    """BP = 1 if c > r else exp(1 - r / c): short candidates cannot win on precision alone."""
    if candidate_length <= 0:
        return 0.0
    return 1.0 if candidate_length > reference_length else math.exp(1 - reference_length / candidate_length)


def corpus_bleu(candidates: Sequence[str | Sequence[str]], references: Sequence[Sequence[str | Sequence[str]]],
                max_n: int = 4, smooth: float = 0.0) -> float:
    """BLEU (Papineni et al. 2002) of a corpus, in [0, 1]:

        BLEU = BP * exp( (1/N) * sum_{n=1..N} log p_n )

    ``p_n``: clipped n-gram precision summed over all sentences; ``BP``: brevity penalty with
    ``c`` the total candidate length and ``r`` the sum of the reference lengths closest to each
    candidate (ties: the shorter). ``references[i]`` lists the references of ``candidates[i]``.
    ``smooth`` > 0 adds ``smooth`` to matched and total counts for n >= 2 (Lin & Och 2004's add-one
    when 1; ``sacrebleu``'s ``add-k``), so one missing 4-gram does not zero a short sentence.
    Strings are split with :func:`words`; pass token lists to use your own tokenizer.
    """
    if len(candidates) != len(references) or not candidates:
        raise ValueError(f"need one list of references per candidate, got {len(candidates)} candidates "
                         f"and {len(references)} reference lists")
    if isinstance(max_n, bool) or not isinstance(max_n, int) or not 1 <= max_n <= 8:
        raise ValueError(f"max_n must be an integer in [1, 8], got {max_n!r}")
    if not (isinstance(smooth, (int, float)) and 0 <= smooth <= 10):
        raise ValueError(f"smooth must be a number in [0, 10], got {smooth!r}")
    matched, total = [0] * max_n, [0] * max_n
    c_len = r_len = 0
    for cand, refs in zip(candidates, references):
        if isinstance(refs, str) or not refs:
            raise ValueError("each candidate needs a non-empty list of references (wrap a single one in [...])")
        cand, refs = _tokens(cand), [_tokens(r) for r in refs]
        for n in range(1, max_n + 1):
            m, t = clipped_counts(cand, refs, n)
            matched[n - 1] += m
            total[n - 1] += t
        c_len += len(cand)
        r_len += min((abs(len(r) - len(cand)), len(r)) for r in refs)[1]
    if matched[0] == 0:
        return 0.0
    log_p = 0.0
    for n in range(max_n):
        m, t = (matched[n] + smooth, total[n] + smooth) if n > 0 else (matched[n], total[n])
        if m == 0 or t == 0:
            return 0.0
        log_p += math.log(m / t)
    return brevity_penalty(c_len, r_len) * math.exp(log_p / max_n)


def bleu(candidate: str | Sequence[str], references: str | Sequence[str | Sequence[str]],
         max_n: int = 4, smooth: float = 1.0) -> float:
    """Sentence BLEU of one candidate against one reference (a str) or several (a list), in [0, 1].

    Add-one smoothed by default: without it, any answer with no matching 4-gram scores 0.
    """
    refs = [references] if isinstance(references, str) else list(references)
    return corpus_bleu([candidate], [refs], max_n=max_n, smooth=smooth)


def lcs_length(a: Sequence, b: Sequence) -> int:
    """Length of the longest common subsequence (in order, not necessarily contiguous) of ``a`` and ``b``,
    by dynamic programming: L[i][j] = L[i-1][j-1] + 1 if a[i] == b[j] else max(L[i-1][j], L[i][j-1])."""
    prev = [0] * (len(b) + 1)
    for x in a:
        row = [0]
        for j, y in enumerate(b):
            row.append(prev[j] + 1 if x == y else max(prev[j + 1], row[j]))
        prev = row
    return prev[-1]


def rouge_l(candidate: str | Sequence[str], reference: str | Sequence[str], beta: float = 1.0) -> float:
    """ROUGE-L F-measure (Lin 2004) in [0, 1], from the longest common subsequence (LCS):

        R = LCS / len(reference),  P = LCS / len(candidate),  F = (1 + beta^2) R P / (R + beta^2 P)

    ``beta`` = 1 weighs precision and recall equally (the ``rouge-score`` package's rougeL).
    """
    if not (isinstance(beta, (int, float)) and 0 < beta <= 100):
        raise ValueError(f"beta must be a number in (0, 100], got {beta!r}")
    cand, ref = _tokens(candidate), _tokens(reference)
    lcs = lcs_length(cand, ref)
    if lcs == 0:
        return 0.0
    r, p = lcs / len(ref), lcs / len(cand)
    return (1 + beta ** 2) * r * p / (r + beta ** 2 * p)
