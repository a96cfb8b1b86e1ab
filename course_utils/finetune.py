"""Fine-tuning a course GPT: LoRA adapters, supervised fine-tuning targets, new token rows.

* :func:`add_lora` / :func:`merge_lora`: LoRA (Hu et al. 2021, arXiv 2106.09685). A frozen linear
  layer ``y = W x + b`` gets a trainable low-rank update, ``y = W x + b + (alpha / r) * B A x`` with
  ``A`` (r x in) and ``B`` (out x r). ``B`` starts at zero, so at initialisation the adapted model
  computes exactly what the base model computes; ``A`` starts Kaiming-uniform (as in the paper's
  reference code and Hugging Face ``peft``). Trainable parameters: ``r * (in + out)`` per layer.
* :func:`sft_targets` / :func:`sft_batch`: supervised fine-tuning (SFT) pairs, prompt -> response,
  as next-token inputs and targets, with the prompt's targets set to the ignore index (-1) so
  the loss is computed on the response only (as nanochat's ``chat_sft.py`` and TRL's default).
* :func:`greedy_matches`: for prompt -> answer pairs, does greedy decoding write exactly the answer?
  (one teacher-forced forward pass; the evaluation of every SFT experiment in the course).
* :func:`grow_embeddings`: new rows in the token embedding (and the tied output head) for
  special tokens added with ``Vocabulary.add_special_tokens``; the old rows stay as they were.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn as nn

from .model import GPT

IGNORE = -1                      # the ignore index of GPT.forward's cross-entropy
LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")   # the linear layers of a course block


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``(alpha / rank) * B @ A``."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, generator: torch.Generator | None = None):
        super().__init__()
        self.base, self.rank, self.alpha = base, rank, alpha
        self.scale = alpha / rank
        for p in base.parameters():
            p.requires_grad_(False)
        self.A = nn.Parameter(torch.empty(rank, base.in_features))
        self.B = nn.Parameter(torch.zeros(base.out_features, rank))
        # Kaiming-uniform with a = sqrt(5), nn.Linear's own default (bound = 1 / sqrt(in_features))
        bound = 1 / math.sqrt(base.in_features)
        with torch.no_grad():
            self.A.uniform_(-bound, bound, generator=generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + (x @ self.A.T @ self.B.T) * self.scale

    def merged(self) -> nn.Linear:
        """A plain ``nn.Linear`` with ``W + (alpha / rank) * B @ A`` as its weight."""
        out = nn.Linear(self.base.in_features, self.base.out_features, bias=self.base.bias is not None)
        with torch.no_grad():
            out.weight.copy_(self.base.weight + self.scale * self.B @ self.A)
            if self.base.bias is not None:
                out.bias.copy_(self.base.bias)
        return out


def _adaptable(model: GPT, targets: Sequence[str] | None) -> list[tuple[nn.Module, str, nn.Linear]]:
    targets = LORA_TARGETS if targets is None else tuple(targets)
    unknown = [t for t in targets if t not in LORA_TARGETS]
    if unknown or not targets:
        raise ValueError(f"unknown LoRA target(s) {unknown!r}; choose among {list(LORA_TARGETS)}")
    found = []
    for block in model.blocks:
        for name in targets:
            parent_name, child = name.split(".")
            parent = getattr(block, parent_name, None)
            layer = getattr(parent, child, None) if parent is not None else None
            if isinstance(layer, LoRALinear):
                raise ValueError(f"{name} already has a LoRA adapter (merge_lora first)")
            if isinstance(layer, nn.Linear):
                found.append((parent, child, layer))
    if not found:
        raise ValueError(f"the model has no layer named {list(targets)} (an attention-only model has no MLP)")
    return found


def add_lora(model: GPT, rank: int, alpha: float | None = None, targets: Sequence[str] | None = None,
             seed: int = 0) -> GPT:
    """Put LoRA adapters on the chosen linear layers of every block (default: all of them), in place.

    Every base weight of the model (embeddings and LayerNorms included) is frozen; only the
    adapters' ``A`` and ``B`` train. ``alpha`` defaults to ``rank`` (scale 1, as ``peft``'s
    defaults r = 8, lora_alpha = 8). Returns the model.
    """
    if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
        raise ValueError(f"LoRA rank must be an integer >= 1, got {rank!r}")
    alpha = float(rank if alpha is None else alpha)
    if not alpha > 0:
        raise ValueError(f"LoRA alpha must be > 0, got {alpha!r}")
    layers = _adaptable(model, targets)
    for parent, child, layer in layers:
        limit = min(layer.in_features, layer.out_features)
        if rank > limit:
            raise ValueError(f"LoRA rank {rank} is larger than layer {child}'s dimension "
                             f"({layer.in_features} -> {layer.out_features}); use a rank between 1 and {limit}")
    for p in model.parameters():
        p.requires_grad_(False)
    g = torch.Generator().manual_seed(seed)
    device = next(model.parameters()).device
    for parent, child, layer in layers:
        setattr(parent, child, LoRALinear(layer, rank, alpha, g).to(device))
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: GPT) -> GPT:
    """Fold every adapter into its layer's weight (``W <- W + (alpha / r) B A``), in place; all
    parameters trainable again. The merged model runs as fast as the base model."""
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, LoRALinear):
                setattr(module, name, child.merged().to(child.A.device))
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def lora_parameter_count(model: GPT, rank: int, targets: Sequence[str] | None = None) -> int:
    """``sum over adapted layers of rank * (in + out)``, computed from the layer shapes (no adapters needed)."""
    return sum(rank * (layer.in_features + layer.out_features) for _, _, layer in _adaptable(model, targets))


def adam_state_bytes(model: nn.Module) -> int:
    """Bytes AdamW keeps for ``model``'s trainable parameters: two float32 moments each (measured on
    a real ``torch.optim.AdamW`` after one step on a copy, so the model itself is untouched)."""
    import copy

    clone = copy.deepcopy(model)
    params = [p for p in clone.parameters() if p.requires_grad]
    if not params:
        return 0
    opt = torch.optim.AdamW(params, lr=0.0)
    for p in params:
        p.grad = torch.zeros_like(p)
    opt.step()
    return sum(t.numel() * t.element_size() for state in opt.state.values() for t in state.values()
               if torch.is_tensor(t) and t.dim() > 0)


# ------------------------------------------------------------------ SFT data
def sft_targets(prompt_ids: Sequence[int], response_ids: Sequence[int],
                mask_prompt: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for one prompt -> response pair: ``seq = prompt + response``,
    ``inputs = seq[:-1]``, ``targets = seq[1:]``, and with ``mask_prompt`` every target that is a
    prompt token set to the ignore index -1. The first response token (predicted from the last
    prompt token) is always a target."""
    prompt, response = list(prompt_ids), list(response_ids)
    if not prompt:
        raise ValueError("the prompt is empty: SFT needs at least one prompt token to condition on")
    if not response:
        raise ValueError("the response is empty: there would be nothing to learn")
    seq = torch.tensor(prompt + response, dtype=torch.long)
    inputs, targets = seq[:-1].clone(), seq[1:].clone()
    if mask_prompt:
        targets[: len(prompt) - 1] = IGNORE
    return inputs, targets


