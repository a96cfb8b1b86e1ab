"""Companion of notebook 13 (why LLMs are bad at math): train tiny adders, compare formats, reward them.

Experiment drivers (``train_adder``, ``rl_finetune``), the shipped results (``main`` writes
``course_utils/data/math_reasoning_results.json``), figures, the "ask the adders" widget and the
exercise checkers. The arithmetic itself lives in :mod:`course_utils.arithmetic`, the policy
gradient in :mod:`course_utils.rl`.
"""
from __future__ import annotations

import json
import pathlib
import random
import time
from dataclasses import asdict, dataclass, replace

import plotly.graph_objects as go
import torch

from .. import arithmetic as ar
from .. import plots, rl
from ..metrics import pass_at_k
from ..model import GPT, GPTConfig
from ..train import TrainConfig, stopped_early, train

RESULTS_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "math_reasoning_results.json"
FORMAT_NAMES = {"plain": "plain 123+456=579", "reversed": "reversed answer 975",
                "chunked": "3-digit tokens", "scratchpad": "scratchpad (chain of thought)"}


@dataclass
class AdderConfig:
    fmt: str = "reversed"
    max_digits: int = 3          # operands of 1..max_digits digits, each length equally likely
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 64
    steps: int = 800
    batch_size: int = 64
    lr: float = 3e-3
    eval_interval: int = 100
    n_test: int = 200
    pad: bool = True             # zero-pad operands to max_digits (digits always sit at the same positions)
    seed: int = 0

    @property
    def width(self) -> int | None:
        return self.max_digits if self.pad else None

    def __post_init__(self):
        ar.check_format(self.fmt)
        if not 1 <= self.max_digits <= 5:
            raise ValueError(f"max_digits must be 1..5 for these small models, got {self.max_digits}")


def block_size(cfg: AdderConfig, tokenizer) -> int:
    """Room for a prompt and answer one digit longer than trained (the length-generalisation test)."""
    n = cfg.max_digits + 1
    w = n if cfg.pad else None
    return len(tokenizer.encode(ar.prompt(ar.Problem(10 ** n - 1, 10 ** n - 1), w))) + \
        ar.max_answer_tokens(n, cfg.fmt, tokenizer, w) + 1


def test_problems(cfg: AdderConfig, n_digits: int | None = None, n: int | None = None) -> list[ar.Problem]:
    """The fixed test set (seed 10_000 + ``n_digits``, never trained on): operands of 1..max_digits
    digits, or of exactly ``n_digits`` digits."""
    if n_digits is None:
        return ar.make_problems(n or cfg.n_test, 1, seed=10_000, max_digits=cfg.max_digits)
    return ar.make_problems(n or cfg.n_test, n_digits, seed=10_000 + n_digits)


def make_model(cfg: AdderConfig, tokenizer) -> GPT:
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(cfg.seed)        # the initial weights depend on the seed only; global state restored
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size(cfg, tokenizer),
                          n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd))
    torch.random.set_rng_state(torch_state)
    return model


def train_adder(cfg: AdderConfig = AdderConfig(), callback=None, progress: bool = True,
                time_limit: float | None = None) -> dict:
    """Train a GPT to add in ``cfg.fmt`` on fresh random problems (answers only in the loss);
    ``history`` records test accuracy every ``eval_interval`` steps."""
    tok = ar.make_tokenizer(cfg.fmt)
    model = make_model(cfg, tok)
    test = test_problems(cfg)
    held_out = set(test)
    rng = random.Random(cfg.seed)

    def batch_fn(_g):
        probs = []
        while len(probs) < cfg.batch_size:
            p = ar.Problem(ar.random_number(rng, rng.randint(1, cfg.max_digits)),
                           ar.random_number(rng, rng.randint(1, cfg.max_digits)))
            if p not in held_out:
                probs.append(p)
        return ar.training_batch(probs, cfg.fmt, tok, cfg.width)

    eval_fn = lambda m: {"accuracy": ar.accuracy(m, tok, test, cfg.fmt, cfg.width)}   # noqa: E731
    tcfg = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, lr=cfg.lr, min_lr=cfg.lr / 10,
                       warmup_steps=min(50, cfg.steps // 10), eval_interval=cfg.eval_interval, seed=cfg.seed,
                       time_limit=time_limit)
    t0 = time.process_time()
    history = train(model, None, None, tcfg, callback=callback, progress=progress, batch_fn=batch_fn,
                    eval_fn=eval_fn, desc=f"{cfg.fmt} adder")
    return {"config": asdict(cfg), "model": model, "tokenizer": tok, "history": history,
            "accuracy": history[-1]["accuracy"], "parameters": model.num_parameters(),
            "cpu_seconds": time.process_time() - t0, "stopped": stopped_early(history)}


def evaluate_adder(run: dict, n_per_length: int = 100) -> dict:
    """Accuracy by operand length (1..max_digits+1: the last one never trained), by number of carries,
    and tokens per answer."""
    cfg, model, tok = AdderConfig(**run["config"]), run["model"], run["tokenizer"]
    by_len, by_carry, lengths = {}, {}, []
    for n in range(1, cfg.max_digits + 2):
        probs = test_problems(cfg, n, n_per_length)
        w = None if not cfg.pad else max(n, cfg.max_digits)
        texts = ar.generate_answers(model, tok, probs, cfg.fmt, w)
        by_len[n] = sum(ar.exact_match(t, p, cfg.fmt) for t, p in zip(texts, probs)) / len(probs)
        if n <= cfg.max_digits:
            lengths += [len(tok.encode(ar.target(p, cfg.fmt, w))) for p in probs]
            for t, p in zip(texts, probs):
                by_carry.setdefault(ar.n_carries(p.a, p.b), []).append(ar.exact_match(t, p, cfg.fmt))
    return {"accuracy_by_digits": by_len,
            "accuracy_by_carries": {c: sum(v) / len(v) for c, v in sorted(by_carry.items())},
            "tokens_per_answer": sum(lengths) / len(lengths)}
