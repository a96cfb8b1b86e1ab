"""Turning logits into the next token: repetition penalty, temperature, top-k, top-p, min-p.

The knobs run in Hugging Face transformers' order and with its semantics:
repetition penalty -> temperature -> top-k -> top-p -> min-p, each removing tokens by
setting their logit to -inf. Temperature 0 means greedy (argmax, first index on ties).

Also here: entropy, the text-quality metrics of notebook 04 (distinct-n, repeated n-grams)
and the checkers of its exercises.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def check_knobs(temperature, top_k, top_p, min_p, repetition_penalty=1.0) -> None:
    if not _is_number(temperature) or math.isnan(temperature) or temperature < 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and not (_is_number(top_p) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
    if min_p is not None and not (_is_number(min_p) and 0 <= min_p <= 1):
        raise ValueError(f"min_p must be None or in [0, 1], got {min_p!r}")
    if not (_is_number(repetition_penalty) and 0 < repetition_penalty < math.inf):
        raise ValueError(f"repetition_penalty must be a finite number > 0 (1 = off), got {repetition_penalty!r}")


def _check_logits(logits) -> None:
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor")
    if logits.dim() == 0 or logits.size(-1) == 0:
        raise ValueError(f"logits need a vocabulary dimension, got shape {tuple(logits.shape)}")
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN: the model produced invalid scores")
    if torch.isposinf(logits).any():
        raise ValueError("logits contain +inf: the scores must be finite (or -inf for banned tokens)")
    if torch.isneginf(logits).all(-1).any():
        raise ValueError("every logit of a row is -inf: no token is left to pick")


def apply_repetition_penalty(logits: torch.Tensor, context, penalty: float) -> torch.Tensor:
    """CTRL's repetition penalty (Keskar et al. 2019), as transformers applies it.

    Every token id that occurs in ``context`` (the prompt and what was generated so far)
    gets its logit divided by ``penalty`` when positive and multiplied when negative, so
    ``penalty > 1`` makes repeats less likely. ``context``: ids as a list, (T,) or (B, T).
    """
    check_knobs(1.0, None, None, None, penalty)
    if penalty == 1.0 or context is None:
        return logits
    ctx = torch.as_tensor(context, dtype=torch.long, device=logits.device)
    if ctx.numel() == 0:
        return logits
    squeeze = logits.dim() == 1
    scores = logits.unsqueeze(0) if squeeze else logits
    if ctx.dim() == 1:
        ctx = ctx.unsqueeze(0).expand(scores.size(0), -1)
    if ctx.dim() != 2 or ctx.size(0) != scores.size(0):
        raise ValueError(f"context shape {tuple(ctx.shape)} does not match logits shape {tuple(logits.shape)}")
    if ctx.min() < 0 or ctx.max() >= scores.size(-1):
        raise ValueError(f"context ids must be in 0..{scores.size(-1) - 1}, got {ctx.min().item()}..{ctx.max().item()}")
    seen = torch.gather(scores, -1, ctx)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    out = scores.scatter(-1, ctx, seen)
    return out.squeeze(0) if squeeze else out


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None, *,
                  repetition_penalty: float = 1.0, context=None) -> torch.Tensor:
    """Scaled logits with the removed tokens set to -inf (last dimension = vocabulary)."""
    check_knobs(temperature, top_k, top_p, min_p, repetition_penalty)
    _check_logits(logits)
    logits = logits.float()
    logits = apply_repetition_penalty(logits, context, repetition_penalty)
    neg_inf = torch.tensor(float("-inf"), dtype=logits.dtype, device=logits.device)
    if temperature == 0:
        # Greedy: keep only the first maximum (argmax is deterministic on ties).
        keep = torch.zeros_like(logits, dtype=torch.bool).scatter_(-1, logits.argmax(-1, keepdim=True), True)
        return torch.where(keep, logits, neg_inf)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = torch.where(logits < kth, neg_inf, logits)          # ties with the k-th are kept
    if top_p is not None and top_p < 1.0:
        # Sort ascending; a stable sort puts tied tokens in index order, so ties are cut
        # deterministically (the lower id goes first).
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False, stable=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove_sorted = cum <= (1 - top_p)                            # keeps the token crossing top_p
        remove_sorted[..., -1] = False                                # always keep the most likely
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    if min_p is not None and min_p > 0:
        p = logits.softmax(-1)
        threshold = min_p * p.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(p < threshold, float("-inf"))
    return logits


def probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
          top_p: float | None = None, min_p: float | None = None, *,
          repetition_penalty: float = 1.0, context=None) -> torch.Tensor:
    """The final next-token distribution after every filter (sums to 1 over the vocabulary)."""
    return filter_logits(logits, temperature, top_k, top_p, min_p,
                         repetition_penalty=repetition_penalty, context=context).softmax(-1)


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, min_p: float | None = None,
           generator: torch.Generator | None = None, *,
           repetition_penalty: float = 1.0, context=None) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (B, V) -> (B, 1)."""
    p = probs(logits, temperature, top_k, top_p, min_p, repetition_penalty=repetition_penalty, context=context)
    if temperature == 0:
        return p.argmax(-1, keepdim=True)
    return torch.multinomial(p, 1, generator=generator)


