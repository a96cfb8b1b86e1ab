"""The world model of notebooks/11_hallucination.ipynb (used through its companion
:mod:`course_utils.lessons.hallucination`): the world of invented people, the prompts, training and asking.

The world (``make_world``): people from :func:`course_utils.world.make_people`, each with a birth year, a
city and a job. Those born up to ``CUTOFF`` are in the training data ("known"): half of their
question-answer pairs appear once in the data set, half five times. Those born later are the news after
the cutoff ("unknown"): no training example mentions them. A third group, the "readers", only appear in
open-book examples (a document, then a question), which teach the model to read a context.

    python -m course_utils.lessons.hallucination --out course_utils/checkpoints/hallucination-world

re-trains the shipped checkpoint with the recipe below (see ``main``; the companion runs it).
"""
from __future__ import annotations

import argparse
import pathlib
import random
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from ..model import GPT, GPTConfig
from ..tokenizers import WordTokenizer
from ..train import TrainConfig, train
from ..world import Person, make_people

CHECKPOINT = pathlib.Path(__file__).resolve().parents[1] / "checkpoints" / "hallucination-world"
CUTOFF = 1900
SEP, PAD, UNKNOWN = "<s>", "<pad>", "unknown"
QUESTIONS = {"city": "where does {n} live ?", "job": "what does {n} do ?", "year": "when was {n} born ?"}
DOC = "{n} was born in {year} , lives in {city} and works as a {job} ."
TEMPLATE_WORDS = set(" ".join(QUESTIONS.values()).split()) | set(DOC.split()) | {
    "question", ":", "answer", "document", SEP, PAD, UNKNOWN}
ATTRS = {"city": "city", "job": "job", "year": "birth_year"}


# --------------------------------------------------------------------------- the world
@dataclass
class World:
    people: list[Person]
    groups: dict[str, list[Person]]            # once, five, abstain, heldout, readers
    seed: int

    def group_of(self, person: Person) -> str:
        return next(g for g, ps in self.groups.items() if person in ps)

    def by_name(self, name: str) -> Person | None:
        return next((p for p in self.people if p.full_name == name), None)


def make_world(n_people: int = 600, n_readers: int = 150, seed: int = 0) -> World:
    """Invented people split into known (seen once / five times), unknown (abstain-trained / held out)
    and readers. Unknown people are only kept if both of their name words occur in the training data."""
    if not isinstance(n_people, int) or not 60 <= n_people <= 3000:
        raise ValueError(f"n_people must be an integer between 60 and 3000, got {n_people!r}")
    people = make_people(n_people, seed, reserved=TEMPLATE_WORDS)
    rng = random.Random(seed)
    order = people[:]
    rng.shuffle(order)
    readers, rest = order[:n_readers], order[n_readers:]
    known = [p for p in rest if p.birth_year <= CUTOFF]
    seen_words = {w for p in known + readers for w in p.name}
    unknown = [p for p in rest if p.birth_year > CUTOFF and set(p.name) <= seen_words]
    half_k, third_u = len(known) // 2, len(unknown) // 3
    groups = {"once": known[:half_k], "five": known[half_k:], "abstain": unknown[:third_u],
              "heldout": unknown[third_u:], "readers": readers}
    return World([p for g in groups.values() for p in g], groups, seed)


def question(person: Person | str, attr: str) -> list[str]:
    name = person.full_name if isinstance(person, Person) else person
    return QUESTIONS[attr].format(n=name).split()


def document(person: Person, **override) -> list[str]:
    """The person's one-sentence document; ``override`` puts in another value (a counterfactual)."""
    values = dict(n=person.full_name, year=person.birth_year, city=person.city, job=person.job)
    values.update(override)
    return DOC.format(**values).split()


def closed_prompt(q: list[str]) -> list[str]:
    return [SEP, "question", ":"] + q + ["answer", ":"]


def open_prompt(doc: list[str], q: list[str]) -> list[str]:
    return [SEP, "document", ":"] + doc + ["question", ":"] + q + ["answer", ":"]


def answer_of(person: Person, attr: str) -> str:
    return str(getattr(person, ATTRS[attr]))


