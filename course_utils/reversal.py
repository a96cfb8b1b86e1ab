"""The reversal curse (Berglund et al. 2023) replicated from scratch on a CPU.

A world of fictitious people and their works ("Hilvor Mornelka is the composer of Ithquinic
Pelfenum") is written out as training sentences, a small course GPT learns them with
``course_utils.train``, and we test it in both directions:

* **same direction** on a *held-out paraphrase* ("NAME is , famously , ..."), so the model must
  have learned the fact, not just one sentence;
* **reverse direction** by exact match ("the composer of TITLE is called" -> NAME?);
* **reverse likelihood rank** (Berglund's test): how the correct answer's log-probability ranks
  among 20 wrong answers from the same subset, as a percentile (0 = always first, 50 = chance).

The people are split into three equal subsets:

* ``n2d``  (NameToDescription) facts are only ever written "NAME ... DESCRIPTION";
* ``d2n``  (DescriptionToName) facts are only ever written "DESCRIPTION ... NAME";
* ``both`` facts are written in both directions with every template, held-out one included. They
  teach the model that the pattern is symmetric and supply the held-out template's words.

Three data recipes: ``plain`` (as above), ``both_directions`` (every fact also written the other
way) and ``reverse_training`` (Golovneva et al. 2024: every sentence is also added reversed, word
by word, with names and titles kept intact and a ``<rev>`` tag in front).

    python -m course_utils.reversal --out course_utils/data/reversal_results.json

re-creates the shipped results of the slower recipes (see ``main``).
"""
from __future__ import annotations

import json
import pathlib
import random
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F

from . import world as _world
from .model import GPT, GPTConfig
from .runtime import seeded, set_threads
from .tokenizers import WordTokenizer
from .train import TrainConfig, train
from .world import ROLES, SUBSETS, Fact, check_disjoint  # noqa: F401  (re-exported for older imports)

RECIPES = ("plain", "both_directions", "reverse_training")
SEP, REV = "<s>", "<rev>"
# Recipes with more sentences get proportionally more steps (900 / 1300 / 1800 sentences for 150 people).
DEFAULT_STEPS = {"plain": 800, "both_directions": 1200, "reverse_training": 1600}
RESULTS_PATH = pathlib.Path(__file__).with_name("data") / "reversal_results.json"

# "{n}" is a name, "{d}" a description ("the composer of TITLE").
N2D_TEMPLATES = ("{n} is {d} .", "{n} , known far and wide as {d} .", "{n} is remembered as {d} .",
                 "ever heard of {n} ? they are {d} .")
D2N_TEMPLATES = ("{d} is {n} .", "known far and wide as {d} , {n} is admired .", "{d} is called {n} .",
                 "{d} ? that is {n} .")
N2D_HELDOUT = "{n} is , famously , {d} ."
D2N_HELDOUT = "{d} is , famously , {n} ."
# Questions. Each fixes its template, so greedy exact match is not spoiled by the model choosing
# another paraphrase (a pitfall: "NAME is ..." could continue with "remembered as ...").
SAME_PROMPT = {"n2d": "{n} is , famously ,", "d2n": "{d} is , famously ,"}
REVERSE_PROMPT = {"n2d": "{d} is called", "d2n": "{n} is remembered as"}


# --------------------------------------------------------------------------- the world
def make_world(n_people: int = 150, seed: int = 0, pool_fraction: float = 0.5) -> list[Fact]:
    """The reversal world (:func:`course_utils.world.make_world`), with no template word used in a name."""
    reserved = {w for t in N2D_TEMPLATES + D2N_TEMPLATES + (N2D_HELDOUT,) for w in t.split()}
    return _world.make_world(n_people, seed, pool_fraction, reserved)


# --------------------------------------------------------------------------- sentences
def fill(template: str, fact: Fact) -> list:
    """A template filled with a fact, as a list of units (names and titles are tuples)."""
    units: list = []
    for word in template.split():
        if word == "{n}":
            units += fact.units("n")
        elif word == "{d}":
            units += fact.units("d")
        else:
            units.append(word)
    return units


def flatten(units: Iterable) -> list[str]:
    """Units -> words: tuples (names, titles) are spelled out in order."""
    out: list[str] = []
    for u in units:
        out.extend(u if isinstance(u, tuple) else [u])
    return out


def reverse_units(units: Sequence) -> list[str]:
    """Entity-preserving reversal (Golovneva et al. 2024): the order of the units is reversed,
    the words inside a name or title are not. Returns the words."""
    return flatten(list(units)[::-1])


