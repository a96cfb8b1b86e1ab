"""Integer and NF4 weight quantization, written out so every step is visible.

Schemes (``b`` = bits, ``x`` = one block of numbers that shares a scale):

* **absmax** (symmetric): ``s = max|x| / (2^(b-1) - 1)``, ``q = round(x / s)``, ``x ~ s * q``.
* **zero-point** (asymmetric): ``s = (max - min) / (2^b - 1)``, ``z = round(-min / s)``,
  ``q = clamp(round(x / s) + z, 0, 2^b - 1)``, ``x ~ s * (q - z)``.
* **NF4** (QLoRA): ``s = max|x|``, ``q`` = index of the nearest of 16 fixed levels in [-1, 1]
  (:data:`NF4_LEVELS`, copied from the QLoRA paper / bitsandbytes), ``x ~ s * level[q]``.

Which numbers share a scale (the *granularity*) of a weight matrix ``W`` (out_features, in_features):
``"tensor"`` one scale for all, ``"row"`` one per output channel, ``"group"`` one per
``group_size`` consecutive weights of a row (along the input dimension), ``"column"`` one per
input channel. This is *fake* quantization (quantize, then dequantize back to float): it
shows what the rounding costs in accuracy, not speed -- CPU PyTorch has no fast int4 kernels.

Also here: whole-model sizes, the function-preserving outlier channel (:func:`inject_outlier`),
llama.cpp's Q4_1 blocks, torch's dynamic int8 and a forward-pass timer. The loss of a model over
a text is :meth:`course_utils.lm.LanguageModel.loss`; notebook 05's widgets and figures live in
:mod:`course_utils.lessons.quantization`.
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import TYPE_CHECKING, Iterator

import torch
import torch.nn as nn

if TYPE_CHECKING:
    from .lm import LanguageModel

# The 16 NF4 levels, Appendix E of Dettmers et al. 2023 (QLoRA, arXiv 2305.14314), as in bitsandbytes.
NF4_LEVELS = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0])

SCHEMES = ("absmax", "zeropoint", "nf4")
GRANULARITIES = ("tensor", "row", "group", "column")


# ------------------------------------------------------------------------ checks
def _check_bits(bits) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 8:
        raise ValueError(f"bits must be a whole number from 2 to 8, got {bits!r}")
    return bits


def _check_scheme(scheme: str, bits: int) -> None:
    if scheme not in SCHEMES:
        raise ValueError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
    if scheme == "nf4" and bits != 4:
        raise ValueError(f"NF4 has 16 levels, so bits must be 4, got {bits}")


def _blocks(w: torch.Tensor, granularity: str, group_size: int) -> tuple[torch.Tensor, callable]:
    """A 2-D view (blocks, values per block) of ``w`` and a function that undoes it."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"unknown granularity {granularity!r}; choose one of {', '.join(GRANULARITIES)}")
    shape = w.shape
    w2 = w.reshape(1, -1) if w.dim() == 1 else w.reshape(shape[0], -1)
    if granularity == "tensor":
        return w2.reshape(1, -1), lambda b: b.reshape(shape)
    if granularity == "row":
        return w2, lambda b: b.reshape(shape)
    if granularity == "column":
        return w2.t(), lambda b: b.t().reshape(shape)
    if isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive whole number, got {group_size!r}")
    if w2.shape[1] % group_size:
        raise ValueError(f"group_size={group_size} does not divide the dimension {w2.shape[1]}; "
                         f"use one of its divisors, e.g. {[d for d in (16, 32, 64, 128) if w2.shape[1] % d == 0]}")
    return w2.reshape(-1, group_size), lambda b: b.reshape(shape)


