"""BPETokenizer against tiktoken (the reference), training against the naive BPE reference,
the fixed vocabularies, and the any-tokenizer adapter (token pieces)."""
from __future__ import annotations

import random
import unicodedata

import pytest

from course_utils.lessons.tokenization import UDHR_ARTICLE_1
from course_utils.tokenizers import (GPT2_PATTERN, BPETokenizer, CharTokenizer, WordTokenizer,
                                     count_tokens, piece_label, token_pieces)
from course_utils.tokenizers.bpe import naive_train

NAMES = ("gpt2", "cl100k_base", "o200k_base")          # the vocabularies of the pairs fixture (conftest)

VARIED = [
    "Hello world! hello World HELLO   Hello",
    "I'm sure you'll see they've done it. DON'T SHOUT'S",
    "In 2023, 12345 + 67890 = 80235; pi is 3.14159265 and 1,000,000 is a million. 0000001 007",
    "def add(a, b):\n    return a + b  # four spaces\n\n\n\tindented\r\n  trailing   \n",
    "   leading spaces, many     inner spaces, trailing spaces   ",
    "\n\n\n\n",
    " ",
    "",
    "Café déjà vu naïve façade Ångström",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🇫🇷 ✈️ and a flag",
    "<|endoftext|> is a special token; <|fim_prefix|> too",
    "https://example.com/path?query=1&b=2 #hashtag @user 100% $5.99 C++ x->y a||b",
    "x" * 300 + " " * 200 + "!?" * 150 + "1234567890" * 20,
    "\u00a0non-breaking\u2009thin\u3000ideographic\u2028line\u0085next\x0bvt\x0cff",
] + list(UDHR_ARTICLE_1.values())


def random_text(rng: random.Random, n_max: int = 60) -> str:
    """Random strings over ASCII, whitespace, digits and any code point assigned in Python's Unicode tables."""
    out = []
    for _ in range(rng.randint(1, n_max)):
        while True:
            r = rng.random()
            if r < 0.25:
                c = rng.choice(" \t\n\r\x0b\x0c\x85\xa0\u2028\u3000 0123456789'sSLl")
            elif r < 0.45:
                c = chr(rng.randint(0x20, 0x7E))
            elif r < 0.75:
                c = chr(rng.randint(0x80, 0x2FFF))
            else:
                c = chr(rng.randint(0x3000, 0x10FFFF))
            # Characters assigned after Python's Unicode version may be classified differently by
            # the `regex` package and by tiktoken's Rust regex; they are left out on purpose.
            if unicodedata.category(c) not in ("Cn", "Cs"):
                break
        out.append(c)
    return "".join(out)


# ---------------------------------------------------------------------------
# from_tiktoken == tiktoken
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
def test_from_tiktoken_matches_on_varied_text(pairs, corpus, name):
    ours, ref = pairs[name]
    for text in VARIED + [corpus]:
        assert ours.encode(text) == ref.encode_ordinary(text), f"{name} differs on {text[:60]!r}"
        assert ours.decode(ours.encode(text)) == text


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("seed", [0, 1])
def test_from_tiktoken_matches_on_random_unicode(pairs, name, seed):
    ours, ref = pairs[name]
    rng = random.Random(seed)
    for _ in range(400):
        text = random_text(rng)
        ids = ours.encode(text)
        assert ids == ref.encode_ordinary(text), f"{name} differs on {ascii(text)}"
        assert ours.decode(ids) == text


@pytest.mark.parametrize("name", NAMES)
def test_special_tokens_match_tiktoken(pairs, name):
    ours, ref = pairs[name]
    assert ours.special_tokens == ref._special_tokens
    text = "a<|endoftext|>b <|endoftext|><|endoftext|>"
    assert ours.encode(text, allowed_special="all") == ref.encode(text, allowed_special="all")
    assert ours.encode(text) == ref.encode_ordinary(text)
    eot = ours.special_tokens["<|endoftext|>"]
    assert ours.encode(text, allowed_special={"<|endoftext|>"}).count(eot) == 3
    assert ours.decode(ours.encode(text, allowed_special="all")) == text
    with pytest.raises(ValueError, match="not special tokens"):
        ours.encode(text, allowed_special={"<|nope|>"})


def test_long_chunks_use_the_same_merges(pairs):
    """Chunks over 64 bytes take the heap path; it must agree with the simple loop and tiktoken."""
    ours, ref = pairs["cl100k_base"]
    rng = random.Random(5)
    for _ in range(50):
        word = "".join(rng.choice("abcab ") for _ in range(rng.randint(65, 400))).replace(" ", "")
        piece = word.encode()
        assert ours._merge_chunk_heap(piece) == ref.encode_ordinary(word)
        assert ours._merge_chunk_heap(piece) == _loop_merge(ours, piece)


def _loop_merge(tok, piece: bytes) -> list[int]:
    parts = [piece[i:i + 1] for i in range(len(piece))]
    while True:
        cands = [(tok.ranks[parts[i] + parts[i + 1]], i) for i in range(len(parts) - 1)
                 if parts[i] + parts[i + 1] in tok.ranks]
        if not cands:
            return [tok.ranks[p] for p in parts]
        _, i = min(cands)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]


def test_lone_surrogates_are_replaced_like_tiktoken(pairs):
    ours, ref = pairs["cl100k_base"]
    assert ours.encode("a\ud800b") == ref.encode("a\ud800b")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_incremental_training_equals_naive_training(corpus, seed):
    rng = random.Random(seed)
    start = rng.randint(0, len(corpus) - 6000)
    text = corpus[start:start + 6000] + random_text(rng, 200)
    tok = BPETokenizer.train(text, 400)
    assert tok.merges == naive_train(text, 400)
    # the training history counts exactly the tokens that encode() produces
    assert tok.history[-1] == (400, len(tok.encode(text)))
    assert tok.decode(tok.encode(text)) == text