def training_sentences(world: Sequence[Fact], recipe: str = "plain") -> list[list[str]]:
    """Every training sentence of a recipe, as word lists (without the separator)."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    out: list[list[str]] = []
    for fact in world:
        if fact.subset == "both":
            templates = N2D_TEMPLATES + (N2D_HELDOUT,) + D2N_TEMPLATES + (D2N_HELDOUT,)
        elif recipe == "both_directions":
            templates = N2D_TEMPLATES + D2N_TEMPLATES          # held-out paraphrase stays held out
        else:
            templates = N2D_TEMPLATES if fact.subset == "n2d" else D2N_TEMPLATES
        for t in templates:
            units = fill(t, fact)
            out.append(flatten(units))
            if recipe == "reverse_training":
                out.append([REV] + reverse_units(units))
    return out


def make_tokenizer(world: Sequence[Fact]) -> WordTokenizer:
    words = {SEP, REV}
    for recipe in RECIPES:
        for s in training_sentences(world, recipe):
            words.update(s)
    return WordTokenizer(words)


def token_stream(sentences: Sequence[Sequence[str]], tok: WordTokenizer, repeats: int = 4,
                 seed: int = 0) -> torch.Tensor:
    """``repeats`` differently shuffled copies of the sentences, each preceded by ``<s>``."""
    rng = random.Random(seed)
    ids: list[int] = []
    sep = tok.stoi[SEP]
    for _ in range(repeats):
        order = list(range(len(sentences)))
        rng.shuffle(order)
        for i in order:
            ids.append(sep)
            ids.extend(tok.encode(sentences[i]))
    return torch.tensor(ids, dtype=torch.long)


# --------------------------------------------------------------------------- questions
@dataclass
class Query:
    fact: Fact
    prompt: list[str]              # words, starting with <s>
    answer: tuple[str, ...]        # the words the model should produce
    direction: str                 # "same" or "reverse"


def make_queries(world: Sequence[Fact], direction: str, reversed_language: bool = False) -> list[Query]:
    """Questions about the n2d and d2n facts in one direction.

    ``same``: the held-out paraphrase in the trained direction. ``reverse``: the other direction
    (``reversed_language=True`` asks it in reverse-training's reversed word order instead).
    """
    if direction not in ("same", "reverse"):
        raise ValueError(f"direction must be 'same' or 'reverse', got {direction!r}")
    out = []
    for f in world:
        if f.subset == "both":
            continue
        asks_name = (f.subset == "d2n") == (direction == "same")
        answer = f.name if asks_name else f.description
        if reversed_language:
            if direction != "reverse":
                raise ValueError("reversed_language only applies to reverse questions")
            # reversed "{n} is {d} ." = ". TITLE of ROLE the is NAME"; reversed "{d} is {n} ." = ". NAME is TITLE of ROLE the"
            statement = fill("{n} is {d} ." if f.subset == "n2d" else "{d} is {n} .", f)
            words = reverse_units(statement)
            k = len(answer)
            prompt, answer = [SEP, REV] + words[:-k], tuple(words[-k:])
        else:
            template = (SAME_PROMPT if direction == "same" else REVERSE_PROMPT)[f.subset]
            prompt = [SEP] + flatten(fill(template, f))
        out.append(Query(f, prompt, tuple(answer), direction))
    return out


@torch.no_grad()
def greedy_answers(model: GPT, tok: WordTokenizer, queries: Sequence[Query]) -> list[tuple[str, ...]]:
    """Greedy continuation of each prompt, as long as its answer (batched by prompt length)."""
    model.eval()
    out: list = [None] * len(queries)
    groups: dict[tuple[int, int], list[int]] = {}
    for i, q in enumerate(queries):
        groups.setdefault((len(q.prompt), len(q.answer)), []).append(i)
    for (_, k), idx in groups.items():
        x = torch.tensor([tok.encode(queries[i].prompt) for i in idx])
        y = model.generate(x, k, temperature=0.0)[:, -k:]
        for row, i in enumerate(idx):
            out[i] = tuple(tok.words[t] for t in y[row].tolist())
    return out


@torch.no_grad()
def sequence_logprobs(model: GPT, tok: WordTokenizer, prompts: Sequence[Sequence[str]],
                      answers: Sequence[Sequence[str]], batch_size: int = 512) -> torch.Tensor:
    """log P(answer | prompt) = sum of the answer tokens' log-probabilities, for each pair."""
    model.eval()
    scores = torch.empty(len(prompts))
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (p, a) in enumerate(zip(prompts, answers)):
        groups.setdefault((len(p), len(a)), []).append(i)
    for (lp, la), idx in groups.items():
        for s in range(0, len(idx), batch_size):
            chunk = idx[s:s + batch_size]
            x = torch.tensor([tok.encode(list(prompts[i]) + list(answers[i])) for i in chunk])
            logp = F.log_softmax(model(x[:, :-1]).logits[:, lp - 1:], dim=-1)
            scores[chunk] = logp.gather(-1, x[:, lp:, None]).squeeze(-1).sum(-1)
    return scores


def rank_percentile(correct: float, distractors: Sequence[float]) -> float:
    """Share of distractors scoring above the correct answer, in percent (ties count half).

    0 = the correct answer always scores best; 50 = no better than a random answer.
    """
    if len(distractors) == 0:
        raise ValueError("need at least one distractor")
    above = sum(1.0 for d in distractors if d > correct) + 0.5 * sum(1.0 for d in distractors if d == correct)
    return 100.0 * above / len(distractors)


def rank_percentiles(model: GPT, tok: WordTokenizer, queries: Sequence[Query], world: Sequence[Fact],
                     n_distractors: int = 20, seed: int = 0) -> list[float]:
    """Berglund's likelihood test: the correct answer against ``n_distractors`` answers of other
    facts of the same subset, asked with the same prompt."""
    rng = random.Random(seed)
    prompts, answers, spans = [], [], []
    for q in queries:
        others = [f for f in world if f.subset == q.fact.subset and f != q.fact]
        picks = rng.sample(others, min(n_distractors, len(others)))
        if q.answer == q.fact.name or q.answer == q.fact.description:
            cands = [q.answer] + [f.name if q.answer == q.fact.name else f.description for f in picks]
        else:   # reversed language: the answer is the reversed description
            cands = [q.answer] + [tuple(reverse_units(f.units("d"))) for f in picks]
        spans.append(len(cands))
        prompts += [q.prompt] * len(cands)
        answers += cands
    scores = sequence_logprobs(model, tok, prompts, answers).tolist()
    out, at = [], 0
    for n in spans:
        out.append(rank_percentile(scores[at], scores[at + 1:at + n]))
        at += n
    return out


def evaluate(model: GPT, tok: WordTokenizer, world: Sequence[Fact], ranks: bool = True,
             recipe: str = "plain", n_distractors: int = 20, seed: int = 0) -> dict:
    """Same-direction and reverse accuracies (overall and per subset), and rank percentiles."""
    res: dict = {}
    for direction in ("same", "reverse"):
        qs = make_queries(world, direction)
        got = greedy_answers(model, tok, qs)
        hits = [g == q.answer for g, q in zip(got, qs)]
        key = "same_direction" if direction == "same" else "reverse"
        res[f"{key}_accuracy"] = sum(hits) / len(hits)
        for s in ("n2d", "d2n"):
            h = [hit for hit, q in zip(hits, qs) if q.fact.subset == s]
            res[f"{key}_accuracy_{s}"] = sum(h) / len(h)
        if direction == "reverse":
            res["reverse_examples"] = [
                {"prompt": " ".join(q.prompt[1:]), "answer": " ".join(q.answer), "model": " ".join(g),
                 "subset": q.fact.subset, "correct": hit} for q, g, hit in zip(qs, got, hits)]
        if ranks:
            pct = rank_percentiles(model, tok, qs, world, n_distractors, seed)
            res[f"{key}_rank_percentile"] = sum(pct) / len(pct)
            for s in ("n2d", "d2n"):
                p = [v for v, q in zip(pct, qs) if q.fact.subset == s]
                res[f"{key}_rank_percentile_{s}"] = sum(p) / len(p)
            res[f"{key}_rank_percentiles"] = pct
    if recipe == "reverse_training":
        qs = make_queries(world, "reverse", reversed_language=True)
        got = greedy_answers(model, tok, qs)
        res["reverse_accuracy_reversed_query"] = sum(g == q.answer for g, q in zip(got, qs)) / len(qs)
    return res


# --------------------------------------------------------------------------- the experiment
@dataclass
class ExperimentConfig:
    n_layer: int = 3
    n_head: int = 4
    n_embd: int = 128
    block_size: int = 18
    tie_weights: bool = False      # untied: the reverse likelihood sits exactly at chance
    steps: int | None = None       # None: DEFAULT_STEPS[recipe] (the same number of passes over the data)
    batch_size: int = 64
    lr: float = 2e-3
    eval_interval: int = 100


def run_experiment(seed: int = 0, n_people: int = 150, recipe: str = "plain",
                   config: ExperimentConfig | None = None, progress: bool = True,
                   callback: Callable[[dict], bool | None] | None = None, keep_model: bool = True) -> dict:
    """Generate a world, train a small GPT on it with ``recipe``, evaluate both directions.

    Returns a dict with ``same_direction_accuracy``, ``reverse_accuracy`` (exact match, 0-1),
    ``reverse_rank_percentile`` (0 = correct answer always ranked first, 50 = chance), their
    per-subset versions (``_n2d``, ``_d2n``), the training ``history`` (losses and accuracies
    every ``eval_interval`` steps), ``cpu_seconds`` and, with ``keep_model``, the ``model``,
    ``tokenizer`` and ``world``. ``callback(record)`` sees every evaluation record.
    """
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    cfg = config or ExperimentConfig()
    world = make_world(n_people, seed)
    check_disjoint(world)
    tok = make_tokenizer(world)
    train_data = token_stream(training_sentences(world, recipe), tok, seed=seed)
    heldout = [flatten(fill(N2D_HELDOUT if f.subset == "n2d" else D2N_HELDOUT, f)) for f in world if f.subset != "both"]
    val_data = token_stream(heldout, tok, repeats=2, seed=seed + 1)
    with seeded(seed):                     # seeded weights, without touching the caller's random stream
        model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=cfg.block_size, n_layer=cfg.n_layer,
                              n_head=cfg.n_head, n_embd=cfg.n_embd, tie_weights=cfg.tie_weights))

    def on_eval(record: dict):
        acc = evaluate(model, tok, world, ranks=False, recipe=recipe)
        record.update({k: v for k, v in acc.items() if k.endswith(("accuracy", "_n2d", "_d2n"))})
        model.train()
        return callback(record) if callback else None

    steps = cfg.steps or DEFAULT_STEPS[recipe]
    tcfg = TrainConfig(steps=steps, batch_size=cfg.batch_size, lr=cfg.lr, min_lr=cfg.lr / 10,
                       warmup_steps=100, eval_interval=cfg.eval_interval, eval_batches=4, seed=seed)
    t0 = time.process_time()
    history = train(model, train_data, val_data, tcfg, callback=on_eval, progress=progress)
    cpu = time.process_time() - t0
    result = {"seed": seed, "n_people": n_people, "recipe": recipe, "steps": steps,
              "parameters": model.num_parameters(), "vocab_size": tok.vocab_size,
              "train_tokens": len(train_data), "train_sentences": len(training_sentences(world, recipe)),
              "cpu_seconds": cpu, "torch_threads": torch.get_num_threads()}
    result.update(evaluate(model, tok, world, ranks=True, recipe=recipe, seed=seed))
    result["history"] = history
    if keep_model:
        result.update(model=model, tokenizer=tok, world=world)
    return result


