"""Speculative decoding: greedy output equals the target's, sampled tokens follow the target's
distribution (chi-square test), KVCache.crop, and clear errors."""
import itertools

import pytest
import torch
from scipy.stats import chisquare

from course_utils.model import GPT, GPTConfig, KVCache
from course_utils.speculative import (accept, expected_tokens_per_pass, residual,
                                      speculative_generate)


def tiny(seed: int, vocab: int = 4, n_embd: int = 16, block: int = 64) -> GPT:
    torch.manual_seed(seed)   # test-only global seed: builds a fixed random model
    model = GPT(GPTConfig(vocab_size=vocab, block_size=block, n_layer=2, n_head=2, n_embd=n_embd)).eval()
    with torch.no_grad():     # sharper, more different distributions than the 0.02 init
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(12.0)
    return model


def test_kv_cache_crop_matches_a_cache_built_from_the_shorter_prefix():
    model = tiny(0, vocab=10)
    ids = torch.randint(10, (1, 12), generator=torch.Generator().manual_seed(0))
    long, short = KVCache(2), KVCache(2)
    model(ids, cache=long)
    model(ids[:, :7], cache=short)
    long.crop(7)
    assert len(long) == 7
    for a, b in zip(long.k + long.v, short.k + short.v):
        torch.testing.assert_close(a, b)
    # continuing from the cropped cache equals a full recompute
    nxt = model(ids[:, 7:9], cache=long).logits
    torch.testing.assert_close(nxt, model(ids[:, :9]).logits[:, 7:9], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"crop length .* \[0, 9\]"):
        long.crop(10)
    long.crop(0)
    assert len(long) == 0


@pytest.mark.parametrize("gamma", [1, 3, 6])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_greedy_speculative_output_equals_target_greedy(gamma, seed):
    target, draft = tiny(seed, vocab=12, n_embd=32), tiny(seed + 100, vocab=12)
    prompt = torch.tensor([[1, 2, 3]])
    want = target.generate(prompt, 40, temperature=0)
    got, stats = speculative_generate(target, draft, prompt, 40, gamma=gamma, temperature=0)
    assert torch.equal(got, want)
    assert stats.new_tokens == 40 and stats.target_passes <= 40


def test_a_draft_equal_to_the_target_is_always_accepted():
    target = tiny(3, vocab=12)
    prompt = torch.tensor([[0]])
    _, stats = speculative_generate(target, target, prompt, 30, gamma=4, temperature=1.0,
                                    generator=torch.Generator().manual_seed(0))
    assert stats.acceptance_rate == 1.0
    assert stats.tokens_per_pass == pytest.approx(30 / 6)   # 5 tokens per pass: 4 drafted + 1 bonus


@torch.no_grad()
def _target_joint(target: GPT, prompt: list[int], n: int, vocab: int) -> dict[tuple, float]:
    """Exact probability of every n-token continuation under the target (temperature 1)."""
    out = {}
    for cont in itertools.product(range(vocab), repeat=n):
        logp = target(torch.tensor([prompt + list(cont)])).logits[0].log_softmax(-1)
        out[cont] = float(sum(logp[len(prompt) - 1 + i, t] for i, t in enumerate(cont)).exp())
    return out


@pytest.mark.slow
@pytest.mark.parametrize("seed,gamma", [(0, 1), (1, 2)])   # gamma 1 also draws the bonus token
def test_sampled_tokens_follow_the_target_distribution(seed, gamma):
    vocab, n, draws = 4, 2, 1500
    target, draft = tiny(seed, vocab), tiny(seed + 50, vocab)
    prompt = [1, 2]
    want = _target_joint(target, prompt, n, vocab)
    g = torch.Generator().manual_seed(seed)
    counts = dict.fromkeys(want, 0)
    draft_counts = dict.fromkeys(want, 0)
    accepted = drafted = 0
    for _ in range(draws):
        out, stats = speculative_generate(target, draft, torch.tensor([prompt]), n, gamma=gamma, generator=g)
        counts[tuple(out[0, len(prompt):].tolist())] += 1
        accepted, drafted = accepted + stats.accepted, drafted + stats.drafted
        d = draft.generate(torch.tensor([prompt]), n, temperature=1.0, generator=g)
        draft_counts[tuple(d[0, len(prompt):].tolist())] += 1
    assert 0.1 < accepted / drafted < 0.95, "both the accept and the reject path are exercised"
    keys = list(want)
    total = sum(want.values())   # 1 up to float rounding
    expected = [want[k] / total * draws for k in keys]
    p_spec = chisquare([counts[k] for k in keys], expected).pvalue
    p_draft = chisquare([draft_counts[k] for k in keys], expected).pvalue
    assert p_spec > 1e-3, f"speculative samples do not follow the target (chi-square p = {p_spec:.2g})"
    assert p_draft < 1e-6, "the test has power: the draft's own samples are told apart from the target's"


def test_acceptance_rule_and_residual():
    assert accept(0.5, 0.25, 0.99) and not accept(0.1, 0.4, 0.3) and accept(0.1, 0.4, 0.2)
    p, q = torch.tensor([0.5, 0.3, 0.2]), torch.tensor([0.2, 0.6, 0.2])
    torch.testing.assert_close(residual(p, q), torch.tensor([1.0, 0.0, 0.0]))
    # acceptance + rejection * residual reproduces p exactly (the theorem behind the method)
    alpha = torch.minimum(p, q).sum()
    torch.testing.assert_close(torch.minimum(p, q) + (1 - alpha) * residual(p, q), p)


def test_expected_tokens_per_pass_formula():
    assert expected_tokens_per_pass(0.7, 4) == pytest.approx(2.77, abs=0.01)   # Leviathan et al.'s example
    assert expected_tokens_per_pass(0.0, 4) == 1.0 and expected_tokens_per_pass(1.0, 4) == 5.0
    with pytest.raises(ValueError, match="alpha"):
        expected_tokens_per_pass(1.5, 4)


def test_bad_gamma_and_mismatched_vocabularies_are_clear_errors():
    a, b = tiny(0, vocab=5), tiny(1, vocab=6)
    with pytest.raises(ValueError, match="gamma must be an integer >= 1"):
        speculative_generate(a, a, torch.tensor([[0]]), 5, gamma=0)
    with pytest.raises(ValueError, match="share a vocabulary: target has 5 tokens, draft 6"):
        speculative_generate(a, b, torch.tensor([[0]]), 5)
    with pytest.raises(ValueError, match="exceeds the shorter context"):
        speculative_generate(a, a, torch.tensor([[0]]), 100)
