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


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------------- SmolLM2
def measure_smollm2(lm, digits=range(1, 7), n_problems: int = 8, seed: int = 0) -> dict:
    """``arithmetic.addition_accuracy`` for each number of digits, with the per-problem details."""
    out = {}
    for n in digits:
        acc, details = ar.addition_accuracy(lm, n, n_problems=n_problems, seed=seed, return_details=True)
        out[n] = {"accuracy": acc, "details": details}
    return out


def error_summary(measured: dict) -> dict:
    """Where SmolLM2's wrong answers go wrong: accuracy by number of carries, and how often each digit
    position (0 = units) is wrong among the wrong answers."""
    by_carry, wrong_at, n_wrong = {}, {}, 0
    for res in measured.values():
        for d in res["details"]:
            by_carry.setdefault(d["carries"], []).append(d["correct"])
            if not d["correct"] and d["wrong_digits"] is not None:
                n_wrong += 1
                for i in d["wrong_digits"]:
                    wrong_at[i] = wrong_at.get(i, 0) + 1
    return {"accuracy_by_carries": {c: sum(v) / len(v) for c, v in sorted(by_carry.items())},
            "wrong_digit_share": {i: wrong_at[i] / n_wrong for i in sorted(wrong_at)} if n_wrong else {},
            "n_wrong": n_wrong}


WORD_PROBLEMS = [
    ("Tom has 3 apples. He buys 5 more and then eats 2. How many apples does Tom have now?", 6),
    ("A box holds 4 pencils. How many pencils are in 3 boxes?", 12),
    ("Anna had 10 stickers. She gave 3 to Ben and 2 to Cleo. How many stickers does Anna have left?", 5),
    ("There are 7 birds on a tree. 4 fly away and then 6 more arrive. How many birds are on the tree?", 9),
]
DIRECT = " Answer with the number only."
STEP_BY_STEP = " Let's think step by step."


def last_number(text: str) -> int | None:
    import re
    found = re.findall(r"\d+", text.replace(",", ""))
    return int(found[-1]) if found else None


def zero_shot_cot(lm, problems=WORD_PROBLEMS, max_new_tokens: int = 60) -> list[dict]:
    """Each word problem asked directly (first number of the reply) and with "Let's think step by step"
    (Kojima et al. 2022; the last number of the reply), greedy, SmolLM2's default system prompt."""
    direct = ar.chat_answers(lm, [q + DIRECT for q, _ in problems], 8, system=None)
    cot = ar.chat_answers(lm, [q + STEP_BY_STEP for q, _ in problems], max_new_tokens, system=None)
    return [{"question": q, "answer": a, "direct": d, "direct_correct": ar.parse_number(d) == a,
             "direct_tokens": len(lm.encode(d)), "cot": c, "cot_correct": last_number(c) == a,
             "cot_tokens": len(lm.encode(c))}
            for (q, a), d, c in zip(problems, direct, cot)]


# --------------------------------------------------------------------------- figures
def live_accuracy_plot(formats) -> plots.LivePlot:
    return plots.LivePlot({f"acc_{f}": FORMAT_NAMES[f] for f in formats}, title="Test accuracy while training",
                          y_title="exact match on 200 held-out sums", y_range=[0, 1.02])


def relabel(live: plots.LivePlot, fmt: str):
    """A train callback that plots this run's ``accuracy`` as the series of ``fmt``."""
    return lambda record: live.update({**record, f"acc_{fmt}": record["accuracy"]})


def smollm2_figure(measured: dict, title: str = "SmolLM2-135M: exact match on n-digit additions") -> go.Figure:
    n = list(measured)
    return plots.bars([f"{k} digits" for k in n], [measured[k]["accuracy"] for k in n], title=title,
                      colors=plots.PALETTE[0], y_title="exact match", text_format="%{y:.0%}")


def curves_figure(runs: list[dict], title: str = "Accuracy against training steps, same budget") -> go.Figure:
    """Test accuracy vs steps for every format: each seed faint, the mean bold."""
    fig = go.Figure()
    formats = list(dict.fromkeys(r["config"]["fmt"] for r in runs))
    for i, fmt in enumerate(formats):
        mine = [r for r in runs if r["config"]["fmt"] == fmt]
        color = plots.PALETTE[i % len(plots.PALETTE)]
        for r in mine:
            fig.add_trace(go.Scatter(x=[h["step"] for h in r["history"]], y=[h["accuracy"] for h in r["history"]],
                                     mode="lines", line=dict(color=color, width=1), opacity=0.35,
                                     showlegend=False, hoverinfo="skip"))
        steps = [h["step"] for h in mine[0]["history"]]
        mean = [sum(r["history"][j]["accuracy"] for r in mine) / len(mine) for j in range(len(steps))]
        fig.add_trace(go.Scatter(x=steps, y=mean, mode="lines+markers", name=f"{FORMAT_NAMES[fmt]} ({len(mine)} seeds)",
                                 line=dict(color=color, width=3)))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="exact match", yaxis_range=[0, 1.02],
                      height=400, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def mean_over_seeds(runs: list[dict], key: str) -> dict:
    """{format: {x: mean of run[key][x] over seeds}} for grouped bars."""
    out: dict = {}
    for fmt in dict.fromkeys(r["config"]["fmt"] for r in runs):
        mine = [r[key] for r in runs if r["config"]["fmt"] == fmt]
        out[FORMAT_NAMES[fmt]] = {x: sum(m[x] for m in mine) / len(mine) for x in mine[0]}
    return out


