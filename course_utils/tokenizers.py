"""Tokenizers written for the course.

``CharTokenizer``: one token per character (the Shakespeare models).
``BPETokenizer`` (byte-level BPE, tiktoken-compatible) lives here too once notebook 01 lands.
"""
from __future__ import annotations

import json
import os
from typing import Iterable

import torch


class CharTokenizer:
    """Maps each character of a fixed alphabet to an id (its position in the sorted alphabet)."""

    def __init__(self, chars: Iterable[str]):
        chars = sorted(set(chars))
        if not chars:
            raise ValueError("CharTokenizer needs at least one character")
        if any(len(c) != 1 for c in chars):
            raise ValueError("CharTokenizer characters must be single characters")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        return cls(set(text))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode expects a str, got {type(text).__name__}")
        unknown = sorted({c for c in text if c not in self.stoi})
        if unknown:
            raise ValueError(f"characters not in this model's vocabulary: {unknown!r} "
                             f"(it knows {self.vocab_size} characters: {''.join(self.chars)!r})")
        return [self.stoi[c] for c in text]

    def decode(self, ids: Iterable[int] | torch.Tensor) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        out = []
        for i in ids:
            if not 0 <= i < self.vocab_size:
                raise ValueError(f"token id {i} is outside 0..{self.vocab_size - 1}")
            out.append(self.chars[i])
        return "".join(out)

    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars)}

    @classmethod
    def from_dict(cls, d: dict) -> "CharTokenizer":
        if d.get("type") != "char":
            raise ValueError(f"not a character tokenizer: {d.get('type')!r}")
        return cls(d["chars"])

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, ensure_ascii=False)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "CharTokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))