# ----------------------------------------------------------------- measures
def entropy(p: torch.Tensor) -> torch.Tensor:
    """Shannon entropy in nats over the last dimension (0 * log 0 counts as 0)."""
    p = p.float()
    return 0.0 - (p * torch.where(p > 0, p.log(), torch.zeros_like(p))).sum(-1) + 0.0   # + 0.0 turns -0.0 into 0.0


def kept(p: torch.Tensor) -> torch.Tensor:
    """How many tokens still have non-zero probability: the effective vocabulary."""
    return (p > 0).sum(-1)


def top2_margin(logits: torch.Tensor) -> torch.Tensor:
    """Logit of the best token minus that of the runner-up (small = a near-tie)."""
    top = torch.topk(logits.float(), 2, dim=-1).values
    return top[..., 0] - top[..., 1]


def _ngrams(tokens: Sequence, n: int) -> list[tuple]:
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    tokens = list(tokens)
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def distinct_n(tokens: Sequence, n: int) -> float:
    """Unique n-grams / all n-grams (Li et al. 2016): 1 = nothing repeats, near 0 = a loop.

    ``tokens``: a string (characters) or a list of token ids. Texts shorter than n give 1.0.
    """
    grams = _ngrams(tokens, n)
    return len(set(grams)) / len(grams) if grams else 1.0


def repeated_ngram_share(tokens: Sequence, n: int) -> float:
    """Share of positions covered by an n-gram that occurs at least twice in the text.

    0 = no n-gram repeats; 1 = the whole text is made of repeated n-grams (a loop).
    """
    grams = _ngrams(tokens, n)
    if not grams:
        return 0.0
    counts: dict[tuple, int] = {}
    for g in grams:
        counts[g] = counts.get(g, 0) + 1
    covered = [False] * len(list(tokens))
    for i, g in enumerate(grams):
        if counts[g] > 1:
            for j in range(i, i + n):
                covered[j] = True
    return sum(covered) / len(covered)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    import numpy as np

    def ranks(v):
        v = np.asarray(v, dtype=float)
        order = v.argsort(kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v), dtype=float)
        for value in np.unique(v):            # average the ranks of ties
            tie = v == value
            r[tie] = r[tie].mean()
        return r
    if len(x) != len(y) or len(x) < 3:
        raise ValueError(f"need two sequences of equal length >= 3, got {len(x)} and {len(y)}")
    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


# ------------------------------------------------------ exercise checkers
def _exercise_logits(seed: int = 0, rows: int = 6, vocab: int = 50) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(rows, vocab, generator=g) * torch.linspace(0.5, 4.0, rows)[:, None]


def _as_probs(out, shape, what: str) -> torch.Tensor:
    assert torch.is_tensor(out), f"{what} should return a tensor, got {type(out).__name__}"
    assert tuple(out.shape) == tuple(shape), f"{what} should keep the shape {tuple(shape)}, got {tuple(out.shape)}"
    out = out.detach().float()
    assert not torch.isnan(out).any(), f"{what} returned NaN"
    assert torch.allclose(out.sum(-1), torch.ones(out.shape[:-1]), atol=1e-4), \
        f"{what} should return probabilities that sum to 1 (got sums like {out.sum(-1)[0].item():.4f})"
    return out


