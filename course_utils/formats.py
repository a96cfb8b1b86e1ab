"""Floating-point formats bit by bit: fp32, fp16, bf16 and the two fp8 formats.

``to_bits(value, fmt)`` rounds a Python float to the nearest value of ``fmt`` (ties to even,
like ``torch.tensor(value).to(dtype)``) and returns its bit pattern as a string of 0/1, sign
first. ``from_bits(bits, fmt)`` reads a pattern back. Both are written out in plain Python
so the rules are visible; ``tests/test_formats.py`` checks them against torch's own dtypes
for every 16-bit and 8-bit pattern.

A format is 1 sign bit, ``e`` exponent bits and ``m`` mantissa bits:

* exponent field 0: subnormal, value = (-1)^s * 0.mantissa * 2^(1 - bias)
* exponent field 1 .. max: normal, value = (-1)^s * 1.mantissa * 2^(field - bias)
* IEEE-style formats (fp32, fp16, bf16, fp8_e5m2): the all-ones exponent means
  infinity (mantissa 0) or NaN (anything else).
* ``fp8_e4m3`` is the "fn" variant (torch.float8_e4m3fn): no infinities, and only the
  all-ones pattern S.1111.111 is NaN, which frees S.1111.000-110 for normal numbers and
  stretches the range to 448. torch saturates overflowing values (and +-inf) to +-448.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction


@dataclass(frozen=True)
class Format:
    """One floating-point format: 1 sign bit, ``exp_bits`` exponent bits, ``man_bits`` mantissa bits."""
    name: str
    exp_bits: int
    man_bits: int
    ieee: bool            # True: all-ones exponent = inf/NaN. False: "fn" (finite, one NaN per sign)
    torch_dtype: str      # attribute name in torch

    @property
    def bits(self) -> int:
        return 1 + self.exp_bits + self.man_bits

    @property
    def bias(self) -> int:
        return 2 ** (self.exp_bits - 1) - 1


FORMATS: dict[str, Format] = {
    "fp32": Format("fp32", 8, 23, True, "float32"),
    "fp16": Format("fp16", 5, 10, True, "float16"),
    "bf16": Format("bf16", 8, 7, True, "bfloat16"),
    "fp8_e4m3": Format("fp8_e4m3", 4, 3, False, "float8_e4m3fn"),
    "fp8_e5m2": Format("fp8_e5m2", 5, 2, True, "float8_e5m2"),
}


def get_format(fmt: str) -> Format:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return FORMATS[fmt]


def torch_dtype(fmt: str):
    """The torch dtype of a format (e.g. ``torch.float8_e4m3fn`` for ``"fp8_e4m3"``)."""
    import torch
    return getattr(torch, get_format(fmt).torch_dtype)


def _check_bits(bits: str, f: Format) -> int:
    if not isinstance(bits, str):
        raise TypeError(f"bits must be a string of 0 and 1, got {type(bits).__name__}")
    clean = bits.replace(" ", "").replace("_", "")
    if len(clean) != f.bits or set(clean) - {"0", "1"}:
        raise ValueError(f"{f.name} needs exactly {f.bits} characters 0/1, got {bits!r}")
    return int(clean, 2)


def _max_finite_code(f: Format) -> int:
    """Largest finite positive pattern, as an integer without the sign bit."""
    if f.ieee:
        return ((2 ** f.exp_bits - 1) << f.man_bits) - 1        # exponent all ones - 1, mantissa all ones
    return (1 << (f.exp_bits + f.man_bits)) - 2                 # S.1111.110: all ones minus one


def _code_value(code: int, f: Format) -> float:
    """Value of a sign-less pattern (finite codes only)."""
    exp, man = code >> f.man_bits, code & ((1 << f.man_bits) - 1)
    if exp == 0:
        return math.ldexp(man, 1 - f.bias - f.man_bits)
    return math.ldexp((1 << f.man_bits) + man, exp - f.bias - f.man_bits)


def from_bits(bits: str, fmt: str) -> float:
    """The value of a bit pattern (sign bit first), e.g. ``from_bits("0011110000000000", "fp16") == 1.0``."""
    f = get_format(fmt)
    word = _check_bits(bits, f)
    sign = -1.0 if word >> (f.bits - 1) else 1.0
    code = word & ((1 << (f.bits - 1)) - 1)
    exp, man = code >> f.man_bits, code & ((1 << f.man_bits) - 1)
    all_ones = 2 ** f.exp_bits - 1
    if f.ieee and exp == all_ones:
        return sign * math.inf if man == 0 else math.nan
    if not f.ieee and code == (1 << (f.bits - 1)) - 1:
        return math.nan
    return sign * _code_value(code, f)


def _pattern(word: int, f: Format) -> str:
    return format(word, f"0{f.bits}b")


def nan_bits(fmt: str) -> str:
    """The quiet NaN pattern to_bits returns for NaN (sign 0, top mantissa bit set)."""
    f = get_format(fmt)
    if f.ieee:
        return _pattern(((2 ** f.exp_bits - 1) << f.man_bits) | (1 << (f.man_bits - 1)), f)
    return _pattern((1 << (f.bits - 1)) - 1, f)


def to_bits(value: float, fmt: str) -> str:
    """Round ``value`` to ``fmt`` (nearest, ties to even) and return the bit pattern, sign first.

    Overflow gives infinity in IEEE-style formats and saturates to +-448 in fp8_e4m3
    (as torch's cast does); NaN gives :func:`nan_bits`.
    """
    f = get_format(fmt)
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"value must be a number, got {value!r}") from None
    if math.isnan(value):
        return nan_bits(fmt)
    sign = 1 if math.copysign(1.0, value) < 0 else 0
    a = abs(value)
    top = sign << (f.bits - 1)
    max_code = _max_finite_code(f)
    if math.isinf(a):
        code = (2 ** f.exp_bits - 1) << f.man_bits if f.ieee else max_code
        return _pattern(top | code, f)
    if a == 0.0:
        return _pattern(top, f)
    emin = 1 - f.bias                                  # exponent of the smallest normal number
    exponent = math.frexp(a)[1] - 1                    # a = 1.xxx * 2^exponent
    normal = exponent >= emin
    quantum = Fraction(2) ** ((exponent if normal else emin) - f.man_bits)   # spacing at this binade
    steps = Fraction(a) / quantum
    n = math.floor(steps)
    rest = steps - n
    if rest > Fraction(1, 2) or (rest == Fraction(1, 2) and n % 2 == 1):
        n += 1                                         # round half to even
    # A carry (n reaching the next power of two) moves into the exponent field by itself.
    code = n if not normal else ((exponent + f.bias) << f.man_bits) + n - (1 << f.man_bits)
    if code > max_code:
        code = ((2 ** f.exp_bits - 1) << f.man_bits) if f.ieee else max_code
    return _pattern(top | code, f)


def round_to(value: float, fmt: str) -> float:
    """``value`` as stored in ``fmt`` (what ``torch.tensor(value).to(dtype).item()`` gives)."""
    return from_bits(to_bits(value, fmt), fmt)


def fields(bits: str, fmt: str) -> tuple[str, str, str]:
    """(sign, exponent, mantissa) substrings of a pattern."""
    f = get_format(fmt)
    _check_bits(bits, f)
    clean = bits.replace(" ", "").replace("_", "")
    return clean[0], clean[1:1 + f.exp_bits], clean[1 + f.exp_bits:]


def next_up(value: float, fmt: str) -> float:
    """The next representable value above ``value`` (after rounding it to ``fmt``)."""
    f = get_format(fmt)
    x = round_to(value, fmt)
    if math.isnan(x) or x == math.inf:
        return math.nan if math.isnan(x) else math.inf
    if x == -math.inf:
        return -max_finite(fmt)
    word = int(to_bits(x, fmt), 2)
    if x == 0:
        return _code_value(1, f)
    if x > 0:
        return from_bits(_pattern(word + 1, f), fmt) if (word + 1) <= _max_finite_code(f) else \
            (math.inf if f.ieee else math.nan)
    return from_bits(_pattern(word - 1, f), fmt) if (word - 1) != (1 << (f.bits - 1)) else -0.0


def spacing(value: float, fmt: str) -> float:
    """Gap between ``value`` (rounded to ``fmt``) and the next representable number above it (the ULP)."""
    x = round_to(value, fmt)
    up = next_up(x, fmt)
    return up - x if math.isfinite(up) and math.isfinite(x) else math.nan


def max_finite(fmt: str) -> float:
    f = get_format(fmt)
    return _code_value(_max_finite_code(f), f)


def smallest_normal(fmt: str) -> float:
    return math.ldexp(1.0, 1 - get_format(fmt).bias)


def smallest_subnormal(fmt: str) -> float:
    f = get_format(fmt)
    return math.ldexp(1.0, 1 - f.bias - f.man_bits)


def epsilon(fmt: str) -> float:
    """Machine epsilon: the gap between 1 and the next representable number, 2^-mantissa_bits."""
    return math.ldexp(1.0, -get_format(fmt).man_bits)


def format_info(fmt: str) -> dict:
    """Layout and range of a format, as a dict for tables."""
    f = get_format(fmt)
    return {"format": fmt, "bits": f.bits, "sign/exp/mantissa": f"1/{f.exp_bits}/{f.man_bits}",
            "bias": f.bias, "max": max_finite(fmt), "smallest normal": smallest_normal(fmt),
            "smallest subnormal": smallest_subnormal(fmt), "epsilon": epsilon(fmt),
            "infinities": f.ieee}


def add_in(a: float, b: float, fmt: str) -> float:
    """``a + b`` computed the way the format does it: round the inputs, add exactly, round the sum."""
    return round_to(round_to(a, fmt) + round_to(b, fmt), fmt)
