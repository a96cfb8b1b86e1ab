"""Preference tuning: the losses of reward models and DPO, and a response's log-probability.

* :func:`bradley_terry_loss`: the reward-model loss. Under the Bradley–Terry model (Bradley & Terry
  1952) the chance that a person prefers answer ``c`` to answer ``r`` is ``sigma(r_c - r_r)``, where
  ``r`` is a scalar reward; training maximises the likelihood of the observed choices,
  ``loss = -mean log sigma(r_chosen - r_rejected)`` (InstructGPT's reward model, Ouyang et al. 2022,
  arXiv 2203.02155; TRL's ``RewardTrainer``).
* :func:`dpo_loss`: Direct Preference Optimization (Rafailov et al. 2023, arXiv 2305.18290, eq. 7)::

      loss = -mean log sigma(beta * [(log pi(c|x) - log ref(c|x)) - (log pi(r|x) - log ref(r|x))])

  with ``pi`` the model being tuned and ``ref`` a frozen copy of where it started. When ``pi`` equals
  ``ref`` the bracket is 0 and the loss is ``-log sigma(0) = ln 2`` exactly. ``beta * log(pi / ref)``
  is DPO's *implicit reward* of an answer.
* :func:`sequence_logprob`: ``log pi(response | prompt)``, the sum of the response tokens' log-probs
  (TRL sums them; rasbt's from-scratch DPO averages them: for responses of one fixed length the two
  differ by a constant factor, absorbed into ``beta``).
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F

from .model import GPT
from .rl import token_logprobs


def _check_beta(beta: float) -> float:
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0 (the strength of the KL leash), got {beta!r}")
    return float(beta)


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Mean of ``-log sigma(r_chosen - r_rejected)`` over a batch of preference pairs."""
    chosen_rewards, rejected_rewards = torch.as_tensor(chosen_rewards), torch.as_tensor(rejected_rewards)
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(f"chosen and rejected rewards must have the same shape, got "
                         f"{tuple(chosen_rewards.shape)} and {tuple(rejected_rewards.shape)}")
    return -F.logsigmoid(chosen_rewards - rejected_rewards).mean()


def dpo_margins(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
                ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta * [(log pi_c - log ref_c) - (log pi_r - log ref_r)]`` per pair: the implicit reward of the
    chosen answer minus that of the rejected one (> 0 means the pair is ranked right)."""
    beta = _check_beta(beta)
    return beta * ((policy_chosen_logps - ref_chosen_logps) - (policy_rejected_logps - ref_rejected_logps))


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """The DPO loss, mean of ``-log sigma(margin)`` over the pairs (:func:`dpo_margins`); ln 2 at the start."""
    return -F.logsigmoid(dpo_margins(policy_chosen_logps, policy_rejected_logps, ref_chosen_logps,
                                     ref_rejected_logps, beta)).mean()


def _as_rows(ids: torch.Tensor | Sequence[int] | Sequence[Sequence[int]]) -> torch.Tensor:
    t = torch.as_tensor(ids, dtype=torch.long)
    return t[None] if t.dim() == 1 else t


def sequence_logprob(model: GPT, prompt_ids, response_ids) -> torch.Tensor:
    """Summed log-probability of ``response_ids`` given ``prompt_ids`` under a course GPT.

    One pair (lists or 1-D tensors) gives a 0-d tensor; a batch (2-D, one row per example, all prompts of
    one length and all responses of one length) gives one value per row. Gradients flow (no ``no_grad``):
    wrap the call in ``torch.no_grad()`` for a frozen reference.
    """
    prompt, response = _as_rows(prompt_ids), _as_rows(response_ids)
    single = torch.as_tensor(prompt_ids).dim() == 1 and torch.as_tensor(response_ids).dim() == 1
    if prompt.size(0) != response.size(0):
        raise ValueError(f"{prompt.size(0)} prompts but {response.size(0)} responses")
    if prompt.size(1) < 1 or response.size(1) < 1:
        raise ValueError("prompt and response need at least one token each")
    ids = torch.cat([prompt, response], dim=1).to(next(model.parameters()).device)
    total = token_logprobs(model, ids, prompt.size(1)).sum(-1)
    return total[0] if single else total