def check_temperature(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``fn(logits, temperature) -> probabilities`` for temperature > 0, compared exactly."""
    logits = _exercise_logits(1)
    for t in (0.3, 1.0, 2.5):
        got = _as_probs(fn(logits.clone(), t), logits.shape, f"temperature={t}")
        want = probs(logits, temperature=t)
        assert torch.allclose(got, want, atol=1e-5), (
            f"at temperature {t} the probabilities differ from the reference by up to "
            f"{(got - want).abs().max().item():.3g}: divide the logits by the temperature, then softmax")


def _same_filtered(got: torch.Tensor, want: torch.Tensor, setting: str) -> None:
    """The student's filtered distribution keeps exactly the reference's tokens, renormalised."""
    assert torch.equal(got > 0, want > 0), (
        f"with {setting} you keep {(got > 0).sum(-1).tolist()} tokens per row, the reference keeps "
        f"{(want > 0).sum(-1).tolist()}")
    assert torch.allclose(got, want, atol=1e-5), f"with {setting} the kept tokens are right but not renormalised"


def check_top_k(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """``fn(logits, k) -> probabilities`` keeping the k most likely tokens, compared exactly."""
    logits = _exercise_logits(2)
    for k in (1, 5, 20, 50):
        _same_filtered(_as_probs(fn(logits.clone(), k), logits.shape, f"top_k={k}"), probs(logits, top_k=k),
                       f"k={k}")


def check_top_p(fn: Callable[[torch.Tensor, float], torch.Tensor]) -> None:
    """``fn(logits, p) -> probabilities`` of the nucleus (crossing token kept), compared exactly."""
    handmade = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    got = _as_probs(fn(handmade.clone(), 0.6), handmade.shape, "top_p=0.6")
    assert (got > 0).sum().item() == 2, (
        "for probabilities [0.5, 0.3, 0.15, 0.05] and p=0.6 the nucleus is {0.5, 0.3}: keep the token that "
        f"crosses p, not only those below it (you kept {(got > 0).sum().item()} tokens)")
    logits = _exercise_logits(3)
    for p in (0.1, 0.5, 0.9, 0.99):
        _same_filtered(_as_probs(fn(logits.clone(), p), logits.shape, f"top_p={p}"), probs(logits, top_p=p),
                       f"p={p}")


SAMPLER_SETTINGS = ((1.0, None, None), (0.5, None, None), (1.5, 3, None), (1.0, None, 0.7))


def check_sampler(fn: Callable[..., int], draws: int = 2500, tolerance: float = 0.04) -> None:
    """``fn(logits, temperature, top_k, top_p, generator) -> token id``, checked statistically.

    Draws ``draws`` tokens per setting; every frequency must be within ``tolerance`` of the
    reference probability (about 4 standard errors) and removed tokens must never appear.
    """
    logits = torch.tensor([2.0, 1.5, 1.0, 0.5, 0.0, -0.5, -1.0, -2.0])
    g = torch.Generator().manual_seed(1234)
    for t, k, p in SAMPLER_SETTINGS:
        want = probs(logits, temperature=t, top_k=k, top_p=p)
        counts = torch.zeros_like(want)
        for _ in range(draws):
            tok = fn(logits.clone(), t, k, p, g)
            tok = int(tok.item() if torch.is_tensor(tok) else tok)
            assert 0 <= tok < len(logits), f"token id {tok} is outside 0..{len(logits) - 1}"
            counts[tok] += 1
        freq = counts / draws
        label = f"temperature={t}, top_k={k}, top_p={p}"
        banned = (want == 0) & (counts > 0)
        assert not banned.any(), f"with {label} you drew token(s) {banned.nonzero().flatten().tolist()}, which the filters remove"
        worst = (freq - want).abs().max().item()
        assert worst <= tolerance, (
            f"with {label} the frequencies {[round(f, 3) for f in freq.tolist()]} are up to {worst:.3f} away "
            f"from the probabilities {[round(f, 3) for f in want.tolist()]}")
