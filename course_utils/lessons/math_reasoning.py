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
from dataclasses import asdict, dataclass

import torch

from .. import arithmetic as ar
from .. import rl
from ..metrics import pass_at_k
from ..model import GPT, GPTConfig
from ..runtime import seeded
from ..train import TrainConfig, stopped_early, train

RESULTS_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "math_reasoning_results.json"
FORMAT_NAMES = {"plain": "plain 123+456=579", "reversed": "reversed answer 975",
                "chunked": "3-digit tokens", "scratchpad": "scratchpad (chain of thought)"}


@dataclass
class AdderConfig:
    fmt: str = "reversed"
    max_digits: int = 4          # operands of 1..max_digits digits, each length equally likely
    n_layer: int = 1
    n_head: int = 4
    n_embd: int = 64
    steps: int = 800
    batch_size: int = 64
    lr: float = 6e-3
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
    """The fixed test set (seed 10_000 + ``n_digits``, never trained on): operands of exactly
    ``n_digits`` digits (default ``max_digits``, the hardest trained length)."""
    n_digits = cfg.max_digits if n_digits is None else n_digits
    return ar.make_problems(n or cfg.n_test, n_digits, seed=10_000 + n_digits)


def make_model(cfg: AdderConfig, tokenizer) -> GPT:
    with seeded(cfg.seed):             # the initial weights depend on the seed only; global state untouched
        return GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=block_size(cfg, tokenizer),
                             n_layer=cfg.n_layer, n_head=cfg.n_head, n_embd=cfg.n_embd))


def train_adder(cfg: AdderConfig = AdderConfig(), callback=None, progress: bool = True,
                time_limit: float | None = None) -> dict:
    """Train a GPT to add in ``cfg.fmt`` on fresh random problems (answers only in the loss);
    ``history`` records test accuracy every ``eval_interval`` steps."""
    tok = ar.make_tokenizer(cfg.fmt)
    model = make_model(cfg, tok)
    test = test_problems(cfg)
    held_out = set(test)   # never train on a test problem
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


# ---------------------------------------------------------------- rewards a program checks
def reward(text: str, problem: ar.Problem, fmt: str, format_bonus: float = 0.0) -> float:
    """1 for an exactly right answer; ``format_bonus`` for a well-formed but wrong one (digits, then END)."""
    got = ar.parse_answer(text, fmt)
    if got == problem.answer:
        return 1.0
    return format_bonus if got is not None else 0.0


def pass_counts(run: dict, problems: list[ar.Problem], n_samples: int, seed: int = 0,
                temperature: float = 1.0) -> list[int]:
    """How many of ``n_samples`` sampled answers (temperature 1) are right, per problem."""
    cfg, model, tok = AdderConfig(**run["config"]), run["model"], run["tokenizer"]
    prompts = [torch.tensor(tok.encode(ar.prompt(p, cfg.width))) for p in problems]
    n_new = ar.max_answer_tokens(cfg.max_digits, cfg.fmt, tok, cfg.width)
    return rl.sample_pass_counts(model, prompts, lambda i, ids: ar.exact_match(tok.decode(ids), problems[i], cfg.fmt),
                                 n_samples, n_new, tok.stoi[ar.END], temperature,
                                 torch.Generator().manual_seed(seed))


def pass_at(counts: list[int], n_samples: int, k: int) -> float:
    """Mean unbiased pass@k over problems (``metrics.pass_at_k``)."""
    return sum(pass_at_k(n_samples, c, k) for c in counts) / len(counts)


