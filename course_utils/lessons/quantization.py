"""Companion of notebook 05 (quantization): its widgets, figures, experiment drivers and checkers.

The math lives in the core: :mod:`course_utils.formats` (floating-point formats bit by bit) and
:mod:`course_utils.quantize` (integer and NF4 schemes, whole models, the outlier channel, Q4_1).
The loss of a model over a text is :meth:`course_utils.lm.LanguageModel.loss`. Section 1's
bit explorer lives in the sibling :mod:`.quantization_floats` (re-exported here).
"""
from __future__ import annotations

import html
import math
from typing import Callable, Sequence

import torch
import torch.nn as nn

from .. import lm, plots
from .. import quantize as Q
from .quantization_floats import bit_explorer, check_bf16_epsilon, describe, spacing_figure  # noqa: F401

SCHEME_COLORS = {"original": "#444444", "absmax": "#1f77b4", "zeropoint": "#ff7f0e", "group": "#2ca02c",
                 "nf4": "#9467bd"}


def table(rows: Sequence[dict], columns: Sequence[str], fmt: dict[str, str] | None = None):
    """A list of dicts as a Markdown table; ``fmt`` maps a column to a format string such as ``"{:.3f}"``."""
    from IPython.display import Markdown

    fmt = fmt or {}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(fmt.get(c, "{}").format(r[c]) for c in columns) + " |" for r in rows]
    return Markdown("\n".join(lines))


# ------------------------------------------------------------------ 2. a vector
def vector_schemes(x: torch.Tensor, bits: int = 4, group_size: int = 8) -> dict[str, torch.Tensor]:
    """``x`` (1-D) dequantized under absmax, zero-point, per-group absmax and NF4 (4 bits only)."""
    out = {"absmax": Q.fake_quantize(x, bits, "absmax", "tensor"),
           "zeropoint": Q.fake_quantize(x, bits, "zeropoint", "tensor"),
           "group": Q.fake_quantize(x, bits, "absmax", "group", group_size)}
    if bits == 4:
        out["nf4"] = Q.fake_quantize(x, 4, "nf4", "tensor")
    return out


def ordinary_mse(outlier: float, bits: int = 4, n: int = 16, seed: int = 0, group_size: int = 8) -> dict[str, float]:
    """Each scheme's mean squared error on the ordinary values of ``n`` N(0, 1) draws whose last value is ``outlier``."""
    v = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    v[-1] = outlier
    return {k: ((d - v)[:-1] ** 2).mean().item() for k, d in vector_schemes(v, bits, group_size).items()}


_VECTOR_NAMES = ["original", "absmax", "zeropoint", "group", "nf4"]


def _vector_figure(n: int, group_size: int):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    labels = {"original": "original", "absmax": "absmax (1 scale)", "zeropoint": "zero-point (1 scale + offset)",
              "group": f"absmax per group of {group_size}", "nf4": "NF4 (1 scale)"}
    fig = go.FigureWidget(make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, row_heights=[0.6, 0.4],
                                        subplot_titles=("values", "error = dequantized - original")))
    for name in _VECTOR_NAMES:
        fig.add_scatter(x=list(range(n)), y=[0] * n, mode="markers", name=labels[name], row=1, col=1,
                        marker=dict(color=SCHEME_COLORS[name], size=11 if name == "original" else 8,
                                    symbol="circle-open" if name == "original" else "x"))
    for name in _VECTOR_NAMES[1:]:
        fig.add_bar(x=list(range(n)), y=[0] * n, name=labels[name], showlegend=False, row=2, col=1,
                    marker_color=SCHEME_COLORS[name])
    fig.update_layout(title="Vector quantization: original vs dequantized", height=560, barmode="group",
                      margin=dict(l=60, r=20, t=80, b=40))
    fig.update_xaxes(title_text="index (the last value is the outlier)", row=2, col=1)
    return fig, labels


