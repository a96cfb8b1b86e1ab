"""Policy-gradient fine-tuning of a course GPT with a reward that a program computes.

The recipe of reasoning models such as DeepSeek-R1 (arXiv 2501.12948), in miniature:

1. **Roll out**: for each prompt sample a *group* of ``G`` completions from the current model.
2. **Reward**: a program scores each completion (e.g. 1 if the answer is exactly right, else 0).
3. **Advantage**: how much better a completion did than its group. ``normalize=True`` is GRPO's
   ``A_i = (r_i - mean(r)) / (std(r) + eps)`` (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300);
   ``normalize=False`` is REINFORCE with the group mean as baseline, ``A_i = r_i - mean(r)`` (as
   nanochat's ``chat_rl.py``). A group where every answer scores the same teaches nothing (A = 0).
4. **Loss**: ``-mean_t A_i log pi(y_t | x, y_<t)`` over the completions' tokens, plus optionally
   ``beta * KL(pi || pi_ref)`` to a frozen reference model, estimated per token with GRPO's unbiased,
   always non-negative estimator ``exp(q - p) - (q - p) - 1`` (p = log pi, q = log pi_ref; Schulman
   2020, "Approximating KL divergence").

One gradient step per fresh batch (on-policy), so PPO's probability ratio is 1 and its clipping
never acts: the gradient is exactly the REINFORCE gradient. Plug :func:`rollout` into
``train.train``'s ``batch_fn`` and :func:`policy_loss` into its ``loss_fn``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from .model import GPT


@dataclass
class Rollouts:
    """A batch of sampled completions, ready for :func:`policy_loss`."""
    ids: torch.Tensor            # (N, T + L) prompt + completion tokens, N = prompts x group size
    n_prompt: int                # T: prompt tokens (all prompts of a batch have the same length)
    mask: torch.Tensor           # (N, L) 1.0 for completion tokens up to and including the end token
    rewards: torch.Tensor        # (N,)
    advantages: torch.Tensor     # (N,)
    ref_logprobs: torch.Tensor | None = None   # (N, L) under the frozen reference, if any


def group_advantages(rewards: torch.Tensor, normalize: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """Advantages of rewards shaped (groups, G): reward minus its group's mean, divided by the group's
    standard deviation (population std) when ``normalize`` (GRPO)."""
    if rewards.dim() != 2 or rewards.size(1) < 2:
        raise ValueError(f"rewards must have shape (groups, group size >= 2), got {tuple(rewards.shape)}")
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not normalize:
        return centred
    return centred / (rewards.std(dim=1, keepdim=True, unbiased=False) + eps)


def completion_mask(new_ids: torch.Tensor, end_id: int | None) -> torch.Tensor:
    """1.0 for every generated token up to and including the first ``end_id`` (all of them if none)."""
    if end_id is None:
        return torch.ones_like(new_ids, dtype=torch.float)
    is_end = (new_ids == end_id).long()
    after_end = (is_end.cumsum(dim=1) - is_end) > 0          # strictly after the first end token
    return (~after_end).float()


def token_logprobs(model: GPT, ids: torch.Tensor, n_prompt: int) -> torch.Tensor:
    """log pi(token) for every completion token ``ids[:, n_prompt:]`` (N, L), with gradients."""
    logits = model(ids[:, :-1]).logits[:, n_prompt - 1:]
    return torch.gather(F.log_softmax(logits.float(), dim=-1), 2, ids[:, n_prompt:, None])[..., 0]


def kl_estimate(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi: exp(q - p) - (q - p) - 1 >= 0."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


@torch.no_grad()
def rollout(model: GPT, prompts: torch.Tensor, reward_fn: Callable[[int, list[int]], float], group_size: int,
            max_new_tokens: int, end_id: int | None = None, temperature: float = 1.0,
            generator: torch.Generator | None = None, reference: GPT | None = None,
            normalize: bool = True) -> Rollouts:
    """Sample ``group_size`` completions of each prompt (rows of ``prompts``, equal lengths) and score them.

    ``reward_fn(prompt_index, completion_ids)`` is the program that checks an answer.
    """
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 (advantages compare answers within a group), got {group_size}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 for exploration, got {temperature}")
    B, T = prompts.shape
    ids = model.generate(prompts.repeat_interleave(group_size, dim=0), max_new_tokens, temperature=temperature,
                         generator=generator)
    new = ids[:, T:]
    mask = completion_mask(new, end_id)
    rewards = torch.tensor([float(reward_fn(i // group_size, row[:int(m.sum())]))
                            for i, (row, m) in enumerate(zip(new.tolist(), mask))])
    adv = group_advantages(rewards.view(B, group_size), normalize).view(-1)
    ref = None
    if reference is not None:
        ref = token_logprobs(reference, ids, T)
    return Rollouts(ids, T, mask, rewards, adv, ref)


def policy_loss(model: GPT, batch: Rollouts, kl_coef: float = 0.0) -> torch.Tensor:
    """-mean over completion tokens of A * log pi (+ kl_coef * KL estimate to the reference)."""
    if kl_coef < 0:
        raise ValueError(f"kl_coef must be >= 0, got {kl_coef}")
    logp = token_logprobs(model, batch.ids, batch.n_prompt)
    per_token = -batch.advantages[:, None] * logp
    if kl_coef > 0:
        if batch.ref_logprobs is None:
            raise ValueError("kl_coef > 0 needs rollouts made with a reference model")
        per_token = per_token + kl_coef * kl_estimate(logp, batch.ref_logprobs)
    return (per_token * batch.mask).sum() / batch.mask.sum().clamp(min=1)


def frozen_copy(model: GPT) -> GPT:
    """A frozen copy of ``model`` to serve as the KL reference."""
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def sample_pass_counts(model: GPT, prompts: Sequence[torch.Tensor], check: Callable[[int, list[int]], bool],
                       n_samples: int, max_new_tokens: int, end_id: int | None = None, temperature: float = 1.0,
                       generator: torch.Generator | None = None) -> list[int]:
    """For each prompt (1-D tensors; equal lengths are decoded together), how many of ``n_samples``
    sampled completions ``check`` accepts: the ``c`` of ``metrics.pass_at_k(n_samples, c, k)``."""
    counts = [0] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for T, rows in sorted(by_len.items()):
        batch = torch.stack([prompts[i] for i in rows]).repeat_interleave(n_samples, dim=0)
        new = model.generate(batch, max_new_tokens, temperature=temperature, generator=generator)[:, T:]
        mask = completion_mask(new, end_id)
        for j, (row, m) in enumerate(zip(new.tolist(), mask)):
            i = rows[j // n_samples]
            counts[i] += bool(check(i, row[:int(m.sum())]))
    return counts
