"""Base64 written from scratch, plus the helpers notebook 07 needs.

Base64 turns every 3 bytes (24 bits) into 4 characters of 6 bits each, taken from a
64-character alphabet. A last group of 1 or 2 bytes is filled with zero bits and marked
with ``=`` padding. Text is encoded as UTF-8 *bytes* first, so "é" (2 bytes) shifts
every group after it.

    >>> encode(b"Cat")
    'Q2F0'
    >>> decode("Q2F0")
    b'Cat'

The helpers ``layout``, ``at_offset`` and ``layout_figure`` show which characters come
from which bytes; the ``check_*`` functions are the notebook's exercise checkers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
PAD = "="
_INDEX = {c: i for i, c in enumerate(ALPHABET)}


class Base64Error(ValueError):
    """Raised for text that is not valid Base64 (a ValueError, so ``except ValueError`` works)."""


def _as_bytes(data: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"expected bytes or str, got {type(data).__name__}")


def encode(data: bytes | str) -> str:
    """Base64 of ``data`` (a str is encoded as UTF-8 first), with ``=`` padding."""
    data = _as_bytes(data)
    out = []
    for start in range(0, len(data), 3):
        chunk = data[start:start + 3]
        n = len(chunk)
        # Put the (up to) three bytes side by side as one 24-bit number, missing bytes = 0.
        bits = int.from_bytes(chunk + b"\0" * (3 - n), "big")
        chars = [ALPHABET[(bits >> shift) & 0b111111] for shift in (18, 12, 6, 0)]
        # n bytes = 8n bits need ceil(8n / 6) = n + 1 characters; the rest is padding.
        out.append("".join(chars[:n + 1]) + PAD * (3 - n))
    return "".join(out)


def decode(text: str) -> bytes:
    """The bytes a padded Base64 string stands for.

    Strict, like ``base64.b64decode(text, validate=True)``: the length must be a multiple
    of 4, only the 64 alphabet characters are allowed, and ``=`` may only appear as one
    or two padding characters at the very end. Anything else raises :class:`Base64Error`
    (a ``ValueError``) that names the problem and where it is.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("ascii")
        except UnicodeDecodeError:
            raise Base64Error("Base64 text must be ASCII; got non-ASCII bytes") from None
    if not isinstance(text, str):
        raise TypeError(f"decode expects a str, got {type(text).__name__}")
    for i, c in enumerate(text):
        if c not in _INDEX and c != PAD:
            raise Base64Error(f"invalid Base64 character {c!r} at position {i}: allowed are A-Z, a-z, 0-9, "
                              f"'+', '/' and '=' padding at the end")
    if len(text) % 4:
        raise Base64Error(f"Base64 length must be a multiple of 4 (4 characters per 3 bytes), got {len(text)} "
                          f"characters; is padding ('=') missing?")
    body = text.rstrip(PAD)
    n_pad = len(text) - len(body)
    if PAD in body:
        raise Base64Error(f"'=' padding at position {body.index(PAD)} is in the middle; it may only end the text")
    if n_pad > 2:
        raise Base64Error(f"{n_pad} padding characters at the end; Base64 uses at most 2 ('==')")
    out = bytearray()
    for start in range(0, len(body), 4):
        group = body[start:start + 4]
        bits = 0
        for c in group.ljust(4, "A"):          # padded positions count as zero bits
            bits = (bits << 6) | _INDEX[c]
        n_bytes = len(group) - 1                # 4 chars -> 3 bytes, 3 -> 2, 2 -> 1
        out += bits.to_bytes(3, "big")[:n_bytes]
    return bytes(out)


# --------------------------------------------------------------- layout helpers
@dataclass(frozen=True)
class CharSource:
    """One Base64 character and where its 6 bits come from."""
    index: int                 # position in the Base64 string
    char: str
    value: int                 # 0..63 (0 for padding)
    bits: str                  # its 6 bits ("" for padding)
    group: int                 # which 3-byte group it belongs to
    byte_bits: tuple           # ((byte index, first bit, last bit), ...) within those bytes; bit 0 = most significant
    padding: bool = False