def vector_quantizer(n: int = 16, seed: int = 0, group_size: int = 8):
    """Widget: ``n`` values from N(0, 1), the last one an outlier you set; every scheme's
    dequantized values and errors, redrawn live."""
    import ipywidgets as widgets

    if n % group_size:
        raise ValueError(f"group_size={group_size} must divide n={n}")
    base = torch.randn(n, generator=torch.Generator().manual_seed(seed))
    outlier = widgets.FloatSlider(value=1.0, min=-20.0, max=20.0, step=0.5, description="outlier",
                                  continuous_update=False)
    bits = widgets.IntSlider(value=4, min=2, max=8, description="bits", continuous_update=False)
    fig, labels = _vector_figure(n, group_size)
    mse = widgets.HTML()

    def redraw(_=None):
        x = base.clone()
        x[-1] = outlier.value
        deq = vector_schemes(x, bits.value, group_size)
        parts = []
        with fig.batch_update():
            fig.data[0].y = x.tolist()
            for i, name in enumerate(_VECTOR_NAMES[1:]):
                visible = name in deq
                y = deq[name] if visible else torch.zeros(n)
                fig.data[1 + i].y, fig.data[1 + i].visible = y.tolist(), visible
                fig.data[5 + i].y, fig.data[5 + i].visible = (y - x).tolist(), visible
                if visible:
                    parts.append(f"{labels[name]}: <b>{((y - x)[:-1] ** 2).mean().item():.4f}</b>")
        mse.value = (f"Mean squared error on the {n - 1} ordinary values: " + " &nbsp;|&nbsp; ".join(parts)
                     + ("" if bits.value == 4 else " &nbsp;(NF4 exists only at 4 bits)"))

    outlier.observe(redraw, names="value")
    bits.observe(redraw, names="value")
    redraw()
    return widgets.VBox([widgets.HBox([outlier, bits]), mse, fig])


def levels_figure():
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
    for y, levels, name, color in ((0.3, int4, "int4 absmax levels (15 used)", SCHEME_COLORS["absmax"]),
                                   (0.6, Q.NF4_LEVELS, "NF4 levels (16)", SCHEME_COLORS["nf4"])):
        fig.add_scatter(x=levels.tolist(), y=[y] * len(levels), mode="markers", name=name,
                        marker=dict(symbol="line-ns-open", size=22, color=color, line_width=2))
    fig.update_layout(title="Where the 4-bit levels sit", height=320, yaxis=dict(visible=False),
                      xaxis_title="value / absmax of the block", margin=dict(l=30, r=20, t=50, b=50))
    return fig


def check_absmax_int8(fn: Callable) -> None:
    """Exercise: ``fn(x) -> (q, scale)`` for a 1-D tensor, absmax int8 with one scale."""
    g = torch.Generator().manual_seed(7)
    for x in (torch.randn(16, generator=g), torch.randn(100, generator=g) * 5, torch.tensor([0.5, -2.0, 1.0, 0.0])):
        out = fn(x.clone())
        assert isinstance(out, tuple) and len(out) == 2, "return a tuple (q, scale)"
        q, scale = torch.as_tensor(out[0]), float(out[1])
        assert q.dtype == torch.int8, f"q should be torch.int8 (use .to(torch.int8)), got {q.dtype}"
        assert q.shape == x.shape, f"q should have the shape of x {tuple(x.shape)}, got {tuple(q.shape)}"
        assert math.isclose(scale, x.abs().max().item() / 127, rel_tol=1e-5), \
            f"scale should be max|x| / 127 = {x.abs().max().item() / 127:.6f}, got {scale:.6f}"
        assert int(q.abs().max()) == 127, "the largest |x| should map to +-127"
        ref, _ = Q.absmax_quantize(x.view(1, -1), 8)
        assert torch.equal(q, ref.view(-1)), "some codes differ from round(x / scale): round, don't truncate"


# ------------------------------------------------------------------ 3-4. whole models
def label(bits: int, scheme: str, granularity: str, group_size: int = 32) -> str:
    """The granularity as the tables show it: ``group-32`` for groups."""
    return granularity + (f"-{group_size}" if granularity == "group" else "")


def sweep(model: nn.Module, tokenizer, ids: torch.Tensor, configs: Sequence[tuple], baseline: float,
          desc: str = "quantizing") -> list[dict]:
    """Fake-quantize ``model`` with every ``(bits, scheme, granularity, group_size)`` of ``configs``:
    one row each with its loss on ``ids``, its cost (loss - ``baseline``) and its size."""
    from tqdm.auto import tqdm

    fp32 = Q.model_bytes(model)
    rows = []
    for bits, scheme, gran, gs in tqdm(configs, desc=desc):
        loss = lm.wrap(Q.quantize_model(model, bits, scheme, gran, gs), tokenizer).loss(ids)
        size = Q.model_bytes(model, bits, scheme, gran, gs)
        rows.append({"bits": bits, "scheme": scheme, "granularity": label(bits, scheme, gran, gs), "loss": loss,
                     "cost": loss - baseline, "bytes": size, "size vs fp32": size / fp32})
    return rows


def cost(rows: Sequence[dict], bits: int, scheme: str, granularity: str, key: str = "cost") -> float:
    """The ``key`` of the row with these settings (``granularity`` as :func:`label` writes it)."""
    return next(r[key] for r in rows if (r["bits"], r["scheme"], r["granularity"]) == (bits, scheme, granularity))


def loss_vs_bits_figure(rows: list[dict], baseline: float, title: str):
    """Validation loss against bits, one line per granularity. ``rows``: dicts with bits, granularity and loss."""
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