def rl_finetune(run: dict, steps: int = 40, n_prompts: int = 16, group_size: int = 8, lr: float = 2e-4,
                kl_coef: float = 0.0, normalize: bool = True, format_bonus: float = 0.0, eval_interval: int = 10,
                seed: int = 0, callback=None, progress: bool = True) -> dict:
    """Fine-tune a trained adder (in place) with the reward "the answer is exactly right" (GRPO-style
    group advantages by default); ``history`` records greedy test accuracy (pass@1 at temperature 0) and
    the mean reward of the samples."""
    cfg, model, tok = AdderConfig(**run["config"]), run["model"], run["tokenizer"]
    if not cfg.pad:
        raise ValueError("rl_finetune needs a padded adder (all prompts the same length)")
    reference = rl.frozen_copy(model) if kl_coef > 0 else None
    test = test_problems(cfg)
    rng = random.Random(seed)
    n_new = ar.max_answer_tokens(cfg.max_digits, cfg.fmt, tok, cfg.width)
    rewards: list[float] = []

    def batch_fn(g):
        probs = [ar.Problem(ar.random_number(rng, rng.randint(1, cfg.max_digits)),
                            ar.random_number(rng, rng.randint(1, cfg.max_digits))) for _ in range(n_prompts)]
        prompts = torch.tensor([tok.encode(ar.prompt(p, cfg.width)) for p in probs])
        batch = rl.rollout(model, prompts, lambda i, ids: reward(tok.decode(ids), probs[i], cfg.fmt, format_bonus),
                           group_size, n_new, tok.stoi[ar.END], 1.0, g, reference, normalize)
        rewards.append(batch.rewards.mean().item())
        return batch

    def eval_fn(m):
        out = {"accuracy": ar.accuracy(m, tok, test, cfg.fmt, cfg.width)}
        if rewards:
            out["reward"] = sum(rewards) / len(rewards)
            rewards.clear()
        return out

    tcfg = TrainConfig(steps=steps, batch_size=n_prompts * group_size, lr=lr, min_lr=lr, warmup_steps=0,
                       eval_interval=eval_interval, seed=seed, weight_decay=0.0)
    history = train(model, None, None, tcfg, callback=callback, progress=progress, batch_fn=batch_fn,
                    loss_fn=lambda m, b: rl.policy_loss(m, b, kl_coef), eval_fn=eval_fn, desc="RL")
    return {"history": history, "accuracy": history[-1]["accuracy"], "stopped": stopped_early(history)}


RL_START_STEPS, RL_STEPS = 600, 60


def rl_experiment(seed: int = 0, start_steps: int = RL_START_STEPS, rl_steps: int = RL_STEPS, n_test: int = 100,
                  n_samples: int = 16, callback=None, progress: bool = False, **rl_kw) -> dict:
    """A partly trained plain adder, then ``rl_steps`` of policy gradient on "exactly right":
    greedy accuracy, sampled pass@1 and pass@8 before and after."""
    run = train_adder(AdderConfig(fmt="plain", steps=start_steps, seed=seed, eval_interval=start_steps),
                      progress=progress)
    probs = test_problems(AdderConfig(fmt="plain"), n=n_test)

    def measure():
        counts = pass_counts(run, probs, n_samples, seed=seed)
        return {"greedy": ar.accuracy(run["model"], run["tokenizer"], probs, "plain", run["config"]["max_digits"]),
                "pass@1": pass_at(counts, n_samples, 1), "pass@8": pass_at(counts, n_samples, 8)}
    before = measure()
    t0 = time.process_time()
    res = rl_finetune(run, steps=rl_steps, seed=seed, callback=callback, progress=progress, **rl_kw)
    return {"seed": seed, "start_steps": start_steps, "rl_steps": rl_steps, "before": before, "after": measure(),
            "history": res["history"], "rl_cpu_seconds": time.process_time() - t0, "stopped": res["stopped"],
            "run": run}


def load_results(path=RESULTS_PATH) -> dict:
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def summary(run: dict) -> dict:
    """What the results file keeps of a run (no weights)."""
    keep = ("config", "history", "accuracy", "parameters", "cpu_seconds", "stopped")
    return {**{k: run[k] for k in keep}, **evaluate_adder(run)}


