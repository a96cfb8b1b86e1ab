"""Loss yardsticks and the unbiased pass@k estimator, against their formulas."""
import math

import pytest

from course_utils import metrics


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
