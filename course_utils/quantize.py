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
"""
from __future__ import annotations

import contextlib
import copy
import math
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

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

    Knows the course GPT (ln1 -> qkv, ln2 -> mlp.fc) and Llama-style Hugging Face models such as
    SmolLM2 (input_layernorm -> q/k/v_proj, post_attention_layernorm -> gate/up_proj).
    """
    from .model import GPT

    if isinstance(model, GPT):
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
    """A copy of ``model`` with one outlier input channel that does not change its function.

    For every norm -> Linear pair, the norm's gain (and bias) of ``channel`` is divided by
    ``alpha`` and column ``channel`` of each Linear weight is multiplied by ``alpha``: the product
    is the same, but every weight row now holds one value ``alpha`` times bigger than usual --
    like the outlier features of large LLMs (LLM.int8(), SmoothQuant, AWQ).
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


# ------------------------------------------------------------------- evaluation
@torch.no_grad()
def lm_loss(model: nn.Module, ids: torch.Tensor, window: int = 256, batch_size: int = 8) -> float:
    """Mean next-token cross-entropy over a fixed 1-D token tensor, cut into non-overlapping windows.

    Works for the course GPT and for Hugging Face causal LMs; the same ``ids`` give comparable
    numbers before and after quantization.
    """
    from .model import GPT

    if ids.dim() != 1 or len(ids) < window + 1:
        raise ValueError(f"ids must be a 1-D tensor with more than window={window} tokens, got {tuple(ids.shape)}")
    n = (len(ids) - 1) // window
    x = ids[: n * window].view(n, window)
    y = ids[1: n * window + 1].view(n, window)
    total = 0.0
    model.eval()
    for i in range(0, n, batch_size):
        xb, yb = x[i:i + batch_size], y[i:i + batch_size]
        logits = model(xb).logits if isinstance(model, GPT) else model(input_ids=xb).logits
        total += F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), yb.reshape(-1), reduction="sum").item()
    return total / y.numel()


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


# ------------------------------------------------------------ exercise checkers
def check_absmax_int8(fn) -> None:
    """Exercise: ``fn(x) -> (q, scale)`` for a 1-D tensor, absmax int8 with one scale."""
    g = torch.Generator().manual_seed(7)
    for x in (torch.randn(16, generator=g), torch.randn(100, generator=g) * 5, torch.tensor([0.5, -2.0, 1.0, 0.0])):
        out = fn(x.clone())
        assert isinstance(out, tuple) and len(out) == 2, "return a tuple (q, scale)"
        q, scale = out
        q = torch.as_tensor(q)
        assert q.dtype == torch.int8, f"q should be torch.int8 (use .to(torch.int8)), got {q.dtype}"
        assert q.shape == x.shape, f"q should have the shape of x {tuple(x.shape)}, got {tuple(q.shape)}"
        scale = float(scale)
        assert math.isclose(scale, x.abs().max().item() / 127, rel_tol=1e-5), \
            f"scale should be max|x| / 127 = {x.abs().max().item() / 127:.6f}, got {scale:.6f}"
        assert int(q.abs().max()) == 127, "the largest |x| should map to +-127"
        ref, _ = absmax_quantize(x.view(1, -1), 8)
        assert torch.equal(q, ref.view(-1)), "some codes differ from round(x / scale): round, don't truncate"


def check_int4_size_gb(answer: float, params: float = 7e9, group_size: int = 64) -> None:
    """Exercise: bytes of a ``params`` model at 4 bits + one fp16 scale per ``group_size`` weights, in GB (1e9)."""
    truth = params * bits_per_weight(4, group_size) / 8 / 1e9
    assert isinstance(answer, (int, float)), f"return a number of GB, got {type(answer).__name__}"
    assert not math.isclose(answer, params * 4 / 8 / 1e9, rel_tol=1e-3), \
        "close, but you forgot the scales: one 16-bit number per group of 64 weights"
    assert not math.isclose(answer, params * 4 / 1e9, rel_tol=1e-3), "that's bits, not bytes: divide by 8"
    assert math.isclose(answer, truth, rel_tol=0.01), f"{answer} GB is not right (within 1%)"


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
def time_forward(model: nn.Module, ids: torch.Tensor, repeats: int = 3) -> dict:
    """Best-of-``repeats`` CPU and wall seconds of one forward pass on ``ids`` (1, T), after a warm-up."""
    import time
    from .model import GPT

    def run():
        return model(ids) if isinstance(model, GPT) else model(input_ids=ids)

    run()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        run()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return {"cpu_s": min(cpu), "wall_s": min(wall)}


@torch.no_grad()
def activation_outliers(model: nn.Module, ids: torch.Tensor) -> list[dict]:
    """For every quantizable Linear: the largest and the median |input activation| on ``ids`` (1, T),
    and the input channel holding the largest one. Sorted by max/median, biggest first."""
    from .model import GPT

    rows, hooks = [], []
    for name, mod in quantizable_linears(model):
        def hook(mod, inp, out, name=name):
            a = inp[0].detach().abs().reshape(-1, inp[0].shape[-1]).float()
            rows.append({"layer": name, "max |x|": a.max().item(), "median |x|": a.median().item(),
                         "channel": int(a.amax(0).argmax())})
        hooks.append(mod.register_forward_hook(hook))
    try:
        model(ids) if isinstance(model, GPT) else model(input_ids=ids)
    finally:
        for h in hooks:
            h.remove()
    for r in rows:
        r["max / median"] = r["max |x|"] / max(r["median |x|"], 1e-12)
    return sorted(rows, key=lambda r: -r["max / median"])


# ------------------------------------------------------------------- plots
SCHEME_COLORS = {"original": "#444444", "absmax": "#1f77b4", "zeropoint": "#ff7f0e", "group": "#2ca02c",
                 "nf4": "#9467bd"}


def vector_schemes(x: torch.Tensor, bits: int = 4, group_size: int = 8) -> dict[str, torch.Tensor]:
    """``x`` (1-D) dequantized under absmax, zero-point, per-group absmax and NF4 (4 bits only)."""
    out = {"absmax": fake_quantize(x, bits, "absmax", "tensor"),
           "zeropoint": fake_quantize(x, bits, "zeropoint", "tensor"),
           "group": fake_quantize(x, bits, "absmax", "group", group_size)}
    if bits == 4:
        out["nf4"] = fake_quantize(x, 4, "nf4", "tensor")
    return out


def vector_quantizer(n: int = 16, seed: int = 0, group_size: int = 8):
    """Widget: ``n`` values from N(0, 1), the last one an outlier you set; every scheme's
    dequantized values and errors, redrawn live."""
    import ipywidgets as widgets
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if n % group_size:
        raise ValueError(f"group_size={group_size} must divide n={n}")
    base = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    outlier = widgets.FloatSlider(value=1.0, min=-20.0, max=20.0, step=0.5, description="outlier",
                                  continuous_update=False)
    bits = widgets.IntSlider(value=4, min=2, max=8, description="bits", continuous_update=False)
    fig = go.FigureWidget(make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                                        row_heights=[0.6, 0.4],
                                        subplot_titles=("values", "error = dequantized - original")))
    names = ["original", "absmax", "zeropoint", "group", "nf4"]
    labels = {"original": "original", "absmax": "absmax (1 scale)", "zeropoint": "zero-point (1 scale + offset)",
              "group": f"absmax per group of {group_size}", "nf4": "NF4 (1 scale)"}
    for name in names:
        fig.add_scatter(x=list(range(n)), y=[0] * n, mode="markers", name=labels[name], row=1, col=1,
                        marker=dict(color=SCHEME_COLORS[name], size=11 if name == "original" else 8,
                                    symbol="circle-open" if name == "original" else "x"))
    for name in names[1:]:
        fig.add_bar(x=list(range(n)), y=[0] * n, name=labels[name], showlegend=False, row=2, col=1,
                    marker_color=SCHEME_COLORS[name])
    fig.update_layout(title="Vector quantization: original vs dequantized", height=560, barmode="group",
                      margin=dict(l=60, r=20, t=80, b=40))
    fig.update_xaxes(title_text="index (the last value is the outlier)", row=2, col=1)
    mse = widgets.HTML()

    def redraw(_=None):
        x = base.clone()
        x[-1] = outlier.value
        deq = vector_schemes(x, bits.value, group_size)
        parts = []
        with fig.batch_update():
            fig.data[0].y = x.tolist()
            for i, name in enumerate(names[1:]):
                visible = name in deq
                y = deq[name] if visible else torch.zeros(n)
                fig.data[1 + i].y, fig.data[1 + i].visible = y.tolist(), visible
                fig.data[5 + i].y, fig.data[5 + i].visible = (y - x).tolist(), visible
                if visible:
                    err = ((y - x)[:-1] ** 2).mean().item()
                    parts.append(f"{labels[name]}: <b>{err:.4f}</b>")
        mse.value = "Mean squared error on the 15 ordinary values: " + " &nbsp;|&nbsp; ".join(parts) + \
            ("" if bits.value == 4 else " &nbsp;(NF4 exists only at 4 bits)")

    outlier.observe(redraw, names="value")
    bits.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([outlier, bits]), mse, fig])


def levels_figure() -> "go.Figure":
    """The 16 int4 absmax levels vs the 16 NF4 levels on [-1, 1], over a standard normal density
    scaled to the same range (what NF4 is designed for)."""
    import plotly.graph_objects as go

    int4 = torch.arange(-7, 8) / 7
    xs = torch.linspace(-1, 1, 201)
    # N(0,1) quantiles up to ~ the 0.9677 quantile (1.848) are mapped to +-1 in QLoRA's construction
    density = torch.exp(-0.5 * (xs * 1.848) ** 2)
    fig = go.Figure()
    fig.add_scatter(x=xs.tolist(), y=(density * 0.9).tolist(), mode="lines", name="normal density (scaled)",
                    line=dict(color="#bbbbbb"))
    fig.add_scatter(x=int4.tolist(), y=[0.3] * len(int4), mode="markers", name="int4 absmax levels (15 used)",
                    marker=dict(symbol="line-ns-open", size=22, color=SCHEME_COLORS["absmax"], line_width=2))
    fig.add_scatter(x=NF4_LEVELS.tolist(), y=[0.6] * 16, mode="markers", name="NF4 levels (16)",
                    marker=dict(symbol="line-ns-open", size=22, color=SCHEME_COLORS["nf4"], line_width=2))
    fig.update_layout(title="Where the 4-bit levels sit", height=320, yaxis=dict(visible=False),
                      xaxis_title="value / absmax of the block", margin=dict(l=30, r=20, t=50, b=50))
    return fig


def loss_vs_bits_figure(rows: list[dict], baseline: float, title: str) -> "go.Figure":
    """Validation loss against bits, one line per granularity. ``rows``: dicts with bits,
    granularity and loss."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for gran in dict.fromkeys(r["granularity"] for r in rows):
        pts = sorted((r["bits"], r["loss"]) for r in rows if r["granularity"] == gran)
        fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=gran)
    fig.add_hline(y=baseline, line_dash="dot", annotation_text="fp32")
    fig.update_layout(title=title, xaxis_title="bits per weight (before scales)", yaxis_title="validation loss (nats)",
                      height=380, margin=dict(l=60, r=20, t=50, b=50))
    fig.update_xaxes(autorange="reversed", dtick=1)
    return fig


