"""A tiny transformer that learns to decode Base64 (notebook 07).

Every example is ``<base64>:<plain>``. The plain text is always ``N_BYTES`` bytes:
``offset`` filler spaces, an English word (or a random string) and spaces up to the end,
so its Base64 is always ``4 * N_BYTES / 3`` characters without padding. The model reads the
Base64 and writes the plain bytes one character at a time; the loss counts only those.

* ``offsets=(0,)`` trains only on words that start a 3-byte group; ``(0, 1, 2)`` on all three.
* ``reader="chars"`` feeds the Base64 one character per token (the model can see every
  6-bit value); ``reader="groups"`` feeds one token per 4-character group, like a tokenizer
  with big opaque pieces: the model only knows the groups it met in training.

``evaluate`` decodes greedily and scores the word's characters, not the easy filler spaces.
"""
from __future__ import annotations

import collections
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import torch

from . import b64
from .model import GPT, GPTConfig
from .tokenizers import CharTokenizer
from .train import TrainConfig, lr_at, make_optimizer, train_step

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


class Reader:
    """Turns (Base64, plain) into token ids.

    ``chars``: every Base64 character is a token. ``groups``: every 4-character group is one
    token; groups never seen in training share one "unknown" token.
    """

    def __init__(self, kind: str = "chars", groups: Sequence[str] = ()):
        if kind not in ("chars", "groups"):
            raise ValueError(f"reader must be 'chars' or 'groups', got {kind!r}")
        self.kind = kind
        self.groups = sorted(set(groups)) if kind == "groups" else []
        self.group_id = {g: TOKENIZER.vocab_size + 1 + i for i, g in enumerate(self.groups)}
        self.unknown = TOKENIZER.vocab_size            # id of the unknown group
        self.n_input = N_CHARS if kind == "chars" else N_CHARS // 4

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
    def vocab_size(self) -> int:
        return TOKENIZER.vocab_size + (1 + len(self.groups) if self.kind == "groups" else 0)

    def encode_input(self, encoded: str) -> list[int]:
        if len(encoded) != N_CHARS:
            raise ValueError(f"each Base64 input must be {N_CHARS} characters, got {encoded!r}")
        if self.kind == "chars":
            return TOKENIZER.encode(encoded + SEP)
        return [self.group_id.get(encoded[i:i + 4], self.unknown) for i in range(0, N_CHARS, 4)] \
            + TOKENIZER.encode(SEP)

    def known_fraction(self, encoded: Sequence[str]) -> float:
        """Share of the input groups this reader has a token for (1.0 for the character reader)."""
        if self.kind == "chars":
            return 1.0
        groups = [e[i:i + 4] for e in encoded for i in range(0, N_CHARS, 4)]
        return sum(g in self.group_id for g in groups) / len(groups)


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


