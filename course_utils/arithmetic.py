"""Addition problems, the ways of writing them down, and how well a model solves them.

Used by notebook 13 (math and reasoning) and notebook 01 (tokenization). One problem ``a + b`` can
be written in four *formats* (the answer always ends with ``END``):

* ``plain``:      ``128+395=`` -> ``523.``
* ``reversed``:   ``128+395=`` -> ``325.``  (answer digits units first, the order carries are computed;
  Lee et al. 2023, "Teaching Arithmetic to Small Transformers", arXiv 2307.03381)
* ``chunked``:    as ``plain``, but every number is cut into tokens of up to 3 digits from the left,
  as GPT-4's tokenizer (cl100k_base, pattern ``\\p{N}{1,3}``) cuts digit runs: ``1234`` -> ``123|4``
* ``scratchpad``: ``128+395=`` -> ``[8+5+0=13,2+9+1=12,1+3+1=5]523.`` one step per digit, units first,
  each step ``digit_a+digit_b+carry_in=sum`` (a chain of thought for addition; Nogueira, Jiang & Lin
  2021, arXiv 2102.13019, study such explicit-position and reversed formats).

:func:`addition_accuracy` measures a Hugging Face chat model (SmolLM2) on n-digit additions: greedy
answers in its chat template, batched with left padding, exact match on the first number it writes.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from .tokenizers import CharTokenizer, Vocabulary

FORMATS = ("plain", "reversed", "chunked", "scratchpad")
END = "."
CHUNK = 3                      # digits per token in the chunked format (GPT-4's cl100k_base: 1 to 3)
ALPHABET = "0123456789+=[],."  # every character the formats use


@dataclass(frozen=True)
class Problem:
    a: int
    b: int

    @property
    def answer(self) -> int:
        return self.a + self.b

    @property
    def digits(self) -> int:
        """Digits of the longer operand."""
        return max(len(str(self.a)), len(str(self.b)))

    def __str__(self) -> str:
        return f"{self.a}+{self.b}"


# ------------------------------------------------------------------ problems
def _check_digits(n: int, name: str = "n_digits", top: int = 30) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= top:
        raise ValueError(f"{name} must be an integer from 1 to {top}, got {n!r}")
    return n


def random_number(rng: random.Random, n_digits: int) -> int:
    """A uniformly random number with exactly ``n_digits`` digits (0..9 for one digit)."""
    return rng.randrange(10 ** n_digits) if n_digits == 1 else rng.randrange(10 ** (n_digits - 1), 10 ** n_digits)


def make_problems(n: int, n_digits: int, seed: int = 0, max_digits: int | None = None) -> list[Problem]:
    """``n`` seeded problems. With ``max_digits`` each operand's length is drawn uniformly from
    ``n_digits..max_digits`` (a balanced mix of lengths, as Lee et al. recommend); otherwise both
    operands have exactly ``n_digits`` digits."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n (number of problems) must be an integer >= 1, got {n!r}")
    lo = _check_digits(n_digits)
    hi = lo if max_digits is None else _check_digits(max_digits, "max_digits")
    if hi < lo:
        raise ValueError(f"max_digits={hi} must be >= n_digits={lo}")
    rng = random.Random(seed)
    return [Problem(random_number(rng, rng.randint(lo, hi)), random_number(rng, rng.randint(lo, hi)))
            for _ in range(n)]


