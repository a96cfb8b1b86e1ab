"""Companion of notebook 05, section 1 (floating-point formats): the bit explorer, the spacing
figure and the bf16-epsilon checker, on :mod:`course_utils.formats`. Re-exported by
:mod:`course_utils.lessons.quantization`."""
from __future__ import annotations

import math

from .. import formats, plots

FIELD_COLORS = {"sign": ("#f4c7c3", "#d93025"), "exponent": ("#c6dafc", "#1a73e8"),
                "mantissa": ("#ceead6", "#188038")}   # (bit = 0, bit = 1)


def _fmt_num(v: float) -> str:
    if math.isnan(v) or math.isinf(v) or v == 0:
        return repr(v)
    return f"{v:.10g}" if 1e-4 <= abs(v) < 1e7 else f"{v:.6e}"


def describe(value: float, fmt: str) -> str:
    """One line of HTML: the stored value, its rounding error and the spacing there."""
    stored = formats.round_to(value, fmt)
    gap = formats.spacing(stored, fmt) if math.isfinite(stored) else math.nan
    err = stored - value if math.isfinite(stored) and math.isfinite(value) else math.nan
    return (f"stores <b>{_fmt_num(stored)}</b> &nbsp; error {_fmt_num(err)} &nbsp; "
            f"next number up is {_fmt_num(gap)} away")


def _field(i: int, f: formats.Format) -> str:
    return "sign" if i == 0 else "exponent" if i <= f.exp_bits else "mantissa"


def _paint(buttons, bits: str, f: formats.Format) -> None:
    for i, (b, button) in enumerate(zip(bits, buttons)):
        button.description = b
        button.style.button_color = FIELD_COLORS[_field(i, f)][b == "1"]
        button.style.text_color = "white" if b == "1" else "black"


def _format_row(fmt: str, buttons, info):
    """One format's row: its name, its bit buttons, the stored value and its range."""
    import ipywidgets as widgets

    f = formats.get_format(fmt)
    label = widgets.HTML(f"<b>{fmt}</b><br><small>1/{f.exp_bits}/{f.man_bits}</small>",
                         layout=widgets.Layout(width="80px"))
    limits = (f"<small>range: max {_fmt_num(formats.max_finite(fmt))}, smallest normal "
              f"{_fmt_num(formats.smallest_normal(fmt))}, epsilon {_fmt_num(formats.epsilon(fmt))}</small>")
    return widgets.VBox([widgets.HBox([label] + buttons), widgets.HBox([info]), widgets.HTML(limits)])


def bit_explorer(value: float = 0.1, fmts: tuple[str, ...] = tuple(formats.FORMATS)):
    """Widget: type a number and see it in every format; click a bit to flip it.

    Flipping a bit sets the number to the new value (so the other formats show it too),
    unless the new pattern is NaN, which only its own row can show.
    """
    import ipywidgets as widgets

    specs = {fmt: formats.get_format(fmt) for fmt in fmts}
    number = widgets.Text(value=repr(float(value)), description="number", continuous_update=False,
                          layout=widgets.Layout(width="360px"))
    status = widgets.HTML()
    # Plain Buttons (not ToggleButtons): only Button styles support a background colour.
    buttons = {fmt: [widgets.Button(description="0", tooltip=f"{fmt} bit {i} ({_field(i, f)})",
                                    layout=widgets.Layout(width="18px" if f.bits == 32 else "26px", padding="0"))
                     for i in range(f.bits)] for fmt, f in specs.items()}
    infos = {fmt: widgets.HTML() for fmt in fmts}

    def on_number(_=None):
        try:
            x = float(number.value)
        except ValueError:
            status.value = plots.error_html(f"{number.value!r} is not a number")
            return
        status.value = ""
        for fmt, f in specs.items():
            _paint(buttons[fmt], formats.to_bits(x, fmt), f)
            infos[fmt].value = describe(x, fmt)

    def on_bit(fmt: str, i: int):
        def handler(_button):
            bits = "".join(b.description for b in buttons[fmt])
            bits = bits[:i] + ("0" if bits[i] == "1" else "1") + bits[i + 1:]
            x = formats.from_bits(bits, fmt)
            if math.isnan(x):
                _paint(buttons[fmt], bits, specs[fmt])
                infos[fmt].value = "this pattern is <b>NaN</b> (not a number)"
            elif number.value == repr(x):
                on_number()
            else:
                number.value = repr(x)          # triggers on_number for every row
        return handler

    for fmt in fmts:
        for i, b in enumerate(buttons[fmt]):
            b.on_click(on_bit(fmt, i))
    legend = widgets.HTML("".join(f"<span style='background:{FIELD_COLORS[k][1]};color:white'>&nbsp;{k}&nbsp;</span> "
                                  for k in FIELD_COLORS) + "&nbsp; (dark = 1, light = 0; click a bit to flip it)")
    number.observe(on_number, names="value")
    on_number()
    rows = [_format_row(fmt, buttons[fmt], infos[fmt]) for fmt in fmts]
    return widgets.VBox([widgets.HBox([number, status]), legend] + rows)


def spacing_figure(fmts: tuple[str, ...] = tuple(formats.FORMATS), mark: float | None = None):
    """Gap to the next representable number (the ULP) against magnitude, log-log, per format."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for fmt in fmts:
        lo = max(math.log10(formats.smallest_subnormal(fmt)), -45)
        hi = min(math.log10(formats.max_finite(fmt)), 39)
        xs = [10 ** (lo + (hi - lo) * i / 400) for i in range(401)]
        xs = [x for x in xs if 0 < formats.round_to(x, fmt) < math.inf]
        fig.add_scatter(x=xs, y=[formats.spacing(x, fmt) for x in xs], mode="lines", name=fmt, line_shape="hv")
    if mark is not None and mark != 0:
        fig.add_vline(x=abs(mark), line_dash="dot", annotation_text=f"x = {mark:g}")
    fig.update_layout(title="Spacing between neighbouring numbers", height=400, xaxis_title="|x|",
                      yaxis_title="gap to the next number (ULP)", margin=dict(l=60, r=20, t=50, b=50))
    fig.update_xaxes(type="log", exponentformat="power")
    fig.update_yaxes(type="log", exponentformat="power")
    return fig


def check_bf16_epsilon(answer: float) -> None:
    """Exercise: bf16's machine epsilon (gap between 1.0 and the next bf16 number)."""
    assert isinstance(answer, (int, float)), f"return a number, got {type(answer).__name__}"
    assert answer != formats.epsilon("fp16"), "that is fp16's epsilon (10 mantissa bits); bf16 has 7"
    assert answer != formats.epsilon("fp32"), "that is fp32's epsilon (23 mantissa bits); bf16 has 7"
    assert math.isclose(answer, formats.epsilon("bf16"), rel_tol=1e-9), \
        f"{answer!r} is not it: 1.0 + your epsilon should be the very next bf16 number"
