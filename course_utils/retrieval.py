"""Retrieval for retrieval-augmented generation (RAG): BM25 over a small document store.

BM25 (Robertson and Zaragoza 2009, "The Probabilistic Relevance Framework: BM25 and Beyond",
Foundations and Trends in Information Retrieval 3(4)) scores a document D for a query Q as

    score(D, Q) = sum over query terms q of  IDF(q) * f(q, D) * (k1 + 1) / (f(q, D) + k1 * (1 - b + b * |D| / avgdl))

where f(q, D) is how often q occurs in D, |D| is D's length in tokens, avgdl the mean length over
the store, k1 (typically 1.2-2.0) how fast repeated terms saturate and b (typically 0.75) how much
long documents are penalised. IDF(q) = ln(1 + (N - n(q) + 0.5) / (n(q) + 0.5)), with N documents
of which n(q) contain q: the Robertson-Sparck Jones weight with the "+1" inside the log used by
Lucene, so that a term found in most documents still counts a little instead of negatively.

    store = BM25(["Hilvor Mornelka lives in Pelquinax .", ...])
    store.top(["where", "does", "Hilvor", "Mornelka", "live", "?"], k=3)  -> [(doc index, score), ...]
"""
from __future__ import annotations

import re
from typing import Sequence

import numpy as np

_TOKEN = re.compile(r"\w+", re.UNICODE)


def tokenize(text: str | Sequence[str], lowercase: bool = True) -> list[str]:
    """Words of a text (runs of letters/digits; punctuation dropped), lower-cased by default.

    A list of words is taken as already split (only lower-cased and stripped of punctuation tokens).
    """
    if isinstance(text, str):
        words = _TOKEN.findall(text)
    elif isinstance(text, (list, tuple)):
        words = [w for w in text if isinstance(w, str) and _TOKEN.fullmatch(w)]
    else:
        raise TypeError(f"tokenize expects a str or a list of words, got {type(text).__name__}")
    return [w.lower() for w in words] if lowercase else list(words)


def idf(n_docs: int, doc_freq: np.ndarray) -> np.ndarray:
    """ln(1 + (N - n + 0.5) / (n + 0.5)) for each term's document frequency n."""
    doc_freq = np.asarray(doc_freq, dtype=float)
    return np.log(1.0 + (n_docs - doc_freq + 0.5) / (doc_freq + 0.5))


class BM25:
    """A BM25 index over a list of documents (strings or word lists)."""

    def __init__(self, documents: Sequence[str | Sequence[str]], k1: float = 1.5, b: float = 0.75):
        if not 0 <= k1 <= 10:
            raise ValueError(f"k1 must be in [0, 10], got {k1!r}")
        if not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1], got {b!r}")
        if len(documents) == 0:
            raise ValueError("a BM25 store needs at least one document")
        self.documents = list(documents)
        self.k1, self.b = float(k1), float(b)
        docs = [tokenize(d) for d in self.documents]
        self.vocab = {w: i for i, w in enumerate(sorted({w for d in docs for w in d}))}
        self.tf = np.zeros((len(docs), len(self.vocab)))          # term counts f(q, D)
        for row, d in enumerate(docs):
            for w in d:
                self.tf[row, self.vocab[w]] += 1
        self.lengths = self.tf.sum(1)                              # |D|
        self.avgdl = float(self.lengths.mean()) or 1.0
        self.idf = idf(len(docs), (self.tf > 0).sum(0))

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every document for ``query`` (terms not in any document add nothing)."""
        cols = [self.vocab[w] for w in tokenize(query) if w in self.vocab]
        if not cols:
            return np.zeros(len(self.documents))
        f = self.tf[:, cols]                                       # (docs, query terms); repeats count again
        norm = self.k1 * (1 - self.b + self.b * self.lengths[:, None] / self.avgdl)
        return (self.idf[cols] * f * (self.k1 + 1) / (f + norm)).sum(1)

    def top(self, query: str | Sequence[str], k: int = 1) -> list[tuple[int, float]]:
        """The ``k`` best (document index, score), best first; ties go to the earlier document."""
        if not isinstance(k, int) or not 1 <= k <= len(self.documents):
            raise ValueError(f"k must be an integer from 1 to {len(self.documents)}, got {k!r}")
        s = self.scores(query)
        order = np.argsort(-s, kind="stable")[:k]
        return [(int(i), float(s[i])) for i in order]


def recall_at_k(ranked: Sequence[Sequence[int]], relevant: Sequence[int], k: int = 1) -> float:
    """Share of queries whose relevant document is among the first ``k`` retrieved."""
    if len(ranked) != len(relevant) or not ranked:
        raise ValueError("need one ranking per relevant document, and at least one query")
    return float(np.mean([rel in list(r)[:k] for r, rel in zip(ranked, relevant)]))