def char_sources(data: bytes | str) -> list[CharSource]:
    """For every Base64 character of ``data``: its value, its 6 bits and the byte bits it encodes.

    Character k of a group takes bits 6k..6k+5 of the group's 24 bits, so character 0
    lives in byte 0, character 1 straddles bytes 0 and 1, character 2 straddles bytes
    1 and 2, and character 3 lives in byte 2.
    """
    data = _as_bytes(data)
    text = encode(data)
    out = []
    for i, c in enumerate(text):
        group, k = divmod(i, 4)
        if c == PAD:
            out.append(CharSource(i, c, 0, "", group, (), padding=True))
            continue
        value = _INDEX[c]
        spans = []
        for bit in range(6 * k, 6 * k + 6):
            byte = 3 * group + bit // 8
            if spans and spans[-1][0] == byte:
                spans[-1][2] = bit % 8
            else:
                spans.append([byte, bit % 8, bit % 8])
        spans = tuple((b, lo, hi) for b, lo, hi in spans)   # a byte index >= len(data) is zero fill
        out.append(CharSource(i, c, value, format(value, "06b"), group, spans))
    return out


def bytes_of_char(data: bytes | str, index: int) -> list[int]:
    """The byte positions that Base64 character ``index`` of ``encode(data)`` encodes (may be [] for padding)."""
    sources = char_sources(data)
    if not 0 <= index < len(sources):
        raise ValueError(f"character index {index} is outside 0..{len(sources) - 1}")
    n = len(_as_bytes(data))
    return [b for b, _, _ in sources[index].byte_bits if b < n]


def chars_of_byte(data: bytes | str, index: int) -> list[int]:
    """The Base64 character positions that carry bits of byte ``index`` of ``data``."""
    n = len(_as_bytes(data))
    if not 0 <= index < n:
        raise ValueError(f"byte index {index} is outside 0..{n - 1}")
    return [s.index for s in char_sources(data) if any(b == index for b, _, _ in s.byte_bits)]


def at_offset(text: str, offset: int, filler: str = " ") -> bytes:
    """``text`` as UTF-8 with ``offset`` filler bytes in front, so it starts at byte ``offset`` of a group."""
    if offset not in (0, 1, 2):
        raise ValueError(f"offset must be 0, 1 or 2 (bytes before the text, mod 3), got {offset!r}")
    if len(filler.encode("utf-8")) != 1:
        raise ValueError(f"filler must be a single 1-byte character, got {filler!r}")
    return (filler * offset + text).encode("utf-8")


def encoded_length(n_bytes: int, padding: bool = True) -> int:
    """Length of the Base64 text for ``n_bytes`` bytes: 4 per started group of 3 (or ceil(8n/6) unpadded)."""
    if not isinstance(n_bytes, int) or n_bytes < 0:
        raise ValueError(f"n_bytes must be a whole number >= 0, got {n_bytes!r}")
    return 4 * math.ceil(n_bytes / 3) if padding else math.ceil(8 * n_bytes / 6)


def token_pieces(text: str, encoding) -> list[str]:
    """How a tiktoken ``encoding`` splits ``text``: the list of token strings."""
    return [encoding.decode_single_token_bytes(t).decode("utf-8", "replace") for t in encoding.encode(text)]


def token_counts(text: str, encodings: dict) -> dict[str, dict[str, int]]:
    """Token counts of ``text`` and of its Base64, for each named tiktoken encoding."""
    b64 = encode(text)
    return {name: {"plain": len(enc.encode(text)), "base64": len(enc.encode(b64))}
            for name, enc in encodings.items()}


def group_aligned_cuts(pieces: Sequence[str]) -> tuple[int, int]:
    """How many token boundaries inside the text fall on a 4-character group boundary: (aligned, total)."""
    pos, aligned, total = 0, 0, 0
    for piece in pieces[:-1]:
        pos += len(piece)
        total += 1
        aligned += pos % 4 == 0
    return aligned, total


# ------------------------------------------------------------------- the figure
GROUP_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#b07aa1", "#76b7b2", "#edc948", "#9c755f"]
LAYOUT_TITLE = "Base64 layout: bytes (top) and the characters that encode them (bottom)"


def _show_byte(b: int) -> str:
    return chr(b) if 33 <= b < 127 else ("␣" if b == 32 else f"{b:02X}")


def layout_figure(text: str, offset: int = 0, tokens: Sequence[str] | None = None, max_bytes: int = 24,
                  title: str = LAYOUT_TITLE):
    """A plotly figure on a shared bit axis: the UTF-8 bytes of ``text`` (8 bits each) on top,
    the Base64 characters (6 bits each) below, coloured by 3-byte group, optionally a row of
    ``tokens`` (pieces of the Base64 string, e.g. from :func:`token_pieces`) at the bottom.

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
