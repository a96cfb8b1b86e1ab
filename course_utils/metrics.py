"""Numbers that say how good a model is: loss-based yardsticks and the pass@k estimator.

Used by the training, evaluation and reasoning notebooks. Text-overlap metrics (BLEU, ROUGE)
join them here when the evaluation notebook lands.
"""
from __future__ import annotations

import math


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
