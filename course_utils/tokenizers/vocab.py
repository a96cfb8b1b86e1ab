"""Fixed-vocabulary tokenizers: one token per character, or per word.

A :class:`Vocabulary` is a sorted list of symbols; a symbol's id is its position. Subclasses
only say how text is cut into symbols (``split``) and put back together (``join``):
``CharTokenizer`` (the Shakespeare models) and ``WordTokenizer`` (the invented worlds of the
reversal and hallucination notebooks).
"""
from __future__ import annotations

import json
import os
import re
from typing import Iterable, Sequence

import torch


class Vocabulary:
    """Symbols <-> ids, with clear errors for unknown symbols and out-of-range ids."""

    kind = "symbol"

    def __init__(self, symbols: Iterable[str]):
        symbols = sorted(set(symbols))
        if not symbols:
            raise ValueError(f"a {type(self).__name__} needs at least one {self.kind}")
        self.symbols = symbols
        self.stoi = {s: i for i, s in enumerate(symbols)}
        self.special: list[str] = []      # special tokens, appended after the ordinary symbols

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def split(self, text) -> list[str]:
        raise NotImplementedError

    def join(self, symbols: Sequence[str]) -> str:
        raise NotImplementedError

    def _unknown(self, unknown: list[str]) -> str:
        return f"{self.kind}s not in this vocabulary: {unknown!r} (it has {self.vocab_size} {self.kind}s)"

    def add_special_tokens(self, tokens: Sequence[str]) -> list[int]:
        """Append special tokens (e.g. ``"<|end|>"``) as new symbols; return their ids.

        New ids come after every existing one, so old ids (and a model's rows for them) are
        unchanged. ``encode`` then reads each special token in a text as one token.
        """
        tokens = list(tokens)
        bad = [t for t in tokens if not isinstance(t, str) or not t or t in self.stoi or tokens.count(t) > 1]
        if bad:
            raise ValueError(f"special tokens must be new, distinct, non-empty strings; not {bad!r}")
        for t in tokens:
            self.stoi[t] = len(self.symbols)
            self.symbols.append(t)
            self.special.append(t)
        return [self.stoi[t] for t in tokens]

    def encode(self, text) -> list[int]:
        if self.special and isinstance(text, str):
            pattern = "(" + "|".join(re.escape(t) for t in sorted(self.special, key=len, reverse=True)) + ")"
            ids: list[int] = []
            for piece in re.split(pattern, text):
                if piece in self.special:
                    ids.append(self.stoi[piece])
                elif piece:
                    ids.extend(self._encode_plain(piece))
            return ids
        return self._encode_plain(text)

    def _encode_plain(self, text) -> list[int]:
        symbols = self.split(text)
        unknown = sorted({s for s in symbols if s not in self.stoi})
        if unknown:
            raise ValueError(self._unknown(unknown))
        return [self.stoi[s] for s in symbols]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside 0..{self.vocab_size - 1}")
            out.append(self.symbols[i])
        return self.join(out)


class CharTokenizer(Vocabulary):
    """Maps each character of a fixed alphabet to an id (its position in the sorted alphabet)."""

    kind = "character"

    def __init__(self, chars: Iterable[str]):
        chars = list(chars)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer characters must be single characters")
        super().__init__(chars)

    @property
    def chars(self) -> list[str]:
        return self.symbols

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    def split(self, text) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        return list(text)

    def join(self, symbols: Sequence[str]) -> str:
        return "".join(symbols)

    def _unknown(self, unknown: list[str]) -> str:
        return (f"characters not in this model's vocabulary: {unknown!r} "
                f"(it knows {self.vocab_size} characters: {''.join(self.chars)!r})")

    def to_dict(self) -> dict:
        d = {"type": "char", "chars": "".join(c for c in self.chars if c not in self.special)}
        return {**d, "special": list(self.special)} if self.special else d

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("type") != "char":
            raise ValueError(f"not a character tokenizer: {d.get('type')!r}")
        tok = cls(d["chars"])
        if d.get("special"):
            tok.add_special_tokens(d["special"])
        return tok

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


class WordTokenizer(Vocabulary):
    """One token per whitespace-separated word of a fixed vocabulary (case-sensitive)."""

    kind = "word"

    @property
    def words(self) -> list[str]:
        return self.symbols

    def split(self, text: str | Sequence[str]) -> list[str]:
        return text.split() if isinstance(text, str) else list(text)

    def join(self, symbols: Sequence[str]) -> str:
        return " ".join(symbols)

    def _unknown(self, unknown: list[str]) -> str:
        return (f"words not in this world's vocabulary: {unknown} (the model knows "
                f"{self.vocab_size} words; names and titles are case-sensitive)")
