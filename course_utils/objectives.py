"""Training objectives other than next-token prediction, as ``batch_fn``/``loss_fn`` pairs for ``train.train``.

Masked-token prediction (the BERT objective; Devlin et al. 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding", arXiv 1810.04805, section 3.1): choose 15 % of
the positions of a window; of those, replace 80 % by a ``[MASK]`` token, 10 % by a random token and
leave 10 % unchanged; the model (with bidirectional attention, ``GPTConfig(causal=False)``) predicts the
original token at the chosen positions only. Targets are the original tokens there and -1 (ignored)
elsewhere, so the course GPT's own loss computes the objective.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

MASK_RATE, MASK_SHARE, RANDOM_SHARE = 0.15, 0.8, 0.1     # BERT: 15 %, then 80 / 10 / 10


def mask_tokens(x: torch.Tensor, mask_id: int, vocab_size: int, generator: torch.Generator | None = None,
                rate: float = MASK_RATE, mask_share: float = MASK_SHARE,
                random_share: float = RANDOM_SHARE) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt a batch of token ids (B, T) the BERT way; return (inputs, targets).

    ``vocab_size`` counts the ordinary tokens (random replacements are drawn from ``0..vocab_size-1``;
    ``mask_id`` is usually ``vocab_size``, one extra id). Every window keeps at least one target.
    """
    if not 0 < rate <= 1 or mask_share < 0 or random_share < 0 or mask_share + random_share > 1:
        raise ValueError(f"need 0 < rate <= 1 and mask_share + random_share <= 1, got rate={rate}, "
                         f"mask_share={mask_share}, random_share={random_share}")
    if x.dim() != 2:
        raise ValueError(f"x must have shape (batch, time), got {tuple(x.shape)}")
    chosen = torch.rand(x.shape, generator=generator) < rate
    none = ~chosen.any(dim=1)                                         # a window with no target at all:
    if none.any():                                                    # choose one position at random
        cols = torch.randint(x.size(1), (int(none.sum()),), generator=generator)
        chosen[none.nonzero()[:, 0], cols] = True
    action = torch.rand(x.shape, generator=generator)
    to_mask = chosen & (action < mask_share)
    to_random = chosen & (action >= mask_share) & (action < mask_share + random_share)
    inputs = x.clone()
    inputs[to_mask] = mask_id
    inputs[to_random] = torch.randint(vocab_size, (int(to_random.sum()),), generator=generator)
    targets = torch.where(chosen, x, torch.full_like(x, -1))
    return inputs, targets


def masked_batch_fn(data: torch.Tensor, block_size: int, batch_size: int, mask_id: int, vocab_size: int,
                    **mask_kw) -> Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]:
    """A ``batch_fn`` for ``train.train``: random windows of ``data``, corrupted by :func:`mask_tokens`."""
    if len(data) < block_size:
        raise ValueError(f"data has {len(data)} tokens; need at least block_size={block_size}")

    def batch_fn(generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(data) - block_size + 1, (batch_size,), generator=generator)
        windows = data[starts[:, None] + torch.arange(block_size)]
        return mask_tokens(windows, mask_id, vocab_size, generator, **mask_kw)

    return batch_fn


def masked_lm_loss(model, batch) -> torch.Tensor:
    """The ``loss_fn``: cross-entropy at the chosen positions (targets -1 elsewhere are ignored).

    Unlike next-token prediction the targets are *not* shifted: position i predicts its own token.
    """
    inputs, targets = batch
    return model(inputs, targets).loss