def outlier_sweep(model_out: nn.Module, tokenizer, ids: torch.Tensor, configs: Sequence[tuple], baseline: float,
                  plain_rows: Sequence[dict]) -> list[dict]:
    """:func:`sweep` on the model with the outlier channel; each row also gets the cost of the same
    setting without it (from ``plain_rows``) as ``cost without outlier``, its own as ``cost with outlier``."""
    rows = sweep(model_out, tokenizer, ids, configs, baseline, desc="quantizing with the outlier")
    for r in rows:
        r["cost without outlier"] = cost(plain_rows, r["bits"], r["scheme"], r["granularity"])
        r["cost with outlier"] = r["cost"]
    return rows


def outlier_figure(rows: Sequence[dict], alpha: float):
    """Grouped bars: the cost of each setting of :func:`outlier_sweep` without and with the outlier channel."""
    def name(r):
        return f"int{r['bits']} {'' if r['scheme'] == 'absmax' else r['scheme'] + ' '}{r['granularity']}"

    return plots.grouped_bars({"no outlier": {name(r): r["cost without outlier"] for r in rows},
                               f"outlier channel (α = {alpha:g})": {name(r): r["cost with outlier"] for r in rows}},
                              title="Loss increase from quantization, with and without an outlier channel",
                              y_title="validation loss increase (nats)")


def course_sample(model: nn.Module, tokenizer, n: int = 200, seed: int = 0, prompt: str = "ROMEO:\n") -> str:
    """``n`` characters of the course GPT after ``prompt`` at temperature 0.8, seeded."""
    start = torch.tensor([tokenizer.encode(prompt)])
    out = model.generate(start, n, temperature=0.8, generator=torch.Generator().manual_seed(seed))
    return tokenizer.decode(out[0])


def _quantizer_report(model, tokenizer, ids, base, settings, sample) -> str:
    bits, scheme, gran, group, alpha = settings
    src = Q.inject_outlier(model, alpha) if alpha != 1.0 else model
    q = Q.quantize_model(src, bits, scheme, gran, group)
    loss = lm.wrap(q, tokenizer).loss(ids)
    size = Q.model_bytes(model, bits, scheme, gran, group)
    text = f"<pre style='white-space:pre-wrap'>{html.escape(sample(q))}</pre>" if sample is not None else ""
    return (f"validation loss <b>{loss:.4f}</b> (fp32: {base:.4f}, change {loss - base:+.4f}) "
            f"&nbsp;|&nbsp; size {size:,} bytes (fp32: {Q.model_bytes(model):,})" + text)


def model_quantizer(model: nn.Module, tokenizer, ids: torch.Tensor, sample: Callable | None = None):
    """Widget: pick bits, scheme, granularity and an outlier strength, press the button, and get the
    validation loss, the size and (if ``sample(model) -> str`` is given) a text sample.

    NF4 is only offered at 4 bits: choosing it pins the bits slider to 4.
    """
    import ipywidgets as widgets

    base = lm.wrap(model, tokenizer).loss(ids)
    bits = widgets.IntSlider(value=4, min=2, max=8, description="bits", continuous_update=False)
    scheme = widgets.Dropdown(options=list(Q.SCHEMES), value="absmax", description="scheme")
    gran = widgets.Dropdown(options=list(Q.GRANULARITIES), value="row", description="granularity")
    group = widgets.Dropdown(options=[16, 32, 64], value=32, description="group size")
    alpha = widgets.FloatSlider(value=1.0, min=1.0, max=50.0, step=1.0, description="outlier α",
                                continuous_update=False)
    button = widgets.Button(description="Quantize and evaluate", button_style="primary", icon="play")
    result = widgets.HTML()

    def on_scheme(_=None):
        bits.disabled = scheme.value == "nf4"
        if bits.disabled:
            bits.value = 4

    def run(_=None):
        button.disabled, result.value = True, "<i>quantizing and evaluating...</i>"
        try:
            settings = (bits.value, scheme.value, gran.value, group.value, alpha.value)
            result.value = _quantizer_report(model, tokenizer, ids, base, settings, sample)
        except ValueError as exc:       # e.g. a group size that does not divide a layer
            result.value = plots.error_html(exc)
        finally:
            button.disabled = False

    scheme.observe(on_scheme, names="value")
    button.on_click(run)
    run()
    return widgets.VBox([widgets.HBox([bits, scheme, gran]), widgets.HBox([group, alpha]), button, result])


