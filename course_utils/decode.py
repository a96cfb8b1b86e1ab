"""Fast greedy decoding for Hugging Face causal LMs such as SmolLM2: the course's lean path.

Decoding one token at a time is memory-bound: every step reads every weight once, so the time
per token is at least (bytes of weights) / (memory bandwidth). This module makes that
measurable and cheaper:

* :func:`greedy` is a lean decode loop (one forward per token on a KV cache, argmax, nothing else);
* :func:`with_weights` returns a copy in ``"fp32"``, ``"bf16"`` or ``"int8"`` (dynamic int8
  quantisation of every Linear layer, ``torch.ao.quantization.quantize_dynamic``, with one
  activation scale per token: :class:`PerTokenInt8`): fewer bytes read per token, a quality cost;
* :func:`prompt_lookup` drafts tokens by copying what followed the last n-gram earlier in the
  prompt (Saxena's prompt-lookup decoding, 2023) and checks them in one pass: same greedy output;
* :func:`speculative_greedy` drafts with a cheap model (e.g. the int8 copy) and checks with the
  exact one (fp32): same greedy output as the exact model alone.

Every function returns ``(new token ids, stats dict)`` so the benchmark and notebook 14 compare
like with like.
"""
from __future__ import annotations

import copy
import time
import warnings

import torch

from .lm import hf_forward

# A fixed passage to measure what a lower-precision format costs in loss (nats per token).
PASSAGE = ("The printing press is a machine that presses inked type onto paper. Before it, books were copied "
           "by hand, which was slow and costly. In the fifteenth century, movable metal type made it possible "
           "to print many copies of the same page quickly, and books became cheaper and more common.")
FORMATS = ("fp32", "bf16", "int8", "int8-mixed")
# Layers whose inputs carry large outliers: dynamic int8 (which also rounds the *activations* to
# 8 bits, one scale per tensor) hurts them most. "int8-mixed" keeps them in bf16.
SENSITIVE = ("down_proj", "lm_head")


class BF16Linear(torch.nn.Module):
    """A Linear layer stored in bf16 inside an fp32 model (casts in, computes in bf16, casts out)."""

    def __init__(self, linear: torch.nn.Linear):
        super().__init__()
        self.weight = torch.nn.Parameter(linear.weight.detach().to(torch.bfloat16).clone(), requires_grad=False)
        self.bias = None if linear.bias is None else torch.nn.Parameter(
            linear.bias.detach().to(torch.bfloat16).clone(), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)


class PerTokenInt8(torch.nn.Module):
    """A dynamic-int8 Linear applied one token (row) at a time.

    Dynamic quantisation rounds a layer's *input* to 8 bits with one scale per call. On a whole
    prompt that scale is set by its most extreme token (SmolLM2's first positions carry activations
    far larger than the rest), and every other token loses its precision: measured on "The capital
    of France is", int8-mixed in one call put 0.12 on " Paris" where fp32 puts 0.77. Row by row,
    each token gets its own scale (LLM.int8's "vector-wise" scales, Dettmers et al. 2022), exactly
    as it does while decoding one token per step, so a prompt and a decode step see the same
    arithmetic. The price: a prompt of T tokens costs T matrix-vector products instead of one matmul.
    """

    def __init__(self, inner: torch.nn.Module):
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.shape[-1])
        if rows.shape[0] == 1:
            return self.inner(x)
        return torch.cat([self.inner(row[None]) for row in rows]).reshape(*x.shape[:-1], -1)


def _per_token(model):
    """Wrap every dynamic-int8 Linear of ``model`` in :class:`PerTokenInt8` (in place)."""
    for name, module in list(model.named_modules()):
        if isinstance(module, torch.ao.nn.quantized.dynamic.Linear):
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, PerTokenInt8(module))
    return model


