"""course_utils.formats against torch's own dtypes, exhaustively for the 16- and 8-bit formats."""
import math

import pytest
import torch

from course_utils import formats as nx

SMALL = {"fp16": torch.int16, "bf16": torch.int16, "fp8_e4m3": torch.uint8, "fp8_e5m2": torch.uint8}


def _all_patterns(fmt):
    """Every bit pattern of fmt as (strings, torch float64 values read by torch)."""
    bits = nx.get_format(fmt).bits
    words = torch.arange(2 ** bits, dtype=torch.int64)
    raw = words.to(torch.uint8) if bits == 8 else words.to(torch.int32).to(torch.int16)  # wraps like a cast
    values = raw.view(nx.torch_dtype(fmt)).to(torch.float64)
    return [format(w, f"0{bits}b") for w in range(2 ** bits)], values.tolist()


@pytest.mark.parametrize("fmt", list(SMALL))
def test_from_bits_matches_torch_for_every_pattern(fmt):
    patterns, values = _all_patterns(fmt)
    for bits, expected in zip(patterns, values):
        got = nx.from_bits(bits, fmt)
        if math.isnan(expected):
            assert math.isnan(got), (bits, got)
        else:
            assert got == expected and math.copysign(1, got) == math.copysign(1, expected), (bits, got, expected)


@pytest.mark.parametrize("fmt", list(SMALL))
def test_to_bits_round_trips_every_pattern_and_agrees_with_torch_cast(fmt):
    patterns, values = _all_patterns(fmt)
    finite = [(b, v) for b, v in zip(patterns, values) if not math.isnan(v)]
    for bits, value in finite:
        assert nx.to_bits(value, fmt) == bits
    # torch's own cast of the same values gives the same patterns
    vals = torch.tensor([v for _, v in finite], dtype=torch.float32)
    word_dtype = SMALL[fmt]
    torch_words = vals.to(nx.torch_dtype(fmt)).view(word_dtype).to(torch.int64) % 2 ** nx.get_format(fmt).bits
    assert [format(w, f"0{nx.get_format(fmt).bits}b") for w in torch_words.tolist()] == [b for b, _ in finite]
    # NaN: a NaN pattern that torch also reads as NaN
    nan_pattern = nx.to_bits(math.nan, fmt)
    assert math.isnan(nx.from_bits(nan_pattern, fmt))
    assert sum(math.isnan(v) for v in values) == (2 if fmt == "fp8_e4m3" else sum(
        1 for b in patterns if b[1:1 + nx.get_format(fmt).exp_bits] == "1" * nx.get_format(fmt).exp_bits
        and set(b[1 + nx.get_format(fmt).exp_bits:]) != {"0"}))


def _torch_bits(values, fmt):
    bits = nx.get_format(fmt).bits
    t = torch.tensor(values, dtype=torch.float32).to(nx.torch_dtype(fmt))
    word_dtype = torch.int32 if bits == 32 else SMALL[fmt]
    return [format(w % 2 ** bits, f"0{bits}b") for w in t.view(word_dtype).to(torch.int64).tolist()]


@pytest.mark.parametrize("fmt", list(SMALL))
def test_rounding_matches_torch_including_ties_overflow_and_underflow(fmt):
    g = torch.Generator().manual_seed(0)
    patterns, values = _all_patterns(fmt)
    finite = sorted({v for v in values if math.isfinite(v)})
    # exact midpoints between neighbours (ties), and points a quarter of the way: all exact in fp32
    mids = [(a + b) / 2 for a, b in zip(finite, finite[1:])]
    quarters = [a + (b - a) / 4 for a, b in zip(finite, finite[1:])] + [a + 3 * (b - a) / 4 for a, b in zip(finite, finite[1:])]
    big = nx.max_finite(fmt)
    extremes = [big * 1.01, big * 1.5, -big * 3, 1e30, -1e30, math.inf, -math.inf, 0.0, -0.0,
                nx.smallest_subnormal(fmt) / 2, nx.smallest_subnormal(fmt) * 0.51, -nx.smallest_subnormal(fmt) / 3]
    randoms = (torch.randn(3000, generator=g) * torch.logspace(-8, 5, 3000)).tolist()
    tests = [float(torch.tensor(v, dtype=torch.float32)) for v in mids + quarters + extremes + randoms]
    assert [nx.to_bits(v, fmt) for v in tests] == _torch_bits(tests, fmt)


def test_fp32_against_torch():
    g = torch.Generator().manual_seed(1)
    words = torch.randint(0, 2 ** 32, (20000,), generator=g, dtype=torch.int64)
    words = torch.cat([words, torch.tensor([0, 2 ** 31, 0x7F800000, 0xFF800000, 0x7F7FFFFF, 1, 0x00800000])])
    values = words.to(torch.int32).view(torch.float32).tolist()  # int64 -> int32 wraps
    for w, v in zip(words.tolist(), values):
        bits = format(w, "032b")
        got = nx.from_bits(bits, "fp32")
        if math.isnan(v):
            assert math.isnan(got)
        else:
            assert got == v and nx.to_bits(v, "fp32") == bits
    # doubles that need rounding to fp32, compared with torch's float64 -> float32 cast
    doubles = (torch.randn(5000, generator=g, dtype=torch.float64) * 1e3).tolist() + [1 / 3, 0.1, 3.5e38, 1e-46]
    expected = torch.tensor(doubles, dtype=torch.float64).to(torch.float32).view(torch.int32).to(torch.int64)
    assert [nx.to_bits(d, "fp32") for d in doubles] == [format(w % 2 ** 32, "032b") for w in expected.tolist()]


@pytest.mark.parametrize("fmt", list(nx.FORMATS))
def test_ranges_match_torch_finfo(fmt):
    fi = torch.finfo(nx.torch_dtype(fmt))
    assert nx.max_finite(fmt) == fi.max
    assert nx.smallest_normal(fmt) == fi.smallest_normal
    assert nx.epsilon(fmt) == fi.eps
    assert nx.spacing(1.0, fmt) == fi.eps


def test_quirks_from_the_notebook():
    assert nx.max_finite("fp16") == 65504 and nx.round_to(70000, "fp16") == math.inf
    assert nx.add_in(2048, 1, "fp16") == 2048 and nx.add_in(2048, 2, "fp16") == 2050
    assert nx.add_in(256, 1, "bf16") == 256
    assert nx.round_to(1e-8, "fp16") == 0.0 and nx.round_to(1e-8, "bf16") != 0.0
    assert nx.max_finite("fp8_e4m3") == 448 and nx.round_to(1e6, "fp8_e4m3") == 448   # saturates, no inf
    assert nx.max_finite("fp8_e5m2") == 57344 and nx.round_to(1e6, "fp8_e5m2") == math.inf
    assert nx.fields(nx.to_bits(-2.5, "fp16"), "fp16") == ("1", "10000", "0100000000")


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="unknown format 'fp12'"):
        nx.to_bits(1.0, "fp12")
    with pytest.raises(ValueError, match="16 characters"):
        nx.from_bits("0101", "fp16")
    with pytest.raises(ValueError, match="0/1"):
        nx.from_bits("2" * 8, "fp8_e4m3")
    with pytest.raises(ValueError, match="must be a number"):
        nx.to_bits("one", "fp32")


def test_numerics_is_the_old_name_of_formats():
    from course_utils import numerics
    from course_utils.numerics import from_bits, to_bits

    assert to_bits is nx.to_bits and from_bits is nx.from_bits and numerics.FORMATS is nx.FORMATS
    assert from_bits(to_bits(1.0, "bf16"), "bf16") == 1.0
