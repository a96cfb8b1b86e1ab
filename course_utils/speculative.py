"""Speculative decoding for course GPT models: a small draft proposes, the big target checks.

Leviathan, Kalman and Matias, "Fast Inference from Transformers via Speculative Decoding"
(2023, arXiv 2211.17192) and Chen et al., "Accelerating Large Language Model Decoding with
Speculative Sampling" (2023, arXiv 2302.01318). One round:

1. the draft samples gamma tokens x_1..x_gamma, one at a time, from its distributions q_i;
2. the target scores all of them in ONE forward pass, giving p_1..p_{gamma+1};
3. left to right, x_i is kept with probability min(1, p_i(x_i) / q_i(x_i)); at the first
   rejection the replacement is drawn from norm(max(0, p_i - q_i)) and the round ends;
4. if all gamma are kept, one bonus token is drawn from p_{gamma+1}.

Every generated token is then distributed exactly as if the target had sampled it alone. With
temperature 0 both models are greedy (q and p are one-hot) and the output is the target's own
greedy output. With acceptance rate alpha, a target pass yields (1 - alpha^(gamma+1)) / (1 - alpha)
tokens on average (Leviathan et al., eq. 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .model import GPT, KVCache


@dataclass
class SpecStats:
    """What happened during one call: target passes, draft proposals and how many were kept."""
    gamma: int
    target_passes: int = 0
    drafted: int = 0
    accepted: int = 0
    new_tokens: int = 0
    accepted_per_round: list[int] = field(default_factory=list)

    @property
    def acceptance_rate(self) -> float:
        """Share of drafted tokens the target kept."""
        return self.accepted / self.drafted if self.drafted else 0.0

    @property
    def tokens_per_pass(self) -> float:
        """New tokens per target forward pass (1.0 for plain decoding)."""
        return self.new_tokens / self.target_passes if self.target_passes else 0.0


def expected_tokens_per_pass(alpha: float, gamma: int) -> float:
    """(1 - alpha^(gamma+1)) / (1 - alpha): expected tokens per target pass (Leviathan et al., eq. 1)."""
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    if not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
    return float(gamma + 1) if alpha == 1.0 else (1 - alpha ** (gamma + 1)) / (1 - alpha)


def _dist(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Next-token probabilities at ``temperature`` (one-hot argmax at temperature 0)."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.size(-1)).float()
    return torch.softmax(logits / temperature, dim=-1)


def _draw(p: torch.Tensor, generator: torch.Generator | None) -> int:
    return int(torch.multinomial(p, 1, generator=generator).item())


def _feed(model: GPT, cache: KVCache, seq: list[int]) -> torch.Tensor:
    """Feed the tokens of ``seq`` the cache has not seen; logits (n_fed, V) of those positions."""
    fed = torch.tensor([seq[len(cache):]])
    return model(fed, cache=cache).logits[0]


def accept(p_x: float, q_x: float, u: float) -> bool:
    """The acceptance rule: keep a drafted token with probability min(1, p(x) / q(x)).

    ``p_x``, ``q_x``: the target's and the draft's probability of the drafted token (q_x > 0, since
    the draft sampled it); ``u``: a uniform draw in [0, 1)."""
    return u < min(1.0, p_x / q_x)


def residual(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """norm(max(0, p - q)): where to sample after a rejection (falls back to p if p <= q everywhere)."""
    r = (p - q).clamp(min=0)
    total = r.sum()
    return r / total if total > 0 else p


@torch.no_grad()
def speculative_generate(target: GPT, draft: GPT, idx: torch.Tensor, max_new_tokens: int, gamma: int = 4,
                         temperature: float = 1.0, generator: torch.Generator | None = None
                         ) -> tuple[torch.Tensor, SpecStats]:
    """Append ``max_new_tokens`` tokens to ``idx`` (1, T) by speculative decoding; (tokens, stats).

    ``temperature`` 0 is greedy and returns exactly ``target.generate(idx, n, temperature=0)``.
    Prompt plus new tokens must fit both models' contexts (no sliding window here).
    """
    if not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma must be an integer >= 1 (tokens drafted per round), got {gamma!r}")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"target and draft must share a vocabulary: target has {target.config.vocab_size} "
                         f"tokens, draft {draft.config.vocab_size}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not temperature >= 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if idx.dim() != 2 or idx.size(0) != 1 or idx.size(1) < 1:
        raise ValueError(f"idx must be one non-empty sequence of shape (1, T), got {tuple(idx.shape)}")
    context = min(target.config.block_size, draft.config.block_size)
    if idx.size(1) + max_new_tokens > context:
        raise ValueError(f"prompt ({idx.size(1)}) + {max_new_tokens} new tokens exceeds the shorter context "
                         f"of the two models ({context} tokens)")
    modes = target.training, draft.training
    target.eval(), draft.eval()
    seq = idx[0].tolist()
    goal = len(seq) + max_new_tokens
    stats = SpecStats(gamma)
    t_cache, d_cache = KVCache(target.config.n_layer), KVCache(draft.config.n_layer)
    while len(seq) < goal:
        g = min(gamma, goal - len(seq))          # never draft past the end
        # 1. the draft proposes g tokens, one at a time (its cache holds all but the newest token)
        proposal, qs = [], []
        for _ in range(g):
            q = _dist(_feed(draft, d_cache, seq + proposal)[-1], temperature)
            proposal.append(_draw(q, generator) if temperature > 0 else int(q.argmax()))
            qs.append(q)
        # 2. the target scores the newest accepted token and all g proposals in one pass
        ps = _dist(_feed(target, t_cache, seq + proposal)[-(g + 1):], temperature)
        stats.target_passes += 1
        stats.drafted += g
        # 3. keep proposals left to right while the acceptance test passes
        kept, extra = 0, None
        for i, x in enumerate(proposal):
            u = float(torch.rand((), generator=generator)) if temperature > 0 else 0.0
            if temperature == 0:
                ok = int(ps[i].argmax()) == x
            else:
                ok = accept(float(ps[i, x]), float(qs[i][x]), u)
            if not ok:
                r = residual(ps[i], qs[i])
                extra = _draw(r, generator) if temperature > 0 else int(ps[i].argmax())
                break
            kept += 1
        if extra is None:                         # 4. all kept: a bonus token from the target
            extra = _draw(ps[g], generator) if temperature > 0 else int(ps[g].argmax())
        stats.accepted += kept
        stats.accepted_per_round.append(kept)
        seq = seq + proposal[:kept] + [extra]
        # both caches forget the rejected proposals (they must hold all but the newest token)
        t_cache.crop(min(len(t_cache), len(seq) - 1))
        d_cache.crop(min(len(d_cache), len(seq) - 1))
    seq = seq[:goal]
    stats.new_tokens = goal - idx.size(1)
    target.train(modes[0]), draft.train(modes[1])
    return torch.tensor([seq], dtype=idx.dtype), stats