# ------------------------------------------------------------- the three schemes
def absmax_quantize(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric quantization of each row of ``x`` (2-D: blocks x values): (int codes, scale per row)."""
    _check_bits(bits)
    qmax = 2 ** (bits - 1) - 1
    amax = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax / qmax, torch.ones_like(amax))
    q = torch.clamp(torch.round(x / scale), -qmax - 1, qmax)
    return q.to(torch.int8), scale


def absmax_dequantize(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return q.float() * scale


def zeropoint_quantize(x: torch.Tensor, bits: int = 8) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Asymmetric quantization of each row of ``x``: (codes in 0..2^b-1, scale, zero point)."""
    _check_bits(bits)
    levels = 2 ** bits - 1
    lo, hi = x.amin(dim=-1, keepdim=True), x.amax(dim=-1, keepdim=True)
    lo, hi = torch.minimum(lo, torch.zeros_like(lo)), torch.maximum(hi, torch.zeros_like(hi))  # 0 stays exact
    scale = torch.where(hi > lo, (hi - lo) / levels, torch.ones_like(hi))
    zero = torch.round(-lo / scale)
    q = torch.clamp(torch.round(x / scale) + zero, 0, levels)
    return q.to(torch.uint8), scale, zero


def zeropoint_dequantize(q: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor) -> torch.Tensor:
    return (q.float() - zero) * scale


def nf4_quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """NF4 quantization of each row of ``x``: (index 0..15 of the nearest level, absmax scale)."""
    amax = x.abs().amax(dim=-1, keepdim=True)
    scale = torch.where(amax > 0, amax, torch.ones_like(amax))
    levels = NF4_LEVELS.to(x.device)
    midpoints = (levels[1:] + levels[:-1]) / 2
    idx = torch.bucketize((x / scale).contiguous(), midpoints)   # nearest level without a 16x bigger tensor
    return idx.to(torch.uint8), scale


def nf4_dequantize(idx: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return NF4_LEVELS.to(scale.device)[idx.long()] * scale


def fake_quantize(w: torch.Tensor, bits: int = 8, scheme: str = "absmax", granularity: str = "row",
                  group_size: int = 32) -> torch.Tensor:
    """Quantize ``w`` and dequantize it again: the float tensor the quantized model computes with."""
    _check_bits(bits)
    _check_scheme(scheme, bits)
    x, undo = _blocks(w.detach().float(), granularity, group_size)
    if scheme == "absmax":
        out = absmax_dequantize(*absmax_quantize(x, bits))
    elif scheme == "zeropoint":
        out = zeropoint_dequantize(*zeropoint_quantize(x, bits))
    else:
        out = nf4_dequantize(*nf4_quantize(x))
    return undo(out).to(w.dtype)


def n_scales(shape: tuple[int, ...], granularity: str, group_size: int = 32) -> int:
    """How many scales a tensor of ``shape`` needs at a granularity."""
    x, _ = _blocks(torch.empty(shape, device="meta"), granularity, group_size)
    return x.shape[0]


def quantized_bytes(shape: tuple[int, ...], bits: int, scheme: str = "absmax", granularity: str = "row",
                    group_size: int = 32, scale_bytes: int = 2) -> float:
    """Storage of one quantized tensor: ``bits`` per weight + an fp16 scale per block
    (+ a ``bits``-bit zero point per block for the zero-point scheme)."""
    _check_bits(bits)
    _check_scheme(scheme, bits)
    numel = math.prod(shape)
    blocks = n_scales(tuple(shape), granularity, group_size)
    per_block = scale_bytes + (bits / 8 if scheme == "zeropoint" else 0)
    return numel * bits / 8 + blocks * per_block


def bits_per_weight(bits: int, group_size: int, scale_bits: int = 16, extra_bits_per_block: int = 0) -> float:
    """Average storage per weight when every ``group_size`` weights share a scale (and maybe an offset)."""
    return bits + (scale_bits + extra_bits_per_block) / group_size


# ------------------------------------------------------------------ whole models
def quantizable_linears(model: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The Linear layers whose weight is quantized: all except those sharing a weight with an
    Embedding (a tied output head stays in full precision, like the embedding)."""
    embedded = {m.weight.data_ptr() for m in model.modules() if isinstance(m, nn.Embedding)}
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m.weight.data_ptr() not in embedded]


def model_bytes(model: nn.Module, bits: int | None = None, scheme: str = "absmax", granularity: str = "row",
                group_size: int = 32) -> int:
    """Bytes to store ``model``: quantized Linear weights as :func:`quantized_bytes`, every other
    parameter at its own dtype (fp32 here). ``bits=None`` counts everything unquantized."""
    linears = {id(m.weight) for _, m in quantizable_linears(model)} if bits is not None else set()
    total, seen = 0.0, set()
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        if id(p) in linears:
            total += quantized_bytes(tuple(p.shape), bits, scheme, granularity, group_size)
        else:
            total += p.numel() * p.element_size()
    return int(math.ceil(total))


@torch.no_grad()
def _apply(model: nn.Module, bits, scheme, granularity, group_size) -> None:
    for _, m in quantizable_linears(model):
        m.weight.copy_(fake_quantize(m.weight, bits, scheme, granularity, group_size))


def quantize_model(model: nn.Module, bits: int = 8, scheme: str = "absmax", granularity: str = "row",
                   group_size: int = 32) -> nn.Module:
    """A copy of ``model`` whose Linear weights (see :func:`quantizable_linears`) are fake-quantized."""
    _check_bits(bits)
    _check_scheme(scheme, bits)
    q = copy.deepcopy(model)
    _apply(q, bits, scheme, granularity, group_size)
    return q.eval()


@contextlib.contextmanager
def quantized(model: nn.Module, bits: int = 8, scheme: str = "absmax", granularity: str = "row",
              group_size: int = 32) -> Iterator[nn.Module]:
    """``with quantized(model, 4, granularity="group"):`` -- quantize in place, restore on exit.
    Saves the memory and time of a copy for big models."""
    _check_bits(bits)
    _check_scheme(scheme, bits)
    saved = [(m, m.weight.detach().clone()) for _, m in quantizable_linears(model)]
    try:
        _apply(model, bits, scheme, granularity, group_size)
        yield model
    finally:
        with torch.no_grad():
            for m, w in saved:
                m.weight.copy_(w)


# ------------------------------------------------------------ the outlier channel
def norm_linear_pairs(model: nn.Module) -> list[tuple[nn.Module, list[nn.Linear]]]:
    """Each normalization layer with the Linear layers that read its output directly.

    Knows the two layouts of the course: the course GPT's blocks (ln1 -> qkv, ln2 -> mlp.fc) and
    Llama-style Hugging Face models such as SmolLM2 (input_layernorm -> q/k/v_proj,
    post_attention_layernorm -> gate/up_proj). This is architecture, read from the modules' names.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is not None and hasattr(blocks[0], "ln1"):
        pairs = [(b.ln1, [b.attn.qkv]) for b in model.blocks]
        return pairs + [(b.ln2, [b.mlp.fc]) for b in model.blocks if b.mlp is not None]
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is not None and hasattr(layers[0], "input_layernorm"):
        pairs = []
        for layer in layers:
            a, m = layer.self_attn, layer.mlp
            pairs.append((layer.input_layernorm, [a.q_proj, a.k_proj, a.v_proj]))
            pairs.append((layer.post_attention_layernorm, [m.gate_proj, m.up_proj]))
        return pairs
    raise ValueError(f"don't know where the norm -> Linear pairs are in a {type(model).__name__}")


@torch.no_grad()
def inject_outlier(model: nn.Module, alpha: float = 20.0, channel: int = 0) -> nn.Module:
    """A copy of ``model`` with one *weight* outlier column that does not change its function.

    For every norm -> Linear pair, the norm's gain (and bias) of ``channel`` is divided by
    ``alpha`` and column ``channel`` of each Linear weight is multiplied by ``alpha``. The Linear
    computes ``sum_j W[:, j] x_j``; its input ``x_j`` is now ``alpha`` times smaller and ``W[:, j]``
    ``alpha`` times bigger, so the product (and the model's output) is unchanged, but every weight
    row now holds one value ``alpha`` times bigger than usual. This is SmoothQuant's own
    per-channel rescaling (scale moved from the activations into the weights); applied to an
    ordinary channel it turns the weights into what LLM.int8()'s *activation* outliers look like:
    one input channel far larger than the rest, across every row.
    """
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a positive finite number, got {alpha!r}")
    out = copy.deepcopy(model)
    pairs = norm_linear_pairs(out)
    width = pairs[0][0].weight.shape[0]
    if isinstance(channel, bool) or not isinstance(channel, int) or not 0 <= channel < width:
        raise ValueError(f"channel must be a whole number in 0..{width - 1}, got {channel!r}")
    for norm, linears in pairs:
        norm.weight[channel] /= alpha
        if getattr(norm, "bias", None) is not None:
            norm.bias[channel] /= alpha
        for lin in linears:
            lin.weight[:, channel] *= alpha
    return out.eval()


# ------------------------------------------------------------ GGUF Q4_1 blocks
Q4_1_BLOCK = 32
Q4_1_BYTES = 2 + 2 + Q4_1_BLOCK // 2   # fp16 scale d, fp16 minimum m, 32 four-bit codes


def q4_1_dequantize(raw) -> torch.Tensor:
    """Decode llama.cpp Q4_1 blocks (bytes, a multiple of 20) into floats.

    Block layout: fp16 ``d``, fp16 ``m``, then 16 bytes; byte ``j`` holds code ``j`` in its low
    nibble and code ``j + 16`` in its high nibble. Weight = ``d * code + m``.
    """
    data = torch.as_tensor(bytearray(bytes(raw)) if not isinstance(raw, torch.Tensor) else raw, dtype=torch.uint8)
    data = data.reshape(-1)
    if data.numel() % Q4_1_BYTES:
        raise ValueError(f"Q4_1 data must be a multiple of {Q4_1_BYTES} bytes, got {data.numel()}")
    blocks = data.view(-1, Q4_1_BYTES)
    d = blocks[:, 0:2].contiguous().view(torch.float16).float()
    m = blocks[:, 2:4].contiguous().view(torch.float16).float()
    qs = blocks[:, 4:].long()
    codes = torch.cat([qs & 0x0F, qs >> 4], dim=1).float()
    return (d * codes + m).reshape(-1)


def q4_1_quantize(x: torch.Tensor) -> bytes:
    """Encode floats (a multiple of 32) as Q4_1 blocks, the way llama.cpp's reference code does."""
    x = x.detach().float().reshape(-1)
    if x.numel() % Q4_1_BLOCK:
        raise ValueError(f"Q4_1 needs a multiple of {Q4_1_BLOCK} values, got {x.numel()}")
    b = x.view(-1, Q4_1_BLOCK)
    lo, hi = b.amin(1, keepdim=True), b.amax(1, keepdim=True)
    d = (hi - lo) / 15
    inv = torch.where(d != 0, 1 / d, torch.zeros_like(d))
    codes = torch.clamp(torch.floor((b - lo) * inv + 0.5), 0, 15).to(torch.uint8)
    packed = codes[:, :16] | (codes[:, 16:] << 4)
    head = torch.cat([d.half().view(torch.uint8).view(-1, 2), lo.half().view(torch.uint8).view(-1, 2)], dim=1)
    return torch.cat([head, packed], dim=1).contiguous().numpy().tobytes()


def gguf_summary(path) -> list[dict]:
    """Per storage type in a GGUF file: tensors, weights, bytes and bits per weight."""
    import gguf

    reader = gguf.GGUFReader(str(path))
    rows: dict[str, dict] = {}
    for t in reader.tensors:
        r = rows.setdefault(t.tensor_type.name, {"type": t.tensor_type.name, "tensors": 0, "weights": 0, "bytes": 0})
        r["tensors"] += 1
        r["weights"] += int(t.n_elements)
        r["bytes"] += int(t.n_bytes)
    for r in rows.values():
        r["bits per weight"] = 8 * r["bytes"] / r["weights"]
    return sorted(rows.values(), key=lambda r: -r["weights"])


# ------------------------------------------------------ real int8 on the CPU
def dynamic_int8(model: nn.Module, skip: tuple[str, ...] = ()) -> nn.Module:
    """A copy of ``model`` with torch's dynamic int8 Linear layers (int8 weights per tensor; each
    activation is quantized to int8 on the fly, one scale per tensor). The tied output head and
    layers whose name contains a string in ``skip`` stay fp32."""
    import warnings

    names = {n for n, _ in quantizable_linears(model) if not any(s in n for s in skip)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")      # torch.ao's deprecation notice (moving to torchao)
        return torch.ao.quantization.quantize_dynamic(model, names, dtype=torch.qint8)


def state_dict_bytes(model: nn.Module) -> int:
    """Size of ``torch.save(model.state_dict())``: what the model takes on disk."""
    import io

    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    return buf.tell()


@torch.no_grad()
def time_forward(lm: "LanguageModel", ids: torch.Tensor, repeats: int = 3) -> dict:
    """Best-of-``repeats`` CPU and wall seconds of one forward pass of a :class:`course_utils.lm.LanguageModel`
    on ``ids`` (1, T), after a warm-up."""
    import time

    def run():
        return lm.logits(ids)

    run()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"cpu_s": min(cpu), "wall_s": min(wall)}


@torch.no_grad()
def activation_outliers(lm: "LanguageModel", ids: torch.Tensor) -> list[dict]:
    """For every quantizable Linear of a :class:`course_utils.lm.LanguageModel`: the largest and the median
    |input activation| on ``ids`` (1, T), and the input channel holding the largest one. Sorted by
    max/median, biggest first."""
    rows, hooks = [], []
    for name, mod in quantizable_linears(lm.model):
        def hook(mod, inp, out, name=name):
            a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).float()
            rows.append({"layer": name, "max |x|": a.max().item(), "median |x|": a.median().item(),
                         "channel": int(a.amax(0).argmax())})
        hooks.append(mod.register_forward_hook(hook))
    try:
        lm.logits(ids)
    finally:
        for h in hooks:
            h.remove()
    for r in rows:
        r["max / median"] = r["max |x|"] / max(r["median |x|"], 1e-12)
    return sorted(rows, key=lambda r: -r["max / median"])
