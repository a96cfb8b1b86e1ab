"""Turning logits into the next token: repetition penalty, temperature, top-k, top-p, min-p.

The knobs run in Hugging Face transformers' order and with its semantics:
repetition penalty -> temperature -> top-k -> top-p -> min-p, each removing tokens by
setting their logit to -inf. Temperature 0 means greedy (argmax, first index on ties).

Also here: entropy, the effective vocabulary and the top-2 margin of a distribution.
"""
from __future__ import annotations

import math
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


