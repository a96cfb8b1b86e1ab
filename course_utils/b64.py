"""Base64 written from scratch: encode, decode, and which characters carry which bytes.

Base64 turns every 3 bytes (24 bits) into 4 characters of 6 bits each, taken from a
64-character alphabet. A last group of 1 or 2 bytes is filled with zero bits and marked
with ``=`` padding. Text is encoded as UTF-8 *bytes* first, so "é" (2 bytes) shifts
every group after it.

    >>> encode(b"Cat")
    'Q2F0'
    >>> decode("Q2F0")
    b'Cat'

``char_sources``, ``bytes_of_char`` and ``chars_of_byte`` say which characters come from which
bytes; ``at_offset`` shifts a text within its 3-byte groups. Notebook 07's figures, token
counts and checkers live in :mod:`course_utils.lessons.base64`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

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