def main(argv=None) -> dict:
    """Train every format for several seeds at the same budget, run the RL experiment, write JSON."""
    import argparse
    import shlex
    import sys

    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.math_reasoning", description=main.__doc__)
    p.add_argument("--out", default=str(RESULTS_PATH))
    p.add_argument("--formats", nargs="+", choices=ar.FORMATS, default=list(ar.FORMATS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=AdderConfig.steps)
    p.add_argument("--rl-start-steps", type=int, default=RL_START_STEPS)
    p.add_argument("--rl-steps", type=int, default=RL_STEPS)
    p.add_argument("--merge", nargs="+", help="instead of training: join result files made by this command")
    args = p.parse_args(argv)
    if args.merge:
        parts = [load_results(f) for f in args.merge]
        out = {"command": " ; ".join(part["command"] for part in parts), "torch": torch.__version__,
               "runs": [r for part in parts for r in part["runs"]], "rl": [r for part in parts for r in part["rl"]]}
        pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
        return out
    torch.set_num_threads(1)
    runs, rl_runs = [], []
    for fmt in args.formats:
        for seed in args.seeds:
            res = summary(train_adder(AdderConfig(fmt=fmt, steps=args.steps, seed=seed), progress=False))
            runs.append(res)
            print(f"{fmt:10s} seed {seed}: accuracy {res['accuracy']:.2f} by digits {res['accuracy_by_digits']} "
                  f"| {res['cpu_seconds']:.0f} s CPU", flush=True)
    for seed in args.seeds if args.rl_steps else []:
        rl_runs.append({k: v for k, v in rl_experiment(seed, args.rl_start_steps, args.rl_steps).items() if k != "run"})
        print(f"RL seed {seed}: {rl_runs[-1]['before']} -> {rl_runs[-1]['after']}", flush=True)
    command = "python -m course_utils.lessons.math_reasoning " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = {"command": command, "torch": torch.__version__, "runs": runs, "rl": rl_runs}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out



# ------------------------------------------------------------------------- exercises
def check_reversed(fn) -> None:
    """Exercise: ``fn(a, b)`` returns the reversed-answer target, e.g. (128, 395) -> "325."."""
    for p in [ar.Problem(128, 395), ar.Problem(5, 5), ar.Problem(999, 1), ar.Problem(70, 30)]:
        got = fn(p.a, p.b)
        want = ar.target(p, "reversed")
        assert isinstance(got, str), f"return a str such as '325.', got {type(got).__name__}"
        assert got == want, f"{p.a}+{p.b}: expected {want!r}, got {got!r}"


def check_scratchpad(fn) -> None:
    """Exercise: ``fn(a, b)`` returns the scratchpad, e.g. (128, 395) -> "[8+5+0=13,2+9+1=12,1+3+1=5]"."""
    for p in [ar.Problem(128, 395), ar.Problem(7, 8), ar.Problem(999, 1), ar.Problem(40, 15), ar.Problem(305, 905)]:
        got, want = fn(p.a, p.b), ar.scratchpad(p.a, p.b)
        assert got == want, f"{p.a}+{p.b}: expected {want!r}, got {got!r}"


REWARD_CASES = [("42.", 12, 30), ("042.", 12, 30), ("43.", 12, 30), ("42", 12, 30), ("4x.", 12, 30),
                ("42.junk", 12, 30), (".", 12, 30), (" 42.", 12, 30), ("1000.", 999, 1), ("100.", 999, 1)]


def check_reward(fn) -> None:
    """Exercise: ``fn(text, a, b)`` is a verifiable reward for a plain adder's output ``text``: 1.0 when the
    digits before the first END are exactly a + b (leading zeros allowed), 0.1 when they are digits but
    wrong (the format reward), 0.0 when the output is malformed. Reference: :func:`reward` with
    ``format_bonus=0.1``."""
    for text, a, b in REWARD_CASES:
        got, want = fn(text, a, b), reward(text, ar.Problem(a, b), "plain", format_bonus=0.1)
        assert isinstance(got, (int, float)), f"return a number, got {type(got).__name__}"
        assert abs(float(got) - want) < 1e-9, f"output {text!r} for {a}+{b}: expected reward {want}, got {got}"


def learning_speed(runs: list[dict], fmt: str) -> float:
    """Area under the accuracy curve: mean test accuracy over every evaluation after step 0, averaged
    over the seeds of ``fmt`` (1 = perfect from the first evaluation on; it rewards learning early)."""
    mine = [r for r in runs if r["config"]["fmt"] == fmt]
    if not mine:
        raise ValueError(f"no runs of format {fmt!r}")
    return sum(sum(h["accuracy"] for h in r["history"][1:]) / (len(r["history"]) - 1) for r in mine) / len(mine)


# The figures, SmolLM2 helpers and the widget live in a sibling module; re-exported here (at the end,
# because they use the configuration above) so the notebook keeps one alias, ``lab``.
from .math_reasoning_views import *  # noqa: E402,F401,F403


if __name__ == "__main__":
    main()