# ---------------------------------------------------------------------- tokens and widget
def token_boxes(pieces, wrong: set[int] = frozenset()) -> str:
    """Tokens as small boxes (red where ``wrong``)."""
    import html
    style = "display:inline-block;border:1px solid #999;border-radius:3px;padding:0 3px;margin:1px;font-family:monospace"
    return "".join(f"<span style='{style}{';background:#ffd7d5' if i in wrong else ''}'>{html.escape(p)}</span>"
                   for i, p in enumerate(pieces))


def formats_html(problem: ar.Problem, width: int | None = None) -> str:
    """One problem in every format: the tokens the model reads (prompt) and must write (answer)."""
    rows = []
    for fmt in ar.FORMATS:
        tok = ar.make_tokenizer(fmt)
        p, t = tok.split(ar.prompt(problem, width)), tok.split(ar.target(problem, fmt, width))
        rows.append(f"<tr><td>{FORMAT_NAMES[fmt]}</td><td>{token_boxes(p)}</td><td>{token_boxes(t)}</td>"
                    f"<td>{len(t)}</td></tr>")
    return ("<table><tr><th>format</th><th>reads</th><th>writes</th><th>tokens written</th></tr>"
            + "".join(rows) + "</table>")


def ask(runs: dict, a_text: str, b_text: str) -> str:
    """HTML: each trained adder's answer to a + b, the tokens it read and wrote, wrong digits in red,
    and the carries; a clear message for bad input."""
    max_digits = min(AdderConfig(**r["config"]).max_digits for r in runs.values())
    a_text, b_text = a_text.strip(), b_text.strip()
    for name, s in (("a", a_text), ("b", b_text)):
        if not (s.isascii() and s.isdigit()):
            return plots.error_html(f"{name} = {s!r} is not a whole number: type digits 0-9 only")
        if len(s.lstrip("0") or "0") > max_digits:
            return plots.error_html(f"{name} = {s} has more than {max_digits} digits; the adders were trained "
                                    f"on numbers of 1 to {max_digits} digits (0 to {10 ** max_digits - 1})")
    problem = ar.Problem(int(a_text), int(b_text))
    carry = "".join(map(str, ar.carries(problem.a, problem.b)))[::-1]
    rows = []
    for fmt, run in runs.items():
        cfg, tok = AdderConfig(**run["config"]), run["tokenizer"]
        text = ar.generate_answers(run["model"], tok, [problem], fmt, cfg.width)[0]
        got = ar.parse_answer(text, fmt)
        ok = got == problem.answer
        pieces = tok.split(text) if all(c in ar.ALPHABET for c in text) else list(text)
        wrong = set()
        if got is not None and not ok and fmt != "scratchpad":
            bad = ar.wrong_digits(got, problem.answer)
            digits = [i for i, p in enumerate(pieces) if p.isdigit()]
            order = digits if fmt == "reversed" else digits[::-1]     # token index of each position, units first
            wrong = {order[i] for i in bad if i < len(order)} if fmt != "chunked" else set(digits)
        verdict = "<b style='color:#1a7f37'>right</b>" if ok else "<b style='color:#cf222e'>wrong</b>"
        rows.append(f"<tr><td>{FORMAT_NAMES[fmt]}</td><td>{token_boxes(tok.split(ar.prompt(problem, cfg.width)))}</td>"
                    f"<td>{token_boxes(pieces, wrong)}</td><td>{got if got is not None else 'unreadable'}</td>"
                    f"<td>{verdict}</td></tr>")
    return (f"<p>{problem} = <b>{problem.answer}</b> &nbsp; carries (highest position first): "
            f"<code>{carry}</code> ({sum(map(int, carry))} in all)</p>"
            "<table><tr><th>model</th><th>read</th><th>wrote</th><th>answer</th><th></th></tr>"
            + "".join(rows) + "</table>")


def adder_widget(runs: dict, a: str = "478", b: str = "356"):
    """Type two numbers; see each trained adder's answer (``ask``)."""
    import ipywidgets as widgets
    box_a = widgets.Text(value=a, description="a:", continuous_update=False)
    box_b = widgets.Text(value=b, description="b:", continuous_update=False)
    out = widgets.HTML()

    def update(_=None):
        out.value = ask(runs, box_a.value, box_b.value)
    box_a.observe(update, "value")
    box_b.observe(update, "value")
    update()
    return widgets.VBox([widgets.HBox([box_a, box_b]), out])


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


def check_pass_at_k(fn) -> None:
    """Exercise: ``fn(n, c, k)`` is the unbiased pass@k estimator 1 - C(n-c, k) / C(n, k)."""
    for n, c, k in [(10, 0, 1), (10, 3, 1), (10, 3, 5), (16, 1, 8), (5, 5, 2), (20, 2, 19), (100, 7, 10)]:
        got, want = fn(n, c, k), pass_at_k(n, c, k)
        assert abs(float(got) - want) < 1e-9, f"n={n}, c={c}, k={k}: expected {want:.4f}, got {got}"


def learning_speed(runs: list[dict], fmt: str) -> float:
    """Area under the accuracy curve: mean test accuracy over every evaluation after step 0, averaged
    over the seeds of ``fmt`` (1 = perfect from the first evaluation on; it rewards learning early)."""
    mine = [r for r in runs if r["config"]["fmt"] == fmt]
    if not mine:
        raise ValueError(f"no runs of format {fmt!r}")
    return sum(sum(h["accuracy"] for h in r["history"][1:]) / (len(r["history"]) - 1) for r in mine) / len(mine)