def sft_batch(pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int, mask_prompt: bool = True,
              max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A right-padded batch of :func:`sft_targets`: inputs padded with ``pad_id``, targets with -1
    (padding is never learned; causal attention means it never affects the real positions)."""
    rows = [sft_targets(p, r, mask_prompt) for p, r in pairs]
    T = max(len(x) for x, _ in rows)
    if max_len is not None and T > max_len:
        raise ValueError(f"a prompt + response is {T + 1} tokens; the model's context is {max_len + 1}")
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), IGNORE, dtype=torch.long)
    for i, (xi, yi) in enumerate(rows):
        x[i, : len(xi)], y[i, : len(yi)] = xi, yi
    return x, y


@torch.no_grad()
def greedy_matches(model: GPT, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], pad_id: int) -> torch.Tensor:
    """One bool per (prompt_ids, answer_ids) pair: would greedy decoding after the prompt write
    exactly ``answer_ids``? (End the answer with the end token to also require that the model stops.)

    Greedy decoding reproduces the answer iff, fed the right prefix, the model's top token is the
    right one at every answer position, so one teacher-forced forward pass of the batch
    (:func:`sft_batch`, response-only targets) decides it, with no generation loop. The model is
    evaluated in eval mode and left in the mode it was in."""
    x, y = sft_batch(pairs, pad_id)
    was = model.training
    model.eval()
    pred = model(x).logits.argmax(-1)
    model.train(was)
    return ((pred == y) | (y == IGNORE)).all(-1)


# ------------------------------------------------------------ new token rows
def grow_embeddings(model: GPT, n_new: int, seed: int = 0) -> list[int]:
    """Append ``n_new`` rows to the token embedding (and the output head: the same matrix when tied),
    in place; return the new ids. Old rows are copied unchanged. New rows start at the mean of the old
    rows plus small noise (std 0.02, the course init) so a new token starts as an "average" token."""
    if not isinstance(n_new, int) or n_new < 1:
        raise ValueError(f"n_new must be an integer >= 1, got {n_new!r}")
    old = model.tok_emb.weight.data
    V, C = old.shape
    g = torch.Generator().manual_seed(seed)
    new_rows = old.mean(0, keepdim=True) + 0.02 * torch.randn(n_new, C, generator=g).to(old)
    emb = nn.Embedding(V + n_new, C).to(old.device)
    with torch.no_grad():
        emb.weight.copy_(torch.cat([old, new_rows]))
    model.tok_emb = emb
    if model.config.tie_weights:
        model.head = nn.Linear(C, V + n_new, bias=False).to(old.device)
        model.head.weight = model.tok_emb.weight
    else:
        head = nn.Linear(C, V + n_new, bias=False).to(old.device)
        with torch.no_grad():
            head.weight.copy_(torch.cat([model.head.weight, model.head.weight.mean(0, keepdim=True)
                                         + 0.02 * torch.randn(n_new, C, generator=g).to(old)]))
        model.head = head
    model.config.vocab_size = V + n_new
    return list(range(V, V + n_new))


def without_dropout(model: GPT) -> GPT:
    """Set every dropout probability of the model to 0, in place (config included); return it.

    Dropout draws its masks from torch's *global* generator, so a fine-tuning run with dropout
    depends on whatever ran before it in the process. Without dropout a run depends only on its
    ``seed`` (the batches and the LoRA init come from local generators): the same seed gives the
    same model in every process."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "dropout", None), float):
            module.dropout = 0.0
    model.config.dropout = 0.0
    return model
