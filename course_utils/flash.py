"""Attention without the T x T matrix: tiled attention with an online softmax (FlashAttention's idea).

Dao et al., "FlashAttention: Fast and Memory-Efficient Exact Attention with IO-Awareness" (2022,
arXiv 2205.14135). Keys and values are read in tiles of ``tile`` positions; for every query the
running maximum m, the running denominator l and the running weighted sum o are updated per tile:

    m' = max(m, max_j s_j)        l' = l * exp(m - m') + sum_j exp(s_j - m')
    o' = o * exp(m - m') + sum_j exp(s_j - m') v_j          and at the end  out = o / l

which is exactly softmax(s) v, but only a (T, tile) block of scores ever exists at once.
"""
from __future__ import annotations

import math

import torch


def tiled_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = True,
                    tile: int = 64) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) [+ causal mask]) v, one key/value tile at a time.

    q: (..., T, d), k and v: (..., S, d). With ``causal`` the T queries are the newest T of S
    positions (as :func:`course_utils.model.causal_mask`)."""
    if not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be an integer >= 1, got {tile!r}")
    T, S, d = q.size(-2), k.size(-2), q.size(-1)
    scale = 1.0 / math.sqrt(d)
    m = torch.full(q.shape[:-1] + (1,), float("-inf"), dtype=q.dtype, device=q.device)
    l = torch.zeros_like(m)
    o = torch.zeros_like(q)
    rows = torch.arange(T, device=q.device)[:, None] + (S - T)       # each query's position
    for start in range(0, S, tile):
        kt, vt = k[..., start:start + tile, :], v[..., start:start + tile, :]
        s = (q @ kt.transpose(-2, -1)) * scale                       # (..., T, tile): the only scores held
        if causal:
            cols = torch.arange(start, start + kt.size(-2), device=q.device)[None, :]
            s = s.masked_fill(cols > rows, float("-inf"))
        m_new = torch.maximum(m, s.amax(-1, keepdim=True))
        safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)   # rows with nothing yet
        correction = torch.exp(m - safe)
        p = torch.exp(s - safe)
        l = l * correction + p.sum(-1, keepdim=True)
        o = o * correction + p @ vt
        m = m_new
    return o / l


def score_bytes(T: int, heads: int = 1, bytes_per_value: int = 4, tile: int | None = None) -> int:
    """Bytes of attention scores held at once: the full T x T matrix, or a T x tile block when tiled."""
    return heads * T * (T if tile is None else min(tile, T)) * bytes_per_value