def training_examples(world: World, abstain: bool = False) -> list[tuple[list[str], str]]:
    """(prompt words, answer word) pairs of the training set. Seen-once facts appear once, seen-five
    five times; readers appear only open-book; with ``abstain`` the abstain group is answered "unknown"."""
    out = []
    for copies, group in ((1, "once"), (5, "five")):
        for p in world.groups[group]:
            for attr in QUESTIONS:
                out += [(closed_prompt(question(p, attr)), answer_of(p, attr))] * copies
    for p in world.groups["readers"]:
        for attr in QUESTIONS:
            out += [(open_prompt(document(p), question(p, attr)), answer_of(p, attr))] * 3
    if abstain:
        for p in world.groups["abstain"]:
            for attr in QUESTIONS:
                out += [(closed_prompt(question(p, attr)), UNKNOWN)] * 3
    return out


def make_tokenizer(world: World) -> WordTokenizer:
    words = set(TEMPLATE_WORDS)
    for p in world.people:
        words.update(p.name)
        words.update(document(p))
    return WordTokenizer(words)


# --------------------------------------------------------------------------- training
@dataclass
class Recipe:
    n_people: int = 600
    n_readers: int = 150
    seed: int = 0
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    steps: int = 1200
    batch_size: int = 64
    lr: float = 3e-3
    open_share: float = 0.3          # share of batches drawn from the open-book examples
    model: dict = field(default_factory=dict)


def batch_sampler(examples, tok: WordTokenizer, batch_size: int, open_share: float = 0.3):
    """``batch_fn`` for ``train.train``: a batch of right-padded prompts whose only target is the answer."""
    closed = [e for e in examples if e[0][1] == "question"]
    opened = [e for e in examples if e[0][1] == "document"]
    enc = lambda rows: [(tok.encode(p), tok.stoi[a]) for p, a in rows]  # noqa: E731
    pools = [enc(closed), enc(opened)] if opened else [enc(closed), enc(closed)]
    pad = tok.stoi[PAD]

    def batch_fn(g: torch.Generator):
        pool = pools[1] if torch.rand((), generator=g).item() < open_share else pools[0]
        idx = torch.randint(len(pool), (batch_size,), generator=g).tolist()
        T = max(len(pool[i][0]) for i in idx)
        x = torch.full((batch_size, T), pad)
        y = torch.full((batch_size, T), -1)
        for r, i in enumerate(idx):
            ids, a = pool[i]
            x[r, :len(ids)] = torch.tensor(ids)
            y[r, len(ids) - 1] = a
        return x, y
    return batch_fn


def new_model(tok: WordTokenizer, recipe: Recipe) -> GPT:
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=32, n_layer=recipe.n_layer, n_head=recipe.n_head,
                    n_embd=recipe.n_embd, dropout=0.0, tie_weights=True)
    g = torch.Generator().manual_seed(recipe.seed)
    model = GPT(cfg)
    with torch.no_grad():                                   # re-draw the init from a local generator
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                std = 0.02 / (2 * cfg.n_layer) ** 0.5 if name.endswith("proj.weight") else 0.02
                p.copy_(torch.randn(p.shape, generator=g) * std)
    return model


# --------------------------------------------------------------------------- asking
@torch.no_grad()
def answer_dists(model: GPT, tok: WordTokenizer, prompts: list[list[str]]) -> torch.Tensor:
    """Next-word probabilities (n, V) after each prompt (batched by prompt length)."""
    model.eval()
    out = torch.empty(len(prompts), tok.vocab_size)
    by_len: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_len.setdefault(len(p), []).append(i)
    for idx in by_len.values():
        x = torch.tensor([tok.encode(prompts[i]) for i in idx])
        out[idx] = model(x).logits[:, -1].float().softmax(-1)
    return out


