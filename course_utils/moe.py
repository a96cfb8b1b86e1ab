"""A mixture-of-experts feed-forward layer for the course GPT (top-k routing, load-balancing loss).

A router (one Linear layer) scores ``n_experts`` small MLPs for every token; the token goes to its
``top_k`` best experts and their outputs are mixed with the router's softmax weights renormalised
over the chosen ones. Only the chosen experts run, so *active* parameters per token are a fraction
of the total. Switch Transformer (Fedus, Zoph and Shazeer, 2021, arXiv 2101.03961) adds an
auxiliary loss  N * sum_i f_i * P_i  (f_i: share of tokens routed to expert i, P_i: mean router
probability of expert i), which is smallest when usage is uniform; without it routing tends to
collapse onto a few experts.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .model import GPT, GPTConfig


class Expert(nn.Module):
    """One expert: Linear -> GELU -> Linear with ``hidden`` units."""

    def __init__(self, n_embd: int, hidden: int):
        super().__init__()
        self.fc, self.proj = nn.Linear(n_embd, hidden), nn.Linear(hidden, n_embd)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))


class MoE(nn.Module):
    """Top-k mixture of ``n_experts`` experts; keeps the last routing and its balancing loss."""

    def __init__(self, n_embd: int, n_experts: int = 4, top_k: int = 1, hidden: int | None = None):
        super().__init__()
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in [1, n_experts={n_experts}], got {top_k}")
        self.top_k, self.n_experts = top_k, n_experts
        self.router = nn.Linear(n_embd, n_experts, bias=False)
        self.experts = nn.ModuleList(Expert(n_embd, hidden or 4 * n_embd) for _ in range(n_experts))
        self.last_choice: torch.Tensor | None = None     # (tokens, top_k) expert ids
        self.aux_loss = torch.tensor(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.reshape(-1, shape[-1])
        probs = self.router(x).softmax(-1)                        # (N, E)
        weight, choice = probs.topk(self.top_k, dim=-1)           # (N, k)
        weight = weight / weight.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            rows, slot = (choice == e).nonzero(as_tuple=True)
            if rows.numel():
                out.index_add_(0, rows, weight[rows, slot, None] * expert(x[rows]))
        f = F.one_hot(choice[:, 0], self.n_experts).float().mean(0)   # share routed (first choice)
        self.aux_loss = self.n_experts * (f * probs.mean(0)).sum()
        self.last_choice = choice.detach()
        return out.reshape(shape)


def moe_gpt(cfg: GPTConfig, n_experts: int = 4, top_k: int = 1, hidden: int | None = None) -> GPT:
    """A course GPT whose every MLP is replaced by a :class:`MoE` layer."""
    model = GPT(cfg)
    for block in model.blocks:
        block.mlp = MoE(cfg.n_embd, n_experts, top_k, hidden)
    return model


def aux_loss(model: GPT) -> torch.Tensor:
    """Sum of the balancing losses of every MoE layer after the last forward pass."""
    return sum(b.mlp.aux_loss for b in model.blocks if isinstance(b.mlp, MoE))


def active_parameters(model: GPT) -> int:
    """Parameters one token uses: all but the experts it is not routed to."""
    total = model.num_parameters()
    for b in model.blocks:
        if isinstance(b.mlp, MoE):
            per_expert = sum(p.numel() for p in b.mlp.experts[0].parameters())
            total -= (b.mlp.n_experts - b.mlp.top_k) * per_expert
    return total


def dense_equivalent(cfg: GPTConfig, top_k: int = 1, hidden: int | None = None) -> GPT:
    """A dense GPT whose MLP has as many active parameters as ``top_k`` experts of ``hidden`` units."""
    model = GPT(cfg)
    h = (hidden or 4 * cfg.n_embd) * top_k
    for block in model.blocks:
        block.mlp = Expert(cfg.n_embd, h)
    return model


