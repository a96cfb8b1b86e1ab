"""Companion of notebook 07 (Base64): the layout figure and offset widget, token counts, the
exercise checkers and the SmolLM2 probe. Base64 itself is the core :mod:`course_utils.b64`; the
tiny-decoder experiment is the sibling :mod:`.base64_decoder`.
"""
from __future__ import annotations

import difflib
from typing import Callable, Sequence

from .. import plots
from ..b64 import at_offset, char_sources, decode, encode, encoded_length
from ..tokenizers import count_tokens


def token_counts(text: str, encodings: dict) -> dict[str, dict[str, int]]:
    """Token counts of ``text`` and of its Base64, for each named tokenizer (tiktoken or any other)."""
    encoded = encode(text)
    return {name: {"plain": count_tokens(enc, text), "base64": count_tokens(enc, encoded)}
            for name, enc in encodings.items()}


def token_count_figure(counts: dict[str, dict[str, int]]):
    """Grouped bars: plain-text vs Base64 token counts per tokenizer (from :func:`token_counts`)."""
    fig = plots.grouped_bars({"plain text": {n: c["plain"] for n, c in counts.items()},
                              "Base64": {n: c["base64"] for n, c in counts.items()}},
                             title="Tokens for the same sentence: plain text vs Base64", y_title="tokens",
                             text_format="%{y}")
    return fig.update_layout(xaxis_title="tokenizer", height=360)


def group_aligned_cuts(pieces: Sequence[str]) -> tuple[int, int]:
    """How many token boundaries inside the text fall on a 4-character group boundary: (aligned, total)."""
    pos, aligned, total = 0, 0, 0
    for piece in pieces[:-1]:
        pos += len(piece)
        total += 1
        aligned += pos % 4 == 0
    return aligned, total


# ------------------------------------------------------------------- the figure
GROUP_COLORS = plots.PALETTE[:8]
LAYOUT_TITLE = "Base64 layout: bytes (top) and the characters that encode them (bottom)"


def _show_byte(b: int) -> str:
    return chr(b) if 33 <= b < 127 else ("␣" if b == 32 else f"{b:02X}")


def layout_figure(text: str, offset: int = 0, tokens: Sequence[str] | None = None, max_bytes: int = 24,
                  title: str = LAYOUT_TITLE):
    """A plotly figure on a shared bit axis: the UTF-8 bytes of ``text`` (8 bits each) on top,
    the Base64 characters (6 bits each) below, coloured by 3-byte group, optionally a row of
    ``tokens`` (pieces of the Base64 string, e.g. from ``tokenizers.token_strings``) at the bottom.

    ``offset`` (0, 1 or 2) puts that many filler spaces (grey) in front of the text.
    """
    import plotly.graph_objects as go

    data = at_offset(text, offset)
    if len(data) > max_bytes:
        raise ValueError(f"text is {len(data)} bytes with the offset; the figure shows at most {max_bytes} "
                         f"(shorten it)")
    sources = char_sources(data)
    fig = go.Figure()
    rows = {"bytes": 2.0, "base64": 1.0, "tokens": 0.0}

    def box(x0, x1, y, color, label, hover, opacity=0.85):
        fig.add_shape(type="rect", x0=x0, x1=x1, y0=y - 0.4, y1=y + 0.4, line=dict(color="white", width=2),
                      fillcolor=color, opacity=opacity, layer="below")
        xs.append((x0 + x1) / 2), ys.append(y), labels.append(label), hovers.append(hover)

    xs, ys, labels, hovers = [], [], [], []
    for i, b in enumerate(data):
        color = "#bbbbbb" if i < offset else GROUP_COLORS[(i // 3) % len(GROUP_COLORS)]
        kind = "filler byte" if i < offset else "text byte"
        box(8 * i, 8 * i + 8, rows["bytes"], color, _show_byte(b),
            f"byte {i} ({kind}): {b} = 0x{b:02X} = {b:08b}<br>group {i // 3}")
    for s in sources:
        color = "#dddddd" if s.padding else GROUP_COLORS[s.group % len(GROUP_COLORS)]
        hover = (f"char {s.index}: '=' padding (no data)" if s.padding else
                 f"char {s.index}: '{s.char}' = {s.value} = {s.bits}<br>bits of bytes "
                 + ", ".join(f"{b} (bits {lo}-{hi})" if b < len(data) else f"zero fill ({hi - lo + 1} bits)"
                             for b, lo, hi in s.byte_bits))
        box(6 * s.index, 6 * s.index + 6, rows["base64"], color, s.char, hover)
    if tokens is not None:
        pos = 0
        for j, piece in enumerate(tokens):
            x0, x1 = 6 * pos, 6 * (pos + len(piece))
            box(x0, x1, rows["tokens"], ["#cccccc", "#999999"][j % 2], piece,
                f"token {j}: '{piece}' covers Base64 chars {pos}-{pos + len(piece) - 1}")
            pos += len(piece)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="text", text=labels, hovertext=hovers, hoverinfo="text",
                             textfont=dict(size=14, color="black"), showlegend=False))
    n_bits = max(8 * len(data), 6 * len(sources), 6)
    for g in range(0, n_bits + 1, 24):           # group boundaries
        fig.add_vline(x=g, line=dict(color="black", width=1, dash="dot"))
    shown_rows = ["bytes", "base64"] + (["tokens"] if tokens is not None else [])
    fig.update_yaxes(tickmode="array", tickvals=[rows[r] for r in shown_rows],
                     ticktext=["UTF-8 bytes", "Base64 chars", "tokens"][:len(shown_rows)],
                     range=[min(rows[r] for r in shown_rows) - 0.6, 2.6], showgrid=False, zeroline=False)
    fig.update_xaxes(title="bit position (dotted lines: 24-bit groups = 3 bytes = 4 characters)",
                     range=[-2, n_bits + 2], showgrid=False, zeroline=False)
    fig.update_layout(title=title, height=260 + 60 * (tokens is not None), margin=dict(l=100, r=20, t=50, b=50),
                      plot_bgcolor="white")
    return fig