def ask(model, tok, world: World, people: list[Person], attr: str = "city", docs: list | None = None) -> dict:
    """Greedy answers, their probability and correctness for ``people`` (closed-book, or with ``docs``)."""
    qs = [question(p, attr) for p in people]
    prompts = [closed_prompt(q) if docs is None else open_prompt(d, q) for q, d in zip(qs, docs or qs)]
    probs = answer_dists(model, tok, prompts)
    conf, top = probs.max(-1)
    answers = [tok.symbols[i] for i in top.tolist()]
    truth = [answer_of(p, attr) for p in people]
    valid = {answer_of(p, attr) for p in world.people}
    return {"answers": answers, "confidence": conf.numpy(), "truth": truth,
            "correct": np.array([a == t for a, t in zip(answers, truth)]),
            "specific": np.array([a in valid for a in answers]),         # a city/job/year, not "unknown"
            "abstained": np.array([a == UNKNOWN for a in answers]), "probs": probs}


def group_report(model, tok, world: World, attr: str = "city") -> dict[str, dict]:
    return {g: ask(model, tok, world, world.groups[g], attr) for g in ("once", "five", "abstain", "heldout")}


def eval_metrics(model, tok, world: World) -> dict[str, float]:
    """Numbers for the live plot: accuracy on seen-once / seen-five people, specific answers for the unknown."""
    r = group_report(model, tok, world, "city")
    return {"acc_once": float(r["once"]["correct"].mean()), "acc_five": float(r["five"]["correct"].mean()),
            "specific_unknown": float(r["heldout"]["specific"].mean()),
            "abstain_unknown": float(r["heldout"]["abstained"].mean())}


def train_world_model(recipe: Recipe = Recipe(), abstain: bool = False, model: GPT | None = None,
                      steps: int | None = None, callback=None, time_limit: float | None = None,
                      progress: bool = True, train_seed: int | None = None):
    """Train (or, given ``model``, fine-tune) the world model with ``train.train``; (model, tok, world, history)."""
    world = make_world(recipe.n_people, recipe.n_readers, recipe.seed)
    tok = make_tokenizer(world)
    model = model if model is not None else new_model(tok, recipe)
    ex = training_examples(world, abstain=abstain)
    cfg = TrainConfig(steps=steps or recipe.steps, batch_size=recipe.batch_size, lr=recipe.lr, min_lr=recipe.lr / 10,
                      warmup_steps=min(100, (steps or recipe.steps) // 10),
                      eval_interval=max(10, min(100, (steps or recipe.steps) // 8)),
                      seed=recipe.seed if train_seed is None else train_seed,
                      time_limit=time_limit)
    hist = train(model, None, None, cfg, callback=callback, progress=progress,
                 batch_fn=batch_sampler(ex, tok, recipe.batch_size, recipe.open_share),
                 eval_fn=lambda m: eval_metrics(m, tok, world), desc="abstain" if abstain else "world model")
    return model, tok, world, hist


def save_world_model(model: GPT, tok: WordTokenizer, recipe: Recipe, history: list[dict], out, command: str) -> None:
    model.save(out, tokenizer={"type": "word", "words": tok.words}, recipe=asdict(recipe), history=history,
               command=command)


def load_world_model(folder=CHECKPOINT) -> tuple[GPT, WordTokenizer, World, dict]:
    """The shipped world model, its tokenizer, its world (re-made from the recipe's seed) and its config."""
    model, meta = GPT.load(folder)
    recipe = Recipe(**meta["recipe"])
    world = make_world(recipe.n_people, recipe.n_readers, recipe.seed)
    tok = WordTokenizer(meta["tokenizer"]["words"])
    if tok.words != make_tokenizer(world).words:
        raise ValueError("the checkpoint's vocabulary does not match the world of its recipe")
    return model, tok, world, meta


def main(argv: list[str] | None = None) -> None:
    import shlex
    import sys

    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.hallucination",
                                description="Train the world model of notebook 11 and save it.")
    p.add_argument("--out", default=str(CHECKPOINT))
    p.add_argument("--steps", type=int, default=Recipe.steps)
    p.add_argument("--seed", type=int, default=Recipe.seed)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    recipe = Recipe(steps=args.steps, seed=args.seed)
    t0 = time.perf_counter()
    model, tok, world, hist = train_world_model(recipe)
    command = "python -m course_utils.lessons.hallucination " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    save_world_model(model, tok, recipe, hist, args.out, command)
    print(f"trained in {time.perf_counter() - t0:.0f} s; last record {hist[-1]}; saved to {args.out}")

