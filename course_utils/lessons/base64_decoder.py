"""Companion of notebook 07 (Base64), the experiment: a tiny transformer that learns to decode Base64.

Every example is ``<base64>:<plain>``. The plain text is always ``N_BYTES`` bytes:
``offset`` filler spaces, an English word (or a random string) and spaces up to the end,
so its Base64 is always ``4 * N_BYTES / 3`` characters without padding. The model reads the
Base64 and writes the plain bytes one character at a time; the loss counts only those.

* ``offsets=(0,)`` trains only on words that start a 3-byte group; ``(0, 1, 2)`` on all three.
* ``reader="chars"`` feeds the Base64 one character per token (the model can see every
  6-bit value); ``reader="groups"`` feeds one token per 4-character group, like a tokenizer
  with big opaque pieces: the model only knows the groups it met in training.

``evaluate`` decodes greedily and scores the word's characters, not the easy filler spaces.
Training goes through the course's one loop, :func:`course_utils.train.train` (progress bar,
interrupt, time limit), with this lesson's batches and accuracy as its hooks.
"""
from __future__ import annotations

import collections
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .. import b64, plots
from ..model import GPT, GPTConfig
from ..runtime import seeded
from ..tokenizers import CharTokenizer, Vocabulary
from ..train import TrainConfig, train

N_BYTES = 9                                   # plain bytes per example (a multiple of 3: no '=' padding)
N_CHARS = 4 * N_BYTES // 3                    # Base64 characters per example
SEP = ":"
FILLER = " "
LETTERS = "abcdefghijklmnopqrstuvwxyz"
MIN_LEN, MAX_LEN = 3, N_BYTES                # training words fill up to all 9 bytes (at offset 0)
EVAL_MAX_LEN = N_BYTES - 2                   # test words fit at every offset
TOKENIZER = CharTokenizer(b64.ALPHABET + SEP + FILLER)


def word_list(text: str, min_count: int = 3) -> list[str]:
    """Lower-case words of 3..9 letters that occur at least ``min_count`` times in ``text``, most frequent first."""
    if not isinstance(min_count, int) or min_count < 1:
        raise ValueError(f"min_count must be a whole number >= 1, got {min_count!r}")
    counts = collections.Counter(re.findall(r"[a-z]+", text.lower()))
    words = [w for w, c in counts.most_common() if MIN_LEN <= len(w) <= MAX_LEN and c >= min_count]
    if not words:
        raise ValueError(f"no words of {MIN_LEN}-{MAX_LEN} letters found in the text")
    return words