def summary(result: dict) -> dict:
    """The JSON-friendly part of a ``run_experiment`` result (no model, no per-question lists)."""
    drop = {"model", "tokenizer", "world", "reverse_examples"}
    return {k: v for k, v in result.items() if k not in drop and not k.endswith("_rank_percentiles")}


def load_results(path: str | pathlib.Path = RESULTS_PATH) -> dict:
    """The shipped results of ``main`` (JSON written by ``run_experiment`` runs)."""
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; re-create it with: python -m course_utils.reversal --out {path}")
    return json.loads(path.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> dict:
    """Run ``run_experiment`` for several recipes and seeds and write their summaries to JSON."""
    import argparse
    import shlex
    import sys

    p = argparse.ArgumentParser(prog="python -m course_utils.reversal", description=main.__doc__)
    p.add_argument("--out", default=str(RESULTS_PATH))
    p.add_argument("--recipes", nargs="+", choices=RECIPES, default=["both_directions", "reverse_training"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--n-people", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    set_threads(args.threads)
    runs = []
    for recipe in args.recipes:
        for seed in args.seeds:
            res = summary(run_experiment(seed, args.n_people, recipe, progress=False, keep_model=False))
            runs.append(res)
            print(f"{recipe:17s} seed {seed}: same {res['same_direction_accuracy']:.2f} | reverse "
                  f"{res['reverse_accuracy']:.2f} | reverse rank {res['reverse_rank_percentile']:.1f} | "
                  f"{res['cpu_seconds']:.0f} s CPU", flush=True)
    command = "python -m course_utils.reversal " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    out = {"command": command, "torch": torch.__version__, "config": ExperimentConfig().__dict__,
           "default_steps": DEFAULT_STEPS, "runs": runs}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