def test_training_with_gpt2_pattern_and_round_trips(corpus):
    tok = BPETokenizer.train(corpus, 500, pattern=GPT2_PATTERN)
    assert tok.vocab_size == 500 and len(tok.merges) >= 244
    rng = random.Random(7)
    for _ in range(200):
        text = random_text(rng)
        assert tok.decode(tok.encode(text)) == text


def test_compression_improves_with_vocab_and_truncation_is_consistent(corpus):
    tok = BPETokenizer.train(corpus, 800)
    sizes = [n for _, n in tok.history]
    assert all(a > b for a, b in zip(sizes, sizes[1:])), "every merge must shorten the training text"
    small = tok.truncated(400)
    assert small.merges == BPETokenizer.train(corpus, 400).merges
    assert len(small.encode(corpus)) > len(tok.encode(corpus))
    with pytest.raises(ValueError, match="from 256 to"):
        tok.truncated(10_000)


def test_trained_special_tokens_and_save_load(tmp_path, corpus):
    tok = BPETokenizer.train(corpus + "<|endoftext|>" * 50, 300, special_tokens=["<|endoftext|>"])
    eot = tok.special_tokens["<|endoftext|>"]
    assert eot == 300 and tok.vocab_size == 301
    assert not any(b"<|" in b and b"|>" in b for b in tok.ranks), "special tokens must not be learned as merges"
    text = "To be<|endoftext|>or not"
    ids = tok.encode(text, allowed_special="all")
    assert ids.count(eot) == 1 and tok.decode(ids) == text
    assert eot not in tok.encode(text)
    tok.save(tmp_path / "tok.json")
    back = BPETokenizer.load(tmp_path / "tok.json")
    assert back.ranks == tok.ranks and back.merges == tok.merges and back.special_tokens == tok.special_tokens
    assert back.history == tok.history
    assert back.encode(text, allowed_special="all") == ids


def test_save_load_tiktoken_vocabulary(tmp_path, pairs):
    ours, ref = pairs["gpt2"]
    ours.save(tmp_path / "gpt2.json")
    back = BPETokenizer.load(tmp_path / "gpt2.json")
    text = VARIED[2] + VARIED[9]
    assert back.encode(text) == ref.encode_ordinary(text)


# ---------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------
def test_bad_input_gives_clear_errors(pairs):
    ours, _ = pairs["gpt2"]
    with pytest.raises(TypeError, match="str"):
        ours.encode(b"bytes")
    with pytest.raises(TypeError, match="str"):
        BPETokenizer.train(123, 300)
    for bad in (255, 0, -1, 300.0, "300", True):
        with pytest.raises(ValueError, match=">= 256"):
            BPETokenizer.train("some text", bad)
    with pytest.raises(ValueError, match="50257 is not in this vocabulary"):
        ours.decode([1, 2, 50257])
    with pytest.raises(ValueError, match="not in this vocabulary"):
        ours.decode([-1])
    with pytest.raises(TypeError):
        ours.decode("abc")
    with pytest.raises(ValueError, match="unknown tiktoken encoding"):
        BPETokenizer.from_tiktoken("gpt5")
    with pytest.raises(ValueError, match="allowed_special"):
        ours.encode("x", allowed_special="some")
    with pytest.raises(ValueError, match="256 single bytes"):
        BPETokenizer({b"a": 0})


def test_decode_accepts_tensors_and_numpy_ints(pairs):
    import numpy as np
    import torch
    ours, ref = pairs["cl100k_base"]
    ids = ref.encode_ordinary("tensor ids")
    assert ours.decode(torch.tensor(ids)) == "tensor ids"
    assert ours.decode(np.array(ids)) == "tensor ids"


def test_char_tokenizer_unchanged():
    tok = CharTokenizer.from_text("hello")
    assert tok.decode(tok.encode("hole")) == "hole"


# ---------------------------------------------------------------------------
# fixed vocabularies and the any-tokenizer adapter
# ---------------------------------------------------------------------------
def test_word_tokenizer_shares_the_vocabulary_base():
    tok = WordTokenizer("the cat sat on the mat".split())
    assert tok.vocab_size == 5 and tok.decode(tok.encode("the mat sat")) == "the mat sat"
    assert tok.encode(["cat", "on"]) == [tok.stoi["cat"], tok.stoi["on"]]
    with pytest.raises(ValueError, match="words not in this world's vocabulary: \\['dog'\\]"):
        tok.encode("the dog")
    with pytest.raises(ValueError, match="outside 0..4"):
        tok.decode([5])
    with pytest.raises(ValueError, match="characters not in this model's vocabulary"):
        CharTokenizer("ab").encode("abc")

def test_token_pieces_cover_the_text(pairs, corpus):
    from transformers import AutoTokenizer

    from course_utils.assets import smollm2_dir
    smol = AutoTokenizer.from_pretrained(str(smollm2_dir(verbose=False)))
    trained = BPETokenizer.train(corpus, 300)
    char = CharTokenizer.from_text(VARIED[0])
    toks = {"smol": smol, "trained": trained, **{n: pairs[n][1] for n in NAMES}}
    for text in VARIED[:12]:
        for name, tok in toks.items():
            pieces = token_pieces(tok, text)
            assert b"".join(b for _, b in pieces) == text.encode("utf-8"), (name, text)
            assert len(pieces) == count_tokens(tok, text)
    assert b"".join(b for _, b in token_pieces(char, VARIED[0])) == VARIED[0].encode()
    # SmolLM2 writes every digit as its own token
    # partial UTF-8 characters are shown as bytes, not as a fake character
    assert piece_label("é".encode()[:1]) == "\\xc3"