def carries(a: int, b: int) -> list[int]:
    """The carry out of every digit position, units first: ``carries(128, 395) == [1, 1, 0]``."""
    if a < 0 or b < 0:
        raise ValueError(f"only non-negative numbers, got {a}, {b}")
    out, carry = [], 0
    for i in range(max(len(str(a)), len(str(b)))):
        carry = (a // 10 ** i % 10 + b // 10 ** i % 10 + carry) // 10
        out.append(carry)
    return out


def n_carries(a: int, b: int) -> int:
    return sum(carries(a, b))


# ------------------------------------------------------------------ formats
def chunk_digits(number: str, size: int = CHUNK) -> list[str]:
    """A digit string cut into pieces of ``size`` digits from the left (GPT-4: ``12345`` -> ``123``, ``45``)."""
    return [number[i:i + size] for i in range(0, len(number), size)]


def scratchpad(a: int, b: int, width: int | None = None) -> str:
    """The per-digit steps of ``a + b``, units first: ``[8+5+0=13,2+9+1=12,1+3+1=5]`` for 128 + 395
    (``width`` digit positions when given)."""
    steps, carry = [], 0
    for i in range(width or max(len(str(a)), len(str(b)))):
        da, db = a // 10 ** i % 10, b // 10 ** i % 10
        total = da + db + carry
        steps.append(f"{da}+{db}+{carry}={total}")
        carry = total // 10
    return "[" + ",".join(steps) + "]"


def _pad(n: int, width: int | None) -> str:
    if width is not None and len(str(n)) > width:
        raise ValueError(f"{n} has more than {width} digits")
    return str(n) if width is None else str(n).zfill(width)


def prompt(problem: Problem, width: int | None = None) -> str:
    """``128+395=``; with ``width`` the operands are zero-padded to that many digits (``0128+0395=``)."""
    return f"{_pad(problem.a, width)}+{_pad(problem.b, width)}="


def target(problem: Problem, fmt: str, width: int | None = None) -> str:
    """What the model should write after the prompt, ending with ``END`` (with ``width``, the answer is
    zero-padded to ``width + 1`` digits, room for the last carry)."""
    check_format(fmt)
    s = _pad(problem.answer, None if width is None else width + 1)
    if fmt == "reversed":
        s = s[::-1]
    elif fmt == "scratchpad":
        s = scratchpad(problem.a, problem.b, width) + s
    return s + END


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    return fmt


def parse_answer(text: str, fmt: str) -> int | None:
    """The number a model's output ``text`` (what came after the prompt) gives, or None if malformed.

    Reads up to the first ``END``; a scratchpad output's answer is what follows its ``]``; a
    reversed answer is read backwards.
    """
    check_format(fmt)
    if END not in text:
        return None
    body = text.split(END, 1)[0]
    if fmt == "scratchpad":
        if "]" not in body:
            return None
        body = body.rsplit("]", 1)[1]
    if not body.isdigit() or not body.isascii():
        return None
    return int(body[::-1] if fmt == "reversed" else body)


def exact_match(text: str, problem: Problem, fmt: str) -> bool:
    """Whether the output gives exactly the sum (leading zeros of a padded answer allowed)."""
    return parse_answer(text, fmt) == problem.answer


class ChunkTokenizer(Vocabulary):
    """Numbers as multi-digit tokens (every digit string of 1..``size`` digits), other characters as one token each."""

    kind = "token"

    def __init__(self, size: int = CHUNK, symbols: str = "+=[],."):
        self.size = _check_digits(size, "chunk size", 4)
        digits = [f"{i:0{k}d}" for k in range(1, size + 1) for i in range(10 ** k)]
        super().__init__(digits + list(symbols))

    def split(self, text: str) -> list[str]:
        out = []
        for run in re.findall(r"\d+|\D", text):
            out.extend(chunk_digits(run, self.size) if run.isdigit() else [run])
        return out

    def join(self, symbols: Sequence[str]) -> str:
        return "".join(symbols)


def make_tokenizer(fmt: str):
    """The tokenizer a format's model reads and writes: characters, or multi-digit chunks."""
    return ChunkTokenizer() if check_format(fmt) == "chunked" else CharTokenizer(ALPHABET)


def encode_example(problem: Problem, fmt: str, tokenizer, width: int | None = None) -> tuple[list[int], int]:
    """(ids of prompt + target, number of prompt tokens)."""
    p = tokenizer.encode(prompt(problem, width))
    return p + tokenizer.encode(target(problem, fmt, width)), len(p)


def training_batch(problems: Sequence[Problem], fmt: str, tokenizer, width: int | None = None,
                   pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, targets) for next-token training on the answers only: prompt and padding targets are -1."""
    rows = [encode_example(p, fmt, tokenizer, width) for p in problems]
    T = max(len(ids) for ids, _ in rows) - 1
    x = torch.full((len(rows), T), pad_id, dtype=torch.long)
    y = torch.full((len(rows), T), -1, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(rows):
        t = torch.tensor(ids)
        x[i, :len(ids) - 1] = t[:-1]
        y[i, n_prompt - 1:len(ids) - 1] = t[n_prompt:]
    return x, y


def max_answer_tokens(n_digits: int, fmt: str, tokenizer, width: int | None = None) -> int:
    """The longest target (in tokens) of any problem with operands of up to ``n_digits`` digits."""
    big = Problem(10 ** n_digits - 1, 10 ** n_digits - 1)
    return len(tokenizer.encode(target(big, fmt, width)))


# ------------------------------------------------------------ course GPT answers
@torch.no_grad()
def generate_answers(model, tokenizer, problems: Sequence[Problem], fmt: str, width: int | None = None,
                     max_new_tokens: int | None = None, temperature: float = 0.0,
                     generator: torch.Generator | None = None) -> list[str]:
    """The course GPT's output after each problem's prompt (greedy by default), cut after ``END``.

    Problems whose prompts have the same token count are decoded together in one batch.
    """
    if max_new_tokens is None:
        max_new_tokens = max_answer_tokens(max(p.digits for p in problems), fmt, tokenizer, width) + 1
    prompts = [tokenizer.encode(prompt(p, width)) for p in problems]
    out: list[str] = [""] * len(problems)
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(prompts):
        by_len.setdefault(len(ids), []).append(i)
    for n, rows in sorted(by_len.items()):
        room = min(max_new_tokens, model.config.block_size - n)
        idx = torch.tensor([prompts[i] for i in rows])
        new = model.generate(idx, room, temperature=temperature, generator=generator)[:, n:]
        for i, ids in zip(rows, new.tolist()):
            text = tokenizer.decode(ids)
            out[i] = text.split(END, 1)[0] + END if END in text else text
    return out


def accuracy(model, tokenizer, problems: Sequence[Problem], fmt: str, width: int | None = None) -> float:
    """Exact-match accuracy of greedy answers."""
    texts = generate_answers(model, tokenizer, problems, fmt, width)
    return sum(exact_match(t, p, fmt) for t, p in zip(texts, problems)) / len(problems)


def wrong_digits(predicted: int, correct: int) -> list[int]:
    """Positions (0 = units) where ``predicted`` differs from ``correct`` (missing digits count as wrong)."""
    a, b = str(predicted)[::-1], str(correct)[::-1]
    return [i for i in range(max(len(a), len(b))) if i >= len(a) or i >= len(b) or a[i] != b[i]]


# ------------------------------------------------------------------ SmolLM2
QUESTION = "What is {a} + {b}?"
ANSWER_PREFIX = "{a} + {b} = "   # the assistant's answer starts here, so its next tokens are the sum
SYSTEM = "You are a calculator. Reply with the result only."


def _with_separators(n: int) -> str:
    return f"{n:,}"


def parse_number(text: str) -> int | None:
    """The first number in a chat answer (thousands separators allowed), or None."""
    m = re.search(r"\d[\d,]*", text)
    if not m:
        return None
    digits = m.group(0).rstrip(",").replace(",", "")
    return int(digits) if digits else None


@torch.inference_mode()
def chat_answers(lm, questions: Sequence[str], max_new_tokens: int, system: str | None = SYSTEM,
                 batch_size: int = 16, prefixes: Sequence[str] | None = None) -> list[str]:
    """Greedy chat answers of an ``lm.HFModel`` to several questions, batched with left padding.

    ``prefixes``: text that starts each assistant answer (e.g. ``"3 + 4 = "``), so the model's next
    tokens are the number; the returned answers do not repeat it.
    """
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    prefixes = list(prefixes) if prefixes is not None else [""] * len(questions)
    out: list[str] = []
    for start in range(0, len(questions), batch_size):
        rows = [lm.chat_ids(q, system=system) + (lm.encode(pre) if pre else [])
                for q, pre in zip(questions[start:start + batch_size], prefixes[start:start + batch_size])]
        T = max(map(len, rows))
        ids = torch.tensor([[pad] * (T - len(r)) + r for r in rows])
        mask = torch.tensor([[0] * (T - len(r)) + [1] * len(r) for r in rows])
        gen = lm.model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens,
                                do_sample=False, pad_token_id=pad)
        out += [tok.decode(g[T:], skip_special_tokens=True).strip() for g in gen]
    return out


def addition_accuracy(lm, n_digits: int, n_problems: int = 50, seed: int = 0, separators: bool = False,
                      max_new_tokens: int | None = None, return_details: bool = False):
    """Exact-match accuracy of a chat model (an ``lm.HFModel``, e.g. SmolLM2) on ``n_digits``-digit additions.

    Each question ("What is 123 + 456?") goes through the model's chat template with a short
    calculator system prompt, and the assistant's answer is started with "123 + 456 = " so that the
    model writes the number next; greedy, batched; the first number it writes (commas removed) must
    equal the sum. ``separators=True`` writes the operands with thousands
    separators (``1,234``). With ``return_details`` also returns one dict per problem.
    """
    _check_digits(n_digits, top=18)
    problems = make_problems(n_problems, n_digits, seed)
    show = _with_separators if separators else str
    questions = [QUESTION.format(a=show(p.a), b=show(p.b)) for p in problems]
    prefixes = [ANSWER_PREFIX.format(a=show(p.a), b=show(p.b)) for p in problems]
    if max_new_tokens is None:   # the answer's digits and one spare (SmolLM2 writes digits one per token)
        max_new_tokens = n_digits + 2 + (n_digits // 3 if separators else 0)
    replies = chat_answers(lm, questions, max_new_tokens, prefixes=prefixes)
    details = []
    for p, r in zip(problems, replies):
        got = parse_number(r)
        details.append({"a": p.a, "b": p.b, "answer": p.answer, "reply": r, "parsed": got,
                        "correct": got == p.answer, "carries": n_carries(p.a, p.b),
                        "wrong_digits": [] if got == p.answer else
                        (wrong_digits(got, p.answer) if got is not None else None)})
    acc = sum(d["correct"] for d in details) / n_problems
    return (acc, details) if return_details else acc