def offset_widget(text: str = "hello world", max_bytes: int = 22):
    """Widget: a text box and an offset slider over :func:`layout_figure`, with the text's Base64 at
    all three offsets below. Texts over ``max_bytes`` UTF-8 bytes get an error message instead."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    text_box = widgets.Text(value=text, description="text:", continuous_update=False)
    offset = widgets.IntSlider(value=0, min=0, max=2, step=1, description="offset:")
    fig = go.FigureWidget(layout_figure(text_box.value, 0))
    encodings = widgets.HTML()

    def redraw(_=None):
        if len(text_box.value.encode("utf-8")) > max_bytes:
            encodings.value = plots.error_html(f"The figure shows at most {max_bytes} UTF-8 bytes of text "
                                               f"(this one has {len(text_box.value.encode('utf-8'))}): please shorten it.")
            return
        new = layout_figure(text_box.value, offset.value)
        fig.layout.shapes = new.layout.shapes         # the boxes: replaced, not merged
        plots.replace_figure(fig, new)
        rows = "".join(f"<tr><td>offset {k}</td><td><code>{encode(at_offset(text_box.value, k))}</code></td></tr>"
                       for k in range(3))
        encodings.value = f"<table>{rows}</table>"

    text_box.observe(redraw, "value")
    offset.observe(redraw, "value")
    redraw()
    return widgets.VBox([widgets.HBox([text_box, offset]), fig, encodings])


def shared_groups(encodings: Sequence[str]) -> set[str]:
    """The 4-character groups that occur in at least two of ``encodings``."""
    sets = [{s[i:i + 4] for i in range(0, len(s), 4)} for s in encodings]
    return {g for k, a in enumerate(sets) for b in sets[k + 1:] for g in a & b}


# --------------------------------------------------------------- SmolLM2
def longest_copy(answer: str, encoded: str) -> int:
    """Length of the longest piece of ``encoded`` that reappears in ``answer``."""
    m = difflib.SequenceMatcher(None, answer, encoded).find_longest_match(0, len(answer), 0, len(encoded))
    return m.size


def ask_to_decode(smol, secrets: Sequence[str], max_new_tokens: int = 30) -> list[dict]:
    """Ask SmolLM2 (an :class:`course_utils.lm.HFModel`, through its chat template) to decode the Base64 of
    each secret: the prompt, the answer, whether it contains the secret, the longest copied piece of
    the Base64 and how many tokens the Base64 costs."""
    rows = []
    for secret in secrets:
        encoded = encode(secret)
        prompt = f"Decode this Base64: {encoded}"
        answer = smol.chat(prompt, max_new_tokens=max_new_tokens)
        rows.append({"prompt": prompt, "answer": answer, "decoded": secret.lower() in answer.lower(),
                     "copied": longest_copy(answer, encoded), "tokens": len(smol.encode(encoded))})
    return rows


# --------------------------------------------------------------- exercise checks
def check_encoded_length(fn: Callable[[int], int]) -> None:
    """Exercise: the student's ``fn(n_bytes)`` must give the padded Base64 length for 0..100 bytes."""
    for n in range(101):
        got, want = fn(n), encoded_length(n)
        assert got == want, f"for {n} bytes you said {got} characters, but Base64 needs {want}"


def check_encode_group(fn: Callable[[bytes], str]) -> None:
    """Exercise: ``fn(three_bytes)`` must encode exactly 3 bytes into 4 characters."""
    cases = [b"Cat", b"Man", b"\x00\x00\x00", b"\xff\xff\xff", b"\xfb\xef\xbe", b"abc", b"\x01\x02\x03", b"?>~"]
    for case in cases:
        got, want = fn(case), encode(case)
        assert isinstance(got, str), f"return a str, got {type(got).__name__}"
        assert got == want, f"{case!r} should encode to {want!r}, you returned {got!r}"


def check_decode_group(fn: Callable[[str], bytes]) -> None:
    """Exercise: ``fn(four_chars)`` must decode 4 Base64 characters (no padding) into 3 bytes."""
    cases = ["Q2F0", "TWFu", "AAAA", "////", "+/+/", "aGVs", "YWJj", "Zm9v"]
    for case in cases:
        got, want = fn(case), decode(case)
        assert isinstance(got, (bytes, bytearray)), f"return bytes, got {type(got).__name__}"
        assert bytes(got) == want, f"{case!r} should decode to {want!r}, you returned {bytes(got)!r}"


def check_count_chars(answers: dict[str, int]) -> None:
    """Exercise: predicted padded Base64 lengths for a few strings (mind the UTF-8 bytes!)."""
    for text, got in answers.items():
        want = len(encode(text))
        assert got == want, (f"{text!r} is {len(text.encode('utf-8'))} UTF-8 bytes, so its Base64 has {want} "
                             f"characters, not {got}")