def split_words(words: Sequence[str], test_fraction: float = 0.2, seed: int = 0) -> tuple[list[str], list[str]]:
    """Shuffle and split a word list: the test words are never seen in training."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be between 0 and 1, got {test_fraction!r}")
    words = list(dict.fromkeys(words))
    random.Random(seed).shuffle(words)
    cut = int(len(words) * (1 - test_fraction))
    return words[:cut], words[cut:]


def random_strings(lengths: Sequence[int], seed: int = 0) -> list[str]:
    """Random lower-case strings with the given lengths (same lengths as a word list, no language in them)."""
    rng = random.Random(seed)
    return ["".join(rng.choice(LETTERS) for _ in range(n)) for n in lengths]


def plain_text(word: str, offset: int) -> str:
    """``offset`` spaces, the word, spaces up to ``N_BYTES``."""
    if offset not in (0, 1, 2):
        raise ValueError(f"offset must be 0, 1 or 2, got {offset!r}")
    longest = N_BYTES - offset
    if not (MIN_LEN <= len(word) <= longest) or any(c not in LETTERS for c in word):
        raise ValueError(f"at offset {offset} a word must be {MIN_LEN}-{longest} lower-case letters a-z, "
                         f"got {word!r}")
    return (FILLER * offset + word).ljust(N_BYTES, FILLER)


def example(word: str, offset: int) -> tuple[str, str]:
    """One example: (Base64 of the plain text, the plain text)."""
    plain = plain_text(word, offset)
    return b64.encode(plain), plain


def words_by_offset(words: Sequence[str], offsets: Sequence[int]) -> dict[int, list[str]]:
    """For each offset, the words that fit after it."""
    out = {o: [w for w in words if len(w) <= N_BYTES - o] for o in offsets}
    for o, ws in out.items():
        if not ws:
            raise ValueError(f"no word fits at offset {o} (at most {N_BYTES - o} letters)")
    return out


class Reader(Vocabulary):
    """Turns (Base64, plain) into token ids: a :class:`Vocabulary` of the input pieces.

    ``chars``: every Base64 character is a token (the ids of :data:`TOKENIZER`). ``groups``: every
    4-character group is one token; its ids follow the characters' and one "unknown" id, which
    all groups never seen in training share.
    """

    kind = "input piece"

    def __init__(self, kind: str = "chars", groups: Sequence[str] = ()):
        if kind not in ("chars", "groups"):
            raise ValueError(f"reader must be 'chars' or 'groups', got {kind!r}")
        if kind == "groups" and not groups:
            raise ValueError("a group reader needs the groups it knows")
        self.reader = kind
        super().__init__(TOKENIZER.symbols if kind == "chars" else groups)
        self.unknown = TOKENIZER.vocab_size            # id of the unknown group
        self.first_id = 0 if kind == "chars" else TOKENIZER.vocab_size + 1
        self.piece = 1 if kind == "chars" else 4
        self.n_input = N_CHARS // self.piece

    @classmethod
    def for_training(cls, kind: str, by_offset: dict[int, Sequence[str]]) -> "Reader":
        groups = set()
        if kind == "groups":
            for o, ws in by_offset.items():
                for w in ws:
                    e, _ = example(w, o)
                    groups.update(e[i:i + 4] for i in range(0, len(e), 4))
        return cls(kind, groups)

    @property
    def groups(self) -> list[str]:
        return self.symbols if self.reader == "groups" else []

    @property
    def model_vocab_size(self) -> int:
        """Ids the model needs: the characters, plus (group reader) the unknown id and the groups."""
        return TOKENIZER.vocab_size + (1 + self.vocab_size if self.reader == "groups" else 0)

    def split(self, encoded: str) -> list[str]:
        return [encoded[i:i + self.piece] for i in range(0, len(encoded), self.piece)]

    def encode_input(self, encoded: str) -> list[int]:
        if len(encoded) != N_CHARS:
            raise ValueError(f"each Base64 input must be {N_CHARS} characters, got {encoded!r}")
        ids = [self.first_id + self.stoi[p] if p in self.stoi else self.unknown for p in self.split(encoded)]
        return ids + TOKENIZER.encode(SEP)

    def known_fraction(self, encoded: Sequence[str]) -> float:
        """Share of the input groups this reader has a token for (1.0 for the character reader)."""
        pieces = [p for e in encoded for p in self.split(e)]
        return sum(p in self.stoi for p in pieces) / len(pieces)


def make_batch(by_offset: dict[int, Sequence[str]], reader: Reader, batch_size: int,
               rng: random.Random) -> tuple[torch.Tensor, torch.Tensor]:
    """A random offset and word per row; targets are -1 (ignored) except on the plain-text characters."""
    offsets = sorted(by_offset)
    rows = []
    for _ in range(batch_size):
        o = rng.choice(offsets)
        encoded, plain = example(rng.choice(by_offset[o]), o)
        rows.append(reader.encode_input(encoded) + TOKENIZER.encode(plain))
    ids = torch.tensor(rows)
    x, y = ids[:, :-1], ids[:, 1:].clone()
    y[:, :reader.n_input] = -1                         # no loss on reading the Base64 and the separator
    return x, y


# What this lesson changes in the course defaults (GPTConfig, TrainConfig): a shallower model,
# bigger batches, a shorter warm-up. Any field of either may be overridden in DecoderConfig.recipe.
LESSON_RECIPE = {"n_layer": 2, "batch_size": 64, "lr": 2e-3, "min_lr": 2e-4, "warmup_steps": 50}


@dataclass
class DecoderConfig:
    """One decoder run: which offsets it trains at, how it reads, how long; ``recipe`` holds the
    model/optimiser settings that differ from ``GPTConfig``/``TrainConfig`` (default :data:`LESSON_RECIPE`)."""
    offsets: tuple = (0, 1, 2)
    reader: str = "chars"
    steps: int = 300
    seed: int = 0
    eval_every: int = 50
    recipe: dict = field(default_factory=lambda: dict(LESSON_RECIPE))

    def __post_init__(self):
        self.offsets = tuple(sorted(set(self.offsets)))
        if not self.offsets or any(o not in (0, 1, 2) for o in self.offsets):
            raise ValueError(f"offsets must be a non-empty subset of (0, 1, 2), got {self.offsets!r}")
        if self.reader not in ("chars", "groups"):
            raise ValueError(f"reader must be 'chars' or 'groups', got {self.reader!r}")
        if self.steps < 1 or self.eval_every < 1:
            raise ValueError(f"steps and eval_every must be >= 1, got {self.steps}, {self.eval_every}")
        unknown = set(self.recipe) - set(GPTConfig.__dataclass_fields__) - set(TrainConfig.__dataclass_fields__)
        if unknown or {"vocab_size", "block_size", "steps", "seed", "eval_interval"} & set(self.recipe):
            raise ValueError(f"recipe may hold GPTConfig/TrainConfig fields other than vocab_size, block_size, "
                             f"steps, seed and eval_interval, got {sorted(self.recipe)}")

    def configs(self, vocab_size: int, block_size: int) -> tuple[GPTConfig, TrainConfig]:
        model = {k: v for k, v in self.recipe.items() if k in GPTConfig.__dataclass_fields__}
        opt = {k: v for k, v in self.recipe.items() if k in TrainConfig.__dataclass_fields__}
        return (GPTConfig(vocab_size=vocab_size, block_size=block_size, **model),
                TrainConfig(steps=self.steps, seed=self.seed, eval_interval=self.eval_every, **opt))


@dataclass
class Decoder:
    """A trained model and the reader that feeds it."""
    model: GPT
    reader: Reader
    config: DecoderConfig
    history: list = field(default_factory=list)
    cpu_seconds: float = 0.0


def train_decoder(words: Sequence[str], cfg: DecoderConfig, monitor: Sequence[str] | None = None,
                  callback: Callable[[dict], None] | None = None, progress: bool = True,
                  desc: str | None = None) -> Decoder:
    """Train a fresh model on ``words`` at ``cfg.offsets`` with :func:`course_utils.train.train`.

    The model's initial weights come from ``cfg.seed`` (a forked torch RNG: the caller's random
    stream is untouched), the batches from ``random.Random(cfg.seed)``. Every ``eval_every`` steps
    (and at the first and last) the record holds ``train_loss`` (mean since the previous record)
    and, if ``monitor`` words are given, ``offset 0/1/2``: the character accuracy at each offset.
    """
    by_offset = words_by_offset(words, cfg.offsets)
    reader = Reader.for_training(cfg.reader, by_offset)
    model_cfg, train_cfg = cfg.configs(reader.model_vocab_size, reader.n_input + N_BYTES)
    with seeded(cfg.seed):
        model = GPT(model_cfg)
    dec = Decoder(model, reader, cfg)
    rng = random.Random(cfg.seed)

    def eval_fn(_model) -> dict:
        return {f"offset {o}": evaluate(dec, monitor, o)["char_accuracy"] for o in (0, 1, 2)} if monitor else {}

    start = time.process_time()
    dec.history = train(model, None, None, train_cfg, callback=callback, progress=progress,
                        batch_fn=lambda _g: make_batch(by_offset, reader, train_cfg.batch_size, rng), eval_fn=eval_fn,
                        desc=desc or f"{cfg.reader} reader, offsets {cfg.offsets}")
    dec.cpu_seconds = time.process_time() - start
    return dec


@torch.no_grad()
def decode_batch(dec: Decoder, encoded: Sequence[str]) -> list[str]:
    """Greedy decoding: the model's plain text (``N_BYTES`` characters) for each Base64 string."""
    idx = torch.tensor([dec.reader.encode_input(e) for e in encoded])
    out = dec.model.generate(idx, N_BYTES, temperature=0.0)[:, dec.reader.n_input + 1:]   # skip the input and ":"
    # An untrained group reader may write a group id: not a plain character, shown as "?" (always wrong).
    return ["".join(TOKENIZER.symbols[i] if i < TOKENIZER.vocab_size else "?" for i in row) for row in out.tolist()]


