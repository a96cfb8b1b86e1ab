"""Byte-level BPE, the algorithm behind GPT-2/GPT-4/GPT-4o's tokenizers.

``BPETokenizer``: byte-level BPE, trained from scratch (``BPETokenizer.train``) or loaded from
tiktoken's GPT-2 / GPT-4 / GPT-4o vocabularies (``BPETokenizer.from_tiktoken``), token-for-token
identical to tiktoken.
"""
from __future__ import annotations

import base64
import collections
import heapq
import json
import os
from typing import Iterable, Sequence

import regex   # the `regex` package (a tiktoken dependency): Unicode classes such as \p{L}
import torch


# ---------------------------------------------------------------------------
# Byte-level BPE (the algorithm behind GPT-2/GPT-4/GPT-4o's tokenizers)
# ---------------------------------------------------------------------------
# Pre-tokenization patterns: text is first cut into chunks, and merges never cross a chunk border.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
GPT4_PATTERN = (r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
                r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s""")
from ..assets import ENCODINGS as TIKTOKEN_NAMES  # noqa: E402  (one list: the encodings the course ships)


def _check_text(text) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected text as a str, got {type(text).__name__}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates are not valid Unicode text; tiktoken replaces them the same way.
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def _pairs_of(ids: Sequence[int]) -> list[tuple[int, int]]:
    return list(zip(ids, ids[1:]))


def merge_pair(ids: Sequence[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """One BPE merge step: replace every non-overlapping ``pair`` (left to right) by ``new_id``."""
    out, i, n = [], 0, len(ids)
    a, b = pair
    while i < n:
        if i < n - 1 and ids[i] == a and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


class BPETokenizer:
    """A byte-level BPE tokenizer: train it yourself, or load GPT-2/GPT-4/GPT-4o's vocabularies.

    The vocabulary is ``ranks``: token bytes -> token id. Ids 0..255 of a tokenizer you train are
    the 256 single bytes; every merge adds one id. Encoding cuts text into chunks with the regex
    ``pattern``, then, inside each chunk, starts from single bytes and keeps merging the adjacent
    pair whose merged bytes have the lowest id (tiktoken's rule, which reproduces the merge order).
    Special tokens (e.g. ``<|endoftext|>``) are whole strings with their own ids, outside the merges.
    """

    def __init__(self, ranks: dict[bytes, int], pattern: str = GPT4_PATTERN,
                 special_tokens: dict[str, int] | None = None,
                 merges: Sequence[tuple[int, int, int]] | None = None, name: str = "bpe"):
        if not isinstance(ranks, dict) or not ranks:
            raise ValueError("ranks must be a non-empty dict {token bytes: id}")
        missing = [b for b in range(256) if bytes([b]) not in ranks]
        if missing:
            raise ValueError(f"a byte-level vocabulary must contain all 256 single bytes; missing {missing[:5]}...")
        self.ranks = dict(ranks)
        self.decoder: dict[int, bytes] = {i: b for b, i in self.ranks.items()}
        if len(self.decoder) != len(self.ranks):
            raise ValueError("two tokens share one id in ranks")
        self.special_tokens = dict(special_tokens or {})
        clash = [s for s, i in self.special_tokens.items() if i in self.decoder]
        if clash:
            raise ValueError(f"special tokens {clash} reuse ids of ordinary tokens")
        self.special_decoder = {i: s.encode("utf-8") for s, i in self.special_tokens.items()}
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        self._special_regex = (regex.compile("|".join(regex.escape(s) for s in
                                                       sorted(self.special_tokens, key=len, reverse=True)))
                               if self.special_tokens else None)
        self.merges = [tuple(m) for m in merges] if merges is not None else None   # (left, right, new id)
        self.name = name
        self._cache: dict[bytes, list[int]] = {}
        self.history: list[tuple[int, int]] = []   # (vocab size, tokens in the training text) while training

    # -- sizes -----------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Number of ids in use: ordinary tokens plus special tokens."""
        return len(self.ranks) + len(self.special_tokens)

    @property
    def n_vocab(self) -> int:
        """One more than the largest id (what an embedding table needs)."""
        return max(max(self.decoder), max(self.special_decoder, default=-1)) + 1

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return (f"BPETokenizer({self.name!r}, {len(self.ranks)} tokens + "
                f"{len(self.special_tokens)} special)")

    # -- training ----------------------------------------------------------------
    @classmethod
    def train(cls, text: str, vocab_size: int, pattern: str = GPT4_PATTERN,
              special_tokens: Sequence[str] = (), progress: bool = False,
              name: str = "course-bpe") -> "BPETokenizer":
        """Learn ``vocab_size - 256`` merges from ``text`` (byte-level BPE, most frequent pair first).

        Counting is done once over the *distinct* chunks (weighted by how often each occurs), and
        after every merge only the chunks that contain the merged pair are updated, so each step
        costs time proportional to what changed instead of re-reading the whole text.
        Ties between equally frequent pairs go to the smallest (left id, right id).
        ``special_tokens`` get the ids right after the learned vocabulary.
        """
        text = _check_text(text)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 256:
            raise ValueError(f"vocab_size must be an integer >= 256 (the 256 bytes come first), got {vocab_size!r}")
        for s in special_tokens:
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
        if special_tokens:   # special tokens are not learned from: cut them out of the text first
            text = "".join(regex.split("|".join(regex.escape(s) for s in special_tokens), text))
        chunk_counts = collections.Counter(regex.findall(pattern, text))
        words = [list(chunk.encode("utf-8")) for chunk in chunk_counts]
        freqs = list(chunk_counts.values())
        stats: dict[tuple[int, int], int] = collections.defaultdict(int)
        where: dict[tuple[int, int], set[int]] = collections.defaultdict(set)
        for w, (ids, f) in enumerate(zip(words, freqs)):
            for p in zip(ids, ids[1:]):
                stats[p] += f
                where[p].add(w)
        heap = [(-c, p) for p, c in stats.items()]
        heapq.heapify(heap)
        vocab = {i: bytes([i]) for i in range(256)}
        ranks = {bytes([i]): i for i in range(256)}
        merges: list[tuple[int, int, int]] = []
        n_tokens = sum(len(ids) * f for ids, f in zip(words, freqs))
        history = [(256, n_tokens)]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=vocab_size - 256, desc=f"learning {vocab_size - 256} merges", unit="merge")
        while len(vocab) < vocab_size and heap:
            neg, pair = heapq.heappop(heap)
            if stats.get(pair, 0) != -neg or neg == 0:   # a stale heap entry: the count has changed since
                continue
            merged = vocab[pair[0]] + vocab[pair[1]]
            new_id = ranks.get(merged)
            if new_id is None:   # (rarely, two different pairs spell the same bytes: reuse that id)
                new_id = len(vocab)
                vocab[new_id] = merged
                ranks[merged] = new_id
                if bar is not None:
                    bar.update(1)
            merges.append((pair[0], pair[1], new_id))
            changed: set[tuple[int, int]] = set()
            for w in where.pop(pair):
                ids, f = words[w], freqs[w]
                old_pairs = _pairs_of(ids)
                new_ids = merge_pair(ids, pair, new_id)
                new_pairs = _pairs_of(new_ids)
                n_tokens -= (len(ids) - len(new_ids)) * f
                for p in old_pairs:
                    stats[p] -= f
                for p in new_pairs:
                    stats[p] += f
                old_set, new_set = set(old_pairs), set(new_pairs)
                for p in old_set - new_set:
                    if p != pair:
                        where[p].discard(w)
                for p in new_set - old_set:
                    where[p].add(w)
                changed |= old_set | new_set
                words[w] = new_ids
            stats.pop(pair, None)
            for p in changed:
                c = stats.get(p, 0)
                if c > 0:
                    heapq.heappush(heap, (-c, p))
                elif p in stats:
                    del stats[p]
            history.append((len(vocab), n_tokens))
        if bar is not None:
            bar.close()
        specials = {s: len(vocab) + k for k, s in enumerate(dict.fromkeys(special_tokens))}
        tok = cls(ranks, pattern=pattern, special_tokens=specials, merges=merges, name=name)
        tok.history = history
        return tok

    def truncated(self, vocab_size: int) -> "BPETokenizer":
        """The same tokenizer with only its first ``vocab_size - 256`` merges (trained tokenizers only)."""
        if self.merges is None:
            raise ValueError("truncated() needs the merge list of a tokenizer trained with BPETokenizer.train")
        n_merges = len(self.merges)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 256 <= vocab_size <= 256 + n_merges:
            raise ValueError(f"vocab_size must be an integer from 256 to {256 + n_merges}, got {vocab_size!r}")
        ranks = {b: i for b, i in self.ranks.items() if i < vocab_size}
        merges = [m for m in self.merges if m[2] < vocab_size]
        return BPETokenizer(ranks, self.pattern, special_tokens={}, merges=merges, name=f"{self.name}[:{vocab_size}]")

    # -- from tiktoken -------------------------------------------------------------
    @classmethod
    def from_tiktoken(cls, name: str) -> "BPETokenizer":
        """The vocabulary, regex and special tokens of a tiktoken encoding, in the course's own encoder.

        ``name``: gpt2, r50k_base, p50k_base, cl100k_base or o200k_base (loaded offline).
        """
        if name not in TIKTOKEN_NAMES:
            raise ValueError(f"unknown tiktoken encoding {name!r}; choose one of {', '.join(TIKTOKEN_NAMES)}")
        from ..assets import get_encoding

        enc = get_encoding(name)
        ranks = getattr(enc, "_mergeable_ranks", None)
        if not isinstance(ranks, dict):   # public API fallback (slower)
            specials = set(enc._special_tokens.values())
            ranks = {enc.decode_single_token_bytes(i): i for i in range(enc.n_vocab) if i not in specials}
        return cls(ranks, pattern=enc._pat_str, special_tokens=dict(enc._special_tokens), name=name)

    # -- encoding ----------------------------------------------------------------
    def _merge_chunk(self, piece: bytes) -> list[int]:
        """BPE inside one chunk: merge the lowest-ranked adjacent pair until none is in the vocabulary."""
        rank = self.ranks.get(piece)
        if rank is not None:
            return [rank]
        if len(piece) > 64:
            return self._merge_chunk_heap(piece)
        ranks = self.ranks
        parts = [piece[i:i + 1] for i in range(len(piece))]
        while len(parts) > 1:
            best_i, best_rank = -1, None
            for i in range(len(parts) - 1):
                r = ranks.get(parts[i] + parts[i + 1])
                if r is not None and (best_rank is None or r < best_rank):
                    best_i, best_rank = i, r
            if best_rank is None:
                break
            parts[best_i:best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        return [ranks[p] for p in parts]

    def _merge_chunk_heap(self, piece: bytes) -> list[int]:
        """The same merges for long chunks in O(n log n): a heap of pairs over a linked list."""
        ranks = self.ranks
        n = len(piece)
        start = list(range(n))          # each live part is piece[start[i]:end[i]]
        end = list(range(1, n + 1))
        nxt = list(range(1, n + 1))
        prv = list(range(-1, n - 1))
        alive = [True] * n
        heap = []
        for i in range(n - 1):
            r = ranks.get(piece[i:i + 2])
            if r is not None:
                heap.append((r, i, i + 1, 2))
        heapq.heapify(heap)
        while heap:
            r, i, j, length = heapq.heappop(heap)
            # stale unless i and j are still neighbours with the same span
            if not (alive[i] and alive[j] and nxt[i] == j and end[j] - start[i] == length):
                continue
            end[i] = end[j]
            alive[j] = False
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            p = prv[i]
            if p >= 0:
                rr = ranks.get(piece[start[p]:end[i]])
                if rr is not None:
                    heapq.heappush(heap, (rr, p, i, end[i] - start[p]))
            q = nxt[i]
            if q < n:
                rr = ranks.get(piece[start[i]:end[q]])
                if rr is not None:
                    heapq.heappush(heap, (rr, i, q, end[q] - start[i]))
        out, i = [], 0
        while i < n:
            out.append(ranks[piece[start[i]:end[i]]])
            i = nxt[i]
        return out

    def encode_chunks(self, text: str) -> list[str]:
        """The regex pre-tokenization alone: the chunks that merges never cross."""
        return self._regex.findall(_check_text(text))

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode text, treating special-token strings as plain text."""
        text = _check_text(text)
        out: list[int] = []
        cache = self._cache
        for chunk in self._regex.findall(text):
            b = chunk.encode("utf-8")
            ids = cache.get(b)
            if ids is None:
                ids = self._merge_chunk(b)
                if len(cache) < 200_000:
                    cache[b] = ids
            out.extend(ids)
        return out

    def encode(self, text: str, allowed_special: str | set[str] = "none") -> list[int]:
        """Text -> token ids.

        ``allowed_special``: "none" (default: special-token strings are encoded as plain text),
        "all", or a set of the special tokens to recognise.
        """
        text = _check_text(text)
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none" or not allowed_special:
            allowed = set()
        elif isinstance(allowed_special, (set, frozenset, list, tuple)):
            unknown = set(allowed_special) - set(self.special_tokens)
            if unknown:
                raise ValueError(f"not special tokens of this tokenizer: {sorted(unknown)}; "
                                 f"it has {sorted(self.special_tokens)}")
            allowed = set(allowed_special)
        else:
            raise ValueError(f"allowed_special must be 'none', 'all' or a set of special tokens, got {allowed_special!r}")
        if not allowed:
            return self.encode_ordinary(text)
        special = regex.compile("|".join(regex.escape(s) for s in sorted(allowed, key=len, reverse=True)))
        out: list[int] = []
        pos = 0
        for m in special.finditer(text):
            out.extend(self.encode_ordinary(text[pos:m.start()]))
            out.append(self.special_tokens[m.group()])
            pos = m.end()
        out.extend(self.encode_ordinary(text[pos:]))
        return out

    # -- decoding ----------------------------------------------------------------
    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes of one token (may be part of a UTF-8 character)."""
        if isinstance(token_id, bool) or not hasattr(token_id, "__index__"):
            raise TypeError(f"token ids are integers, got {token_id!r}")
        token_id = token_id.__index__()
        b = self.decoder.get(token_id)
        if b is None:
            b = self.special_decoder.get(token_id)
        if b is None:
            raise ValueError(f"token id {token_id} is not in this vocabulary "
                             f"(ids 0..{self.n_vocab - 1}, {self.vocab_size} in use)")
        return b

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        if isinstance(ids, (str, bytes)):
            raise TypeError("decode expects a sequence of token ids")
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """Token ids -> text. Bytes that are not valid UTF-8 become '\\ufffd' (like tiktoken)."""
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- save / load ---------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"type": "bpe", "name": self.name, "pattern": self.pattern,
                "special_tokens": self.special_tokens,
                "ranks": [[base64.b64encode(b).decode("ascii"), i]
                          for b, i in sorted(self.ranks.items(), key=lambda kv: kv[1])],
                "merges": self.merges, "history": self.history}

    @classmethod
    def from_dict(cls, d: dict) -> "BPETokenizer":
        if d.get("type") != "bpe":
            raise ValueError(f"not a BPE tokenizer: {d.get('type')!r}")
        ranks = {base64.b64decode(b): int(i) for b, i in d["ranks"]}
        tok = cls(ranks, pattern=d["pattern"], special_tokens=d.get("special_tokens") or {},
                  merges=d.get("merges"), name=d.get("name", "bpe"))
        tok.history = [tuple(h) for h in d.get("history") or []]
        return tok

    def save(self, path: str | os.PathLike) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BPETokenizer":
        with open(path, encoding="utf-8") as f:
            return cls.from_dict(json.load(f))


# ---------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------
def naive_train(text: str, vocab_size: int, pattern: str = GPT4_PATTERN) -> list[tuple[int, int, int]]:
    """The textbook algorithm: recount every pair after every merge (slow, obviously right)."""
    chunks = [list(c.encode("utf-8")) for c in regex.findall(pattern, text)]
    vocab = {i: bytes([i]) for i in range(256)}
    merges = []
    while len(vocab) < vocab_size:
        stats = collections.Counter(p for c in chunks for p in zip(c, c[1:]))
        if not stats:
            break
        top = max(stats.values())
        pair = min(p for p, n in stats.items() if n == top)      # same tie-break as the course trainer
        merged = vocab[pair[0]] + vocab[pair[1]]
        new = next((i for i, b in vocab.items() if b == merged), None)
        if new is None:
            new = len(vocab)
            vocab[new] = merged
        merges.append((pair[0], pair[1], new))
        chunks = [merge_pair(c, pair, new) for c in chunks]
    return merges
