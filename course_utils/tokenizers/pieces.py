"""Any tokenizer, one interface: ids, and each token's bytes.

Works with a tiktoken ``Encoding``, a course :class:`BPETokenizer` or :class:`CharTokenizer`, and a
Hugging Face tokenizer; ``token_pieces`` gives ``(id, bytes)`` pairs whose bytes join to the text.
"""
from __future__ import annotations

from functools import lru_cache

from .bpe import BPETokenizer
from .vocab import Vocabulary


# ---------------------------------------------------------------------------
# Tokens as (id, bytes), for every kind of tokenizer
# ---------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (Hugging Face byte-level BPE)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def _kind(tokenizer) -> str:
    if isinstance(tokenizer, BPETokenizer):
        return "bpe"
    if isinstance(tokenizer, Vocabulary):
        return "char"
    if hasattr(tokenizer, "decode_single_token_bytes") and hasattr(tokenizer, "encode_ordinary"):
        return "tiktoken"
    if hasattr(tokenizer, "convert_ids_to_tokens"):
        return "hf"
    raise TypeError(f"unsupported tokenizer type {type(tokenizer).__name__}; use a tiktoken Encoding, "
                    "a course BPETokenizer/CharTokenizer/WordTokenizer or a Hugging Face tokenizer")


def encode(tokenizer, text: str) -> list[int]:
    """Token ids of ``text`` (special-token strings are treated as plain text, no BOS/EOS added)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    kind = _kind(tokenizer)
    if kind == "tiktoken":
        return tokenizer.encode_ordinary(text)
    if kind == "hf":
        return list(tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])
    return tokenizer.encode(text)


def count_tokens(tokenizer, text: str) -> int:
    return len(encode(tokenizer, text))


def token_pieces(tokenizer, text: str) -> list[tuple[int, bytes]]:
    """``[(token id, token bytes), ...]``; the bytes of all pieces join to ``text``'s UTF-8 bytes."""
    ids = encode(tokenizer, text)
    kind = _kind(tokenizer)
    if kind == "tiktoken":
        return [(i, tokenizer.decode_single_token_bytes(i)) for i in ids]
    if kind == "bpe":
        return [(i, tokenizer.token_bytes(i)) for i in ids]
    if kind == "char":
        return [(i, tokenizer.decode([i]).encode("utf-8")) for i in ids]
    table = _byte_decoder()
    out = []
    for i, t in zip(ids, tokenizer.convert_ids_to_tokens(ids)):
        if all(c in table for c in t):
            out.append((i, bytes(table[c] for c in t)))
        else:   # not a byte-level token (e.g. a special token)
            out.append((i, tokenizer.decode([i]).encode("utf-8")))
    return out


def piece_label(b: bytes) -> str:
    """A token's bytes as readable text: whitespace made visible, partial UTF-8 shown as \\xNN."""
    try:
        s = b.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(f"\\x{x:02x}" for x in b)
    return s.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥") or "∅"


def token_strings(tokenizer, text: str) -> list[str]:
    """The tokens as strings (partial UTF-8 characters become '\\ufffd')."""
    return [b.decode("utf-8", errors="replace") for _, b in token_pieces(tokenizer, text)]