def with_weights(model, fmt: str, per_token: bool = True):
    """A copy of ``model`` whose Linear weights are stored in ``fmt``: "fp32" (the model itself),
    "bf16" (the whole model), "int8" (every Linear, dynamic quantisation, per-token activation
    scales) or "int8-mixed" (int8 except the :data:`SENSITIVE` layers, which are bf16).
    ``per_token=False`` keeps torch's one activation scale per call (to show what it costs)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if fmt == "fp32":
        return model
    if fmt == "bf16":
        return copy.deepcopy(model).to(torch.bfloat16).eval()
    out = copy.deepcopy(model)
    names = {n for n, m in out.named_modules() if isinstance(m, torch.nn.Linear)}
    if fmt == "int8-mixed":
        for name in [n for n in names if n.split(".")[-1] in SENSITIVE]:
            parent, _, child = name.rpartition(".")
            holder = out.get_submodule(parent) if parent else out
            setattr(holder, child, BF16Linear(getattr(holder, child)))
            names.discard(name)
    with warnings.catch_warnings():      # torch points to torchao; the eager API still works
        warnings.simplefilter("ignore")
        out = torch.ao.quantization.quantize_dynamic(out, names, dtype=torch.qint8)
    return (_per_token(out) if per_token else out).eval()


def weight_bytes(model) -> int:
    """Bytes of weights one decode step reads: every Linear layer (quantised ones at 1 byte per
    weight) and every norm; an embedding table counts one row (a lookup reads one token's row)."""
    total = 0
    for m in model.modules():
        if isinstance(m, torch.nn.Embedding):
            total += m.weight[0].numel() * m.weight.element_size()
        elif isinstance(m, (torch.nn.Linear, BF16Linear)):
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
        elif hasattr(m, "_packed_params") and hasattr(m, "weight") and callable(m.weight):   # int8 Linear
            w = m.weight()
            total += w.numel() * w.element_size() + (m.bias().numel() * 4 if m.bias() is not None else 0)
        elif "Norm" in type(m).__name__:
            total += sum(p.numel() * p.element_size() for p in m.parameters(recurse=False))
    return total


def memory_bandwidth(megabytes: int = 256, repeats: int = 5) -> float:
    """This machine's measured read bandwidth in bytes/s: the best of ``repeats`` sums over a buffer."""
    x = torch.ones(megabytes * 2 ** 20 // 4)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        x.sum()
        best = min(best, time.perf_counter() - t)
    return x.numel() * 4 / best


def _forward(model, ids: torch.Tensor, cache=None):
    out, cache = hf_forward(model, ids, cache)
    return out.logits[0].float(), cache


def _crop(cache, length: int) -> None:
    """Keep the first ``length`` positions of a transformers cache (works across versions)."""
    layers = getattr(cache, "layers", None)
    if layers is None:
        cache.crop(length)
        return
    for layer in layers:
        if getattr(layer, "keys", None) is not None:
            layer.keys, layer.values = layer.keys[:, :, :length], layer.values[:, :, :length]


def _check(ids, max_new_tokens: int) -> list[int]:
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    ids = list(ids.tolist()[0] if isinstance(ids, torch.Tensor) else ids)
    if not ids:
        raise ValueError("the prompt is empty")
    return ids


@torch.inference_mode()
def greedy(model, ids, max_new_tokens: int, use_cache: bool = True) -> tuple[list[int], dict]:
    """Greedy continuation in a lean loop; stats: seconds, prefill seconds, per-step seconds."""
    seq = _check(ids, max_new_tokens)
    n_prompt, steps = len(seq), []
    t0 = time.perf_counter()
    logits, cache = _forward(model, torch.tensor([seq]))
    prefill = time.perf_counter() - t0
    for _ in range(max_new_tokens - 1):
        seq.append(int(logits[-1].argmax()))
        t = time.perf_counter()
        if use_cache:
            logits, cache = _forward(model, torch.tensor([seq[-1:]]), cache)
        else:
            logits = model(input_ids=torch.tensor([seq]), use_cache=False).logits[0].float()
        steps.append(time.perf_counter() - t)
    seq.append(int(logits[-1].argmax()))
    seconds = time.perf_counter() - t0
    return seq[n_prompt:], dict(seconds=seconds, prefill_s=prefill, step_s=steps, passes=max_new_tokens)


def _verify(model, cache, seq: list[int], proposal: list[int]) -> tuple[list[int], object]:
    """One pass of the exact model over the uncached tokens plus ``proposal``: the accepted
    proposals and the model's own next token (greedy); the cache is cropped to match."""
    start = cache.get_seq_length() if cache is not None else 0
    logits, cache = _forward(model, torch.tensor([seq[start:] + proposal]), cache)
    preds = logits[-(len(proposal) + 1):].argmax(-1).tolist()
    kept = 0
    while kept < len(proposal) and proposal[kept] == preds[kept]:
        kept += 1
    new = proposal[:kept] + [preds[kept]]
    _crop(cache, len(seq) + kept)       # the cache holds everything but the newest token
    return new, cache


def lookup_draft(seq: list[int], ngram: int = 3, max_draft: int = 8) -> list[int]:
    """Prompt lookup: find the last ``ngram`` tokens earlier in ``seq`` (latest match first, shorter
    n-grams if none) and propose the ``max_draft`` tokens that followed it; [] when nothing matches."""
    for n in range(min(ngram, len(seq) - 1), 0, -1):
        tail = seq[-n:]
        for start in range(len(seq) - n - 1, -1, -1):
            if seq[start:start + n] == tail:
                return seq[start + n:start + n + max_draft]
    return []


@torch.inference_mode()
def prompt_lookup(model, ids, max_new_tokens: int, ngram: int = 3, max_draft: int = 8) -> tuple[list[int], dict]:
    """Greedy decoding with prompt-lookup drafts; output identical to :func:`greedy`."""
    seq = _check(ids, max_new_tokens)
    n_prompt, passes, drafted, accepted = len(seq), 0, 0, 0
    t0 = time.perf_counter()
    cache = None
    while len(seq) - n_prompt < max_new_tokens:
        proposal = lookup_draft(seq, ngram, max_draft)[: max_new_tokens - (len(seq) - n_prompt) - 1]
        new, cache = _verify(model, cache, seq, proposal)
        passes, drafted, accepted = passes + 1, drafted + len(proposal), accepted + len(new) - 1
        seq += new
    return seq[n_prompt:][:max_new_tokens], dict(seconds=time.perf_counter() - t0, passes=passes,
                                                 drafted=drafted, accepted=accepted)


@torch.inference_mode()
def speculative_greedy(target, draft, ids, max_new_tokens: int, gamma: int = 4) -> tuple[list[int], dict]:
    """Greedy speculative decoding: ``draft`` proposes ``gamma`` tokens, ``target`` checks them in one
    pass. The output equals ``greedy(target, ...)``; only the time changes."""
    if not isinstance(gamma, int) or gamma < 1:
        raise ValueError(f"gamma must be an integer >= 1, got {gamma!r}")
    seq = _check(ids, max_new_tokens)
    n_prompt, passes, drafted, accepted = len(seq), 0, 0, 0
    t0 = time.perf_counter()
    t_cache = d_cache = None
    while len(seq) - n_prompt < max_new_tokens:
        g = min(gamma, max_new_tokens - (len(seq) - n_prompt) - 1)
        proposal = []
        for _ in range(g):
            start = d_cache.get_seq_length() if d_cache is not None else 0
            logits, d_cache = _forward(draft, torch.tensor([(seq + proposal)[start:]]), d_cache)
            proposal.append(int(logits[-1].argmax()))
        new, t_cache = _verify(target, t_cache, seq, proposal)
        passes, drafted, accepted = passes + 1, drafted + g, accepted + len(new) - 1
        seq += new
        if d_cache is not None:
            _crop(d_cache, min(d_cache.get_seq_length(), len(seq) - 1))
    return seq[n_prompt:][:max_new_tokens], dict(seconds=time.perf_counter() - t0, passes=passes,
                                                 drafted=drafted, accepted=accepted)


@torch.inference_mode()
def text_loss(model, ids) -> float:
    """Mean next-token cross-entropy (nats) of ``model`` on a token list: the quality cost of a format."""
    ids = torch.tensor([list(ids)])
    logits = model(input_ids=ids).logits[0, :-1].float()
    return float(torch.nn.functional.cross_entropy(logits, ids[0, 1:]))