@dataclass
class DecoderConfig:
    offsets: tuple = (0, 1, 2)
    reader: str = "chars"
    steps: int = 300
    batch_size: int = 64
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    lr: float = 2e-3
    warmup_steps: int = 50
    seed: int = 0
    eval_every: int = 50

    def __post_init__(self):
        self.offsets = tuple(sorted(set(self.offsets)))
        if not self.offsets or any(o not in (0, 1, 2) for o in self.offsets):
            raise ValueError(f"offsets must be a non-empty subset of (0, 1, 2), got {self.offsets!r}")
        if self.reader not in ("chars", "groups"):
            raise ValueError(f"reader must be 'chars' or 'groups', got {self.reader!r}")
        if self.steps < 1 or self.batch_size < 1 or self.eval_every < 1:
            raise ValueError(f"steps, batch_size and eval_every must be >= 1, got {self.steps}, "
                             f"{self.batch_size}, {self.eval_every}")


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
    """Train a fresh model on ``words`` at ``cfg.offsets``. Every ``eval_every`` steps the smoothed
    loss and (if ``monitor`` words are given) the character accuracy at each offset are recorded
    and passed to ``callback``."""
    from tqdm.auto import tqdm

    by_offset = words_by_offset(words, cfg.offsets)
    reader = Reader.for_training(cfg.reader, by_offset)
    torch.manual_seed(cfg.seed)
    model = GPT(GPTConfig(vocab_size=reader.vocab_size, block_size=reader.n_input + N_BYTES,
                          n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd)).train()
    tcfg = TrainConfig(steps=cfg.steps, lr=cfg.lr, min_lr=cfg.lr / 10, warmup_steps=cfg.warmup_steps,
                       batch_size=cfg.batch_size)
    opt = make_optimizer(model, tcfg)
    rng = random.Random(cfg.seed)
    dec = Decoder(model, reader, cfg)
    start = time.process_time()
    bar = tqdm(range(cfg.steps), desc=desc or f"{cfg.reader} reader, offsets {cfg.offsets}", disable=not progress)
    smoothed = None
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tcfg)
        x, y = make_batch(by_offset, reader, cfg.batch_size, rng)
        loss = train_step(model, opt, (x, y), tcfg.grad_clip)
        smoothed = loss if smoothed is None else 0.9 * smoothed + 0.1 * loss
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            record = {"step": step + 1, "loss": smoothed}
            if monitor:
                for o in (0, 1, 2):
                    record[f"offset {o}"] = evaluate(dec, monitor, o)["char_accuracy"]
                model.train()
            dec.history.append(record)
            bar.set_postfix(loss=f"{smoothed:.3f}")
            if callback:
                callback(record)
    bar.close()
    dec.cpu_seconds = time.process_time() - start
    model.eval()
    return dec


@torch.no_grad()
def decode_batch(dec: Decoder, encoded: Sequence[str]) -> list[str]:
    """Greedy decoding: the model's plain text (``N_BYTES`` characters) for each Base64 string."""
    idx = torch.tensor([dec.reader.encode_input(e) for e in encoded])
    out = dec.model.generate(idx, N_BYTES, temperature=0.0)
    return [TOKENIZER.decode(row[dec.reader.n_input + 1:]) for row in out]   # skip the input and ":"


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
OFFSET_COLORS = ["#4e79a7", "#f28e2b", "#59a14f"]


class LiveAccuracy:
    """A FigureWidget with one accuracy-vs-step line per offset; pass ``.update`` as the training callback."""

    def __init__(self, title: str):
        import plotly.graph_objects as go

        self.widget = go.FigureWidget()
        for o in (0, 1, 2):
            self.widget.add_scatter(x=[], y=[], mode="lines+markers", name=f"offset {o}",
                                    line=dict(color=OFFSET_COLORS[o]))
        self.widget.update_layout(title=title, xaxis_title="training step", height=340,
                                  yaxis=dict(title="character accuracy (held-out words)", range=[0, 1.02]),
                                  margin=dict(l=60, r=20, t=50, b=50))

    def update(self, record: dict) -> None:
        with self.widget.batch_update():
            for o, trace in enumerate(self.widget.data):
                if f"offset {o}" in record:
                    trace.x = tuple(trace.x) + (record["step"],)
                    trace.y = tuple(trace.y) + (record[f"offset {o}"],)


def accuracy_bars(results: dict[str, dict[int, dict]], title: str, metric: str = "char_accuracy"):
    """Grouped bars: one group per run/word set (the keys of ``results``), one bar per offset."""
    import plotly.graph_objects as go

    if metric not in ("char_accuracy", "word_accuracy"):
        raise ValueError(f"metric must be 'char_accuracy' or 'word_accuracy', got {metric!r}")
    fig = go.Figure()
    names = list(results)
    for o in (0, 1, 2):
        ys = [results[n][o][metric] if o in results[n] else None for n in names]
        fig.add_bar(x=names, y=ys, name=f"offset {o}", marker_color=OFFSET_COLORS[o],
                    texttemplate="%{y:.0%}", textposition="outside")
    fig.update_layout(title=title, barmode="group", height=380, margin=dict(l=60, r=20, t=50, b=60),
                      yaxis=dict(title=metric.replace("_", " "), range=[0, 1.12], tickformat=".0%"))
    return fig