def check_int4_size_gb(answer: float, params: float = 7e9, group_size: int = 64) -> None:
    """Exercise: bytes of a ``params`` model at 4 bits + one fp16 scale per ``group_size`` weights, in GB (1e9)."""
    truth = params * Q.bits_per_weight(4, group_size) / 8 / 1e9
    assert isinstance(answer, (int, float)), f"return a number of GB, got {type(answer).__name__}"
    assert not math.isclose(answer, params * 4 / 8 / 1e9, rel_tol=1e-3), \
        "close, but you forgot the scales: one 16-bit number per group of 64 weights"
    assert not math.isclose(answer, params * 4 / 1e9, rel_tol=1e-3), "that's bits, not bytes: divide by 8"
    assert math.isclose(answer, truth, rel_tol=0.01), f"{answer} GB is not right (within 1%)"


# ------------------------------------------------------------------ 5. Q4_1 blocks
def q4_1_block(weight: torch.Tensor, index: int = 0) -> dict:
    """Block ``index`` (32 weights) of ``weight`` encoded as GGUF Q4_1 (:func:`quantize.q4_1_quantize`) and
    read back field by field: the fp16 scale ``d``, the fp16 minimum ``m``, the 32 four-bit codes (byte
    ``j`` holds code ``j`` in its low nibble, code ``j + 16`` in its high one) and whether
    ``d * code + m`` gives the block's weights back exactly."""
    blocks = weight.detach().float().reshape(-1, Q.Q4_1_BLOCK)
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(blocks):
        raise ValueError(f"index must be an integer from 0 to {len(blocks) - 1}, got {index!r}")
    block = blocks[index]
    raw = Q.q4_1_quantize(block)
    d, m = (torch.frombuffer(bytearray(raw[i:i + 2]), dtype=torch.float16).item() for i in (0, 2))
    packed = list(raw[4:Q.Q4_1_BYTES])
    codes = [b & 0x0F for b in packed] + [b >> 4 for b in packed]
    decoded = d * torch.tensor(codes, dtype=torch.float32) + m
    return {"d": d, "m": m, "codes": codes, "decoded": decoded, "weights": block,
            "exact": torch.equal(decoded, block)}


def q4_1_reencodes_exactly(linears: Sequence[nn.Linear]) -> bool:
    """Whether encoding each Linear's weight as Q4_1 and decoding it gives the same floats, bit for bit."""
    return all(torch.equal(Q.q4_1_dequantize(Q.q4_1_quantize(lin.weight)).view_as(lin.weight), lin.weight)
               for lin in linears)


# ------------------------------------------------------------------ 6-7. SmolLM2
def smollm2_sweep(smol: lm.HFModel, ids: torch.Tensor, prompt: str, window: int = 256,
                  n_new: int = 12) -> list[dict]:
    """SmolLM2 quantized in place (absmax, 8/4/3/2 bits, per row and per group of 32), restored afterwards:
    loss, cost, MB and (for groups) a greedy continuation of ``prompt``."""
    from tqdm.auto import tqdm

    def continuation() -> str:
        return smol.generate(prompt, n_new, lm.GREEDY).texts[0].replace("\n", " ")

    base = smol.loss(ids, window)
    rows = [{"bits": 32, "granularity": "fp32", "loss": base, "cost": 0.0, "MB": Q.model_bytes(smol.model) / 1e6,
             "continuation": continuation()}]
    for bits, gran in tqdm([(b, g) for b in (8, 4, 3, 2) for g in ("row", "group")], desc="quantizing SmolLM2"):
        with Q.quantized(smol.model, bits, "absmax", gran, 32):
            loss = smol.loss(ids, window)
            text = continuation() if gran == "group" else ""
        rows.append({"bits": bits, "granularity": label(bits, "absmax", gran), "loss": loss, "cost": loss - base,
                     "MB": Q.model_bytes(smol.model, bits, "absmax", gran, 32) / 1e6, "continuation": text})
    return rows


def dynamic_int8_rows(smol: lm.HFModel, ids: torch.Tensor, baseline: float, window: int = 256) -> list[dict]:
    """fp32, torch's dynamic int8 on every Linear, and with ``down_proj`` kept fp32: size on disk,
    best-of-3 CPU seconds of a forward pass over the first ``window`` tokens, loss and cost."""
    from tqdm.auto import tqdm

    variants = {"fp32": lambda: smol.model, "int8 dynamic, all Linear": lambda: Q.dynamic_int8(smol.model),
                "int8 dynamic, down_proj kept fp32": lambda: Q.dynamic_int8(smol.model, skip=("down_proj",))}
    rows = []
    for name, make in tqdm(variants.items(), desc="int8 on the CPU"):
        mod = lm.wrap(make(), smol.tokenizer)            # one int8 copy at a time keeps memory low
        t = Q.time_forward(mod, ids[:window][None], repeats=3)
        loss = mod.loss(ids, window)
        rows.append({"model": name, "MB on disk": Q.state_dict_bytes(mod.model) / 1e6, "CPU s / forward": t["cpu_s"],
                     "loss": loss, "cost": loss - baseline})
    return rows