@torch.no_grad()
def evaluate(dec: Decoder, words: Sequence[str], offset: int, batch_size: int = 512) -> dict:
    """Decode every word at ``offset``: accuracy on the word's characters, and whole-word exact matches."""
    plains = [plain_text(w, offset) for w in words]
    encoded = [b64.encode(p) for p in plains]
    preds: list[str] = []
    for i in range(0, len(plains), batch_size):
        preds += decode_batch(dec, encoded[i:i + batch_size])
    right = total = exact = 0
    got_words = []
    for w, pred in zip(words, preds):
        got = pred[offset:offset + len(w)]
        got_words.append(got)
        right += sum(a == b for a, b in zip(got, w))
        total += len(w)
        exact += got == w
    return {"offset": offset, "char_accuracy": right / total, "word_accuracy": exact / len(words),
            "known_groups": dec.reader.known_fraction(encoded), "decoded": got_words}


def accuracy_table(dec: Decoder, sets: dict[str, Sequence[str]], offsets: Sequence[int] = (0, 1, 2)) -> dict:
    """{set name: {offset: evaluate(...)}} for several word sets."""
    return {name: {o: evaluate(dec, words, o) for o in offsets} for name, words in sets.items()}


def first_char_errors(dec: Decoder, words: Sequence[str], offset: int) -> tuple[float, float]:
    """Error rate on the word's first character and on all its other characters."""
    r = evaluate(dec, words, offset)
    first = sum(g[:1] != w[:1] for w, g in zip(words, r["decoded"])) / len(words)
    rest_total = sum(len(w) - 1 for w in words)
    rest = sum(a != b for w, g in zip(words, r["decoded"]) for a, b in zip(g[1:], w[1:])) / rest_total
    return first, rest


