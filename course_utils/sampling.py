"""Turning logits into the next token: temperature, top-k, top-p (nucleus) and min-p.

The filters run in Hugging Face transformers' order and with its semantics:
temperature -> top-k -> top-p -> min-p, each removing tokens by setting their logit to -inf.
"""
from __future__ import annotations

import math

import torch


def _check(temperature, top_k, top_p, min_p) -> None:
    if temperature is None or not isinstance(temperature, (int, float)) or math.isnan(temperature) \
            or temperature < 0 or math.isinf(temperature):
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
        raise ValueError(f"top_k must be None or an integer >= 1, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
    if min_p is not None and not (isinstance(min_p, (int, float)) and 0 <= min_p <= 1):
        raise ValueError(f"min_p must be None or in [0, 1], got {min_p!r}")


def filter_logits(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                  top_p: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """Scaled logits with the removed tokens set to -inf (last dimension = vocabulary)."""
    _check(temperature, top_k, top_p, min_p)
    if not torch.is_tensor(logits) or not logits.is_floating_point():
        raise TypeError("logits must be a floating-point tensor")
    if torch.isnan(logits).any():
        raise ValueError("logits contain NaN: the model produced invalid scores")
    logits = logits.float()
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
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False, stable=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        remove_sorted = cum <= (1 - top_p)                            # keeps the token crossing top_p
        remove_sorted[..., -1] = False                                # always keep the most likely
        remove = remove_sorted.scatter(-1, order, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    if min_p is not None and min_p > 0:
        p = logits.softmax(-1)
        threshold = min_p * p.max(dim=-1, keepdim=True).values
        remove = p < threshold
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
          top_p: float | None = None, min_p: float | None = None) -> torch.Tensor:
    """The final next-token distribution after every filter (sums to 1 over the vocabulary)."""
    return filter_logits(logits, temperature, top_k, top_p, min_p).softmax(-1)


def sample(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
           top_p: float | None = None, min_p: float | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw one token id per row of ``logits`` (B, V) -> (B, 1)."""
    p = probs(logits, temperature, top_k, top_p, min_p)
    if temperature == 0:
        return p.argmax(-1, keepdim=True)
    return torch.multinomial(p, 1, generator=generator)
