"""course_utils.b64 (the core Base64) against Python's base64 module."""
import base64
import binascii
import random

import pytest

from course_utils import b64


@pytest.mark.parametrize("n", range(65))
def test_encode_decode_agree_with_python_on_random_bytes(n):
    rng = random.Random(n)
    for _ in range(20):
        data = bytes(rng.randrange(256) for _ in range(n))
        want = base64.b64encode(data).decode("ascii")
        assert b64.encode(data) == want
        assert b64.decode(want) == data == base64.b64decode(want, validate=True)


@pytest.mark.parametrize("text", ["", "é", "café", "hello world", "naïve façade", "日本語", "😀 emoji", "ß" * 7,
                                  "Ünïcödé\n\ttabs"])
def test_unicode_text_is_encoded_as_utf8(text):
    want = base64.b64encode(text.encode("utf-8")).decode("ascii")
    assert b64.encode(text) == want
    assert b64.decode(want).decode("utf-8") == text


def test_all_byte_values_and_alphabet():
    data = bytes(range(256))
    assert b64.encode(data) == base64.b64encode(data).decode()
    assert set(b64.encode(data)) - {"="} <= set(b64.ALPHABET)
    assert len(b64.ALPHABET) == len(set(b64.ALPHABET)) == 64


@pytest.mark.parametrize("bad, fragment", [
    ("QQ", "multiple of 4"),
    ("Q2F", "multiple of 4"),
    ("Q2F0Q", "multiple of 4"),
    ("Q2F!", "'!' at position 3"),
    ("Q2 0", "' ' at position 2"),
    ("Q2F0\n", "'\\n' at position 4"),
    ("Q=F0", "middle"),
    ("=Q2F", "middle"),
    ("Q===", "at most 2"),
    ("====", "at most 2"),
    ("Q2é0", "position 2"),
    ("Q2-_", "'-' at position 2"),       # URL-safe alphabet is not standard Base64
])
def test_invalid_input_gives_clear_error_and_python_rejects_it_too(bad, fragment):
    with pytest.raises(ValueError) as info:
        b64.decode(bad)
    assert fragment in str(info.value)
    assert isinstance(info.value, b64.Base64Error)
    with pytest.raises((binascii.Error, ValueError)):
        base64.b64decode(bad, validate=True)


def test_decode_type_errors():
    with pytest.raises(TypeError):
        b64.decode(123)
    with pytest.raises(TypeError):
        b64.encode(3.5)
    assert b64.decode(b"Q2F0") == b"Cat"


def test_offsets_change_every_character():
    encodings = [b64.encode(b64.at_offset("hello", k)) for k in range(3)]
    assert encodings[0] == "aGVsbG8="
    assert len(set(encodings)) == 3
    with pytest.raises(ValueError, match="offset must be 0, 1 or 2"):
        b64.at_offset("hello", 3)
    with pytest.raises(ValueError, match="filler"):
        b64.at_offset("hello", 1, filler="é")


def test_char_sources_cover_every_bit_once():
    rng = random.Random(0)
    for n in range(13):
        data = bytes(rng.randrange(256) for _ in range(n))
        sources = b64.char_sources(data)
        covered = [(b, bit) for s in sources for b, lo, hi in s.byte_bits for bit in range(lo, hi + 1)]
        assert len(covered) == len(set(covered))
        real = sorted(c for c in covered if c[0] < n)
        assert real == [(b, bit) for b in range(n) for bit in range(8)]
        # each character's bits really are those bits of the data (zero fill beyond the end)
        padded = data + b"\0\0"
        for s in sources:
            if s.padding:
                continue
            bits = "".join(format(padded[b], "08b")[lo:hi + 1] for b, lo, hi in s.byte_bits)
            assert bits == s.bits


def test_bytes_of_char_and_chars_of_byte():
    assert b64.bytes_of_char(b"Cat", 0) == [0]
    assert b64.bytes_of_char(b"Cat", 1) == [0, 1]
    assert b64.bytes_of_char(b"Cat", 3) == [2]
    assert b64.chars_of_byte(b"Cat", 1) == [1, 2]
    assert b64.bytes_of_char(b"A", 2) == []            # padding encodes nothing
    with pytest.raises(ValueError, match="outside 0..3"):
        b64.bytes_of_char(b"Cat", 4)
    with pytest.raises(ValueError, match="outside 0..2"):
        b64.chars_of_byte(b"Cat", 3)


def test_encoded_length():
    for n in range(100):
        assert b64.encoded_length(n) == len(base64.b64encode(bytes(n)))
        assert b64.encoded_length(n, padding=False) == len(base64.b64encode(bytes(n)).rstrip(b"="))
    with pytest.raises(ValueError):
        b64.encoded_length(-1)