# ------------------------------------------------------------------ figures
OFFSET_COLORS = plots.PALETTE[:3]


def live_accuracy(title: str) -> plots.LivePlot:
    """A live plot of the character accuracy at each offset; pass ``.update`` as the training callback."""
    return plots.LivePlot({f"offset {o}": f"offset {o}" for o in (0, 1, 2)}, title=title, y_title=
                          "character accuracy (held-out words)", y_range=(0, 1.02),
                          colors={f"offset {o}": OFFSET_COLORS[o] for o in (0, 1, 2)})


def accuracy_bars(results: dict[str, dict[int, dict]], title: str, metric: str = "char_accuracy"):
    """Grouped bars: one group per run/word set (the keys of ``results``), one bar per offset."""
    if metric not in ("char_accuracy", "word_accuracy"):
        raise ValueError(f"metric must be 'char_accuracy' or 'word_accuracy', got {metric!r}")
    groups = {f"offset {o}": {n: r[o][metric] for n, r in results.items() if o in r} for o in (0, 1, 2)}
    fig = plots.grouped_bars(groups, title=title, y_title=metric.replace("_", " "), text_format="%{y:.0%}",
                             colors={f"offset {o}": OFFSET_COLORS[o] for o in (0, 1, 2)}, y_range=(0, 1.12))
    return fig.update_yaxes(tickformat=".0%")


def accuracy_widget(results: dict[str, dict[int, dict]], title: str):
    """The :func:`accuracy_bars` figure with a toggle between character and word accuracy."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    toggle = widgets.ToggleButtons(options=[("character accuracy", "char_accuracy"), ("word accuracy", "word_accuracy")],
                                   description="show:")
    fig = go.FigureWidget(accuracy_bars(results, title))
    toggle.observe(lambda _=None: plots.replace_figure(fig, accuracy_bars(results, title, toggle.value)), "value")
    return widgets.VBox([toggle, fig])


def language_accuracy(models: dict[str, Decoder], sets: dict[str, Sequence[str]]) -> dict[str, dict[str, list[float]]]:
    """{model name: {word-set name: [character accuracy at offsets 0, 1, 2]}}."""
    return {name: {label: [evaluate(m, ws, o)["char_accuracy"] for o in range(3)] for label, ws in sets.items()}
            for name, m in models.items()}


def language_figure(lang: dict[str, dict[str, list[float]]]):
    """Grouped bars of :func:`language_accuracy`: one bar per word set, grouped by model and offset."""
    sets = list(next(iter(lang.values())))
    groups = {label: {f"{name}<br>offset {o}": lang[name][label][o] for name in lang for o in range(3)}
              for label in sets}
    fig = plots.grouped_bars(groups, title="English words vs random strings (character accuracy)",
                             text_format="%{y:.0%}", y_range=(0, 1.12), colors=dict(zip(sets, ("#4e79a7", "#e15759"))))
    return fig.update_layout(height=400).update_yaxes(tickformat=".0%")