def model_quantizer(model: nn.Module, ids: torch.Tensor, sample=None, window: int = 256):
    """Widget: pick bits, scheme, granularity and an outlier strength, press the button, and get the
    validation loss, the size and (if ``sample(model) -> str`` is given) a text sample.

    NF4 is only offered at 4 bits: choosing it pins the bits slider to 4.
    """
    import ipywidgets as widgets

    base = lm_loss(model, ids, window)
    bits = widgets.IntSlider(value=4, min=2, max=8, description="bits", continuous_update=False)
    scheme = widgets.Dropdown(options=list(SCHEMES), value="absmax", description="scheme")
    gran = widgets.Dropdown(options=list(GRANULARITIES), value="row", description="granularity")
    group = widgets.Dropdown(options=[16, 32, 64], value=32, description="group size")
    alpha = widgets.FloatSlider(value=1.0, min=1.0, max=50.0, step=1.0, description="outlier α",
                                continuous_update=False)
    button = widgets.Button(description="Quantize and evaluate", button_style="primary", icon="play")
    result = widgets.HTML()

    def on_scheme(_=None):
        if scheme.value == "nf4":
            bits.value, bits.disabled = 4, True
        else:
            bits.disabled = False

    def run(_=None):
        button.disabled, result.value = True, "<i>quantizing and evaluating...</i>"
        try:
            src = inject_outlier(model, alpha.value) if alpha.value != 1.0 else model
            q = quantize_model(src, bits.value, scheme.value, gran.value, group.value)
            loss = lm_loss(q, ids, window)
            size = model_bytes(model, bits.value, scheme.value, gran.value, group.value)
            text = ""
            if sample is not None:
                import html
                text = f"<pre style='white-space:pre-wrap'>{html.escape(sample(q))}</pre>"
            result.value = (f"validation loss <b>{loss:.4f}</b> (fp32: {base:.4f}, change {loss - base:+.4f}) "
                            f"&nbsp;|&nbsp; size {size:,} bytes (fp32: {model_bytes(model):,})" + text)
        except ValueError as exc:       # e.g. a group size that does not divide a layer
            result.value = f"<span style='color:#cf222e'>{exc}</span>"
        finally:
            button.disabled = False

    scheme.observe(on_scheme, names="value")
    button.on_click(run)
    run()
    return widgets.VBox([widgets.HBox([bits, scheme, gran]), widgets.HBox([group, alpha]), button, result])
