"""Notebook 09, experiment 5: instruction tuning extracts knowledge only if pre-training stored it well.

After Allen-Zhu & Li, "Physics of Language Models: Part 3.1" (arXiv 2309.14316): pre-train a small
word-level GPT on biographies of invented people (``course_utils.world.make_people``), then fine-tune
it on question -> answer pairs about HALF of the people, and ask the same questions about the other
half, whose facts it only read in biographies. Two pre-training recipes:

* ``varied``: five biographies per person, each with a random phrasing of every sentence and the
  sentences in a random order (the paper's "multi5 + permute" augmentation);
* ``single``: one biography per person, one phrasing, one sentence order.

The name appears in the first sentence only; later sentences say "they" (as the paper's bioS).

    python -m course_utils.lessons.instruction_tuning_bios --seeds 0 1 2 --out course_utils/data/instruction_tuning_bios.json
"""
from __future__ import annotations

import argparse
import json
import random
import shlex
import sys
import time

import torch

from .. import finetune, train
from ..model import GPT, GPTConfig
from ..runtime import seeded
from ..tokenizers import WordTokenizer
from ..world import Person, make_people

PHRASES = {   # {S}: the subject (the full name in the first sentence, else "they")
    "birth_year": ("{S} was born in {V} .", "{S} came into the world in {V} .", "{S} had a birthday first in {V} ."),
    "city": ("{S} lived in {V} .", "{S} made a home in {V} .", "{S} spent most days in {V} ."),
    "job": ("{S} worked as a {V} .", "{S} earned a living as a {V} .", "{S} was known as a {V} ."),
}
QUESTIONS = {"birth_year": "Q : when was {N} born ? A :", "city": "Q : where did {N} live ? A :",
             "job": "Q : what was the job of {N} ? A :"}
END = "|"
RECIPES = ("varied", "single")


def biography(person: Person, rng: random.Random | None) -> str:
    """One biography; with ``rng`` the phrasing and the order of the sentences are random."""
    attrs = list(PHRASES)
    if rng is not None:
        rng.shuffle(attrs)
    values = person.attributes()
    out = []
    for i, a in enumerate(attrs):
        phrase = PHRASES[a][rng.randrange(3)] if rng is not None else PHRASES[a][0]
        out.append(phrase.format(S=person.full_name if i == 0 else "they", V=values[a]))
    return " ".join(out)


def corpus(people: list[Person], recipe: str, seed: int, copies: int = 5) -> list[str]:
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe!r}")
    rng = random.Random(seed)
    if recipe == "single":
        return [biography(p, None) for p in people]
    return [biography(p, rng) for p in people for _ in range(copies)]


def qa_pairs(people: list[Person]) -> list[tuple[str, str]]:
    return [(QUESTIONS[a].format(N=p.full_name), v) for p in people for a, v in p.attributes().items()]


def make_tokenizer(people: list[Person]) -> WordTokenizer:
    words = {w for p in people for b in [biography(p, random.Random(0))] for w in b.split()}
    words |= {w for ph in PHRASES.values() for t in ph for w in t.split()} | {"they", END}
    words |= {w for q, a in qa_pairs(people) for w in (q + " " + a).split()}
    return WordTokenizer(w for w in words if w not in ("{S}", "{V}"))


def accuracy(model: GPT, tok: WordTokenizer, pairs: list[tuple[str, str]]) -> float:
    """Share of prompts whose greedy next word is the answer (answers are one word), by the same
    teacher-forced check as notebook 09's exact match (``finetune.greedy_matches``)."""
    ok = finetune.greedy_matches(model, [(tok.encode(q), [tok.stoi[a]]) for q, a in pairs], pad_id=tok.stoi[END])
    return ok.float().mean().item()


def run(seed: int = 0, recipe: str = "varied", n_people: int = 100, pretrain_steps: int = 1200,
        finetune_steps: int = 300, callback=None, progress: bool = True) -> dict:
    """Pre-train on biographies, fine-tune on QA about half the people; accuracies on both halves."""
    t0 = time.process_time()
    people = make_people(n_people, seed)
    tok = make_tokenizer(people)
    text = corpus(people, recipe, seed)
    rng = random.Random(seed)
    stream = []
    for _ in range(max(1, 60 // (5 if recipe == "varied" else 1))):      # same number of tokens per recipe
        order = text[:]
        rng.shuffle(order)
        stream += [w for b in order for w in (b + " " + END).split()]
    data = torch.tensor(tok.encode(stream))
    cfg = GPTConfig(vocab_size=tok.vocab_size, block_size=64, n_layer=3, n_head=4, n_embd=128)
    with seeded(seed):       # the initial weights depend on the seed only; the global generator is untouched
        model = GPT(cfg)
    half = n_people // 2
    trained, held = people[:half], people[half:]
    bio_probe = [(biography(p, None).split(" .")[0].rsplit(" ", 1)[0], str(p.birth_year)) for p in people]
    pre = train.TrainConfig(steps=pretrain_steps, batch_size=32, lr=3e-3, min_lr=3e-4, warmup_steps=50,
                            eval_interval=max(1, pretrain_steps // 6), eval_batches=4, seed=seed)
    h1 = train.train(model, data, None, pre, callback=callback, progress=progress, desc=f"pre-train ({recipe})",
                     eval_fn=lambda m: {"bio_recall": accuracy(m, tok, bio_probe)})
    qa_train, qa_test = qa_pairs(trained), qa_pairs(held)
    enc = [(tok.encode(q), tok.encode([a, END])) for q, a in qa_train]

    def batch_fn(gen):
        idx = torch.randint(len(enc), (32,), generator=gen).tolist()
        return finetune.sft_batch([enc[i] for i in idx], pad_id=tok.stoi[END])

    ft = train.TrainConfig(steps=finetune_steps, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=20,
                           eval_interval=max(1, finetune_steps // 5), seed=seed)
    shifted = None if callback is None else (lambda r: callback({**r, "step": pretrain_steps + r["step"]}))
    h2 = train.train(model, None, None, ft, batch_fn=batch_fn, callback=shifted, progress=progress,
                     desc=f"QA fine-tune ({recipe})",
                     eval_fn=lambda m: {"qa_trained_half": accuracy(m, tok, qa_train),
                                        "qa_held_out_half": accuracy(m, tok, qa_test)})
    chance = max(sum(a == v for _, v in qa_test) for a in {v for _, v in qa_test}) / len(qa_test)
    return {"seed": seed, "recipe": recipe, "n_people": n_people, "parameters": model.num_parameters(),
            "bio_recall": h1[-1]["bio_recall"], "qa_trained_half": h2[-1]["qa_trained_half"],
            "qa_held_out_half": h2[-1]["qa_held_out_half"], "most_common_answer_rate": chance,
            "stopped": train.stopped_early(h1) or train.stopped_early(h2),
            "cpu_seconds": time.process_time() - t0}


def live_plot(title: str):
    """The live run's curves: pre-training loss and biography recall, then (steps after the
    pre-training's) the fine-tuning loss and QA accuracy on both halves."""
    from ..plots import LivePlot
    return LivePlot({"train_loss": "training loss", "bio_recall": "biography recall (birth year)",
                     "qa_trained_half": "QA: fine-tuned half", "qa_held_out_half": "QA: held-out half"},
                    title=title, y_title="loss (nats) / accuracy")


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.instruction_tuning_bios")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--n-people", type=int, default=100)
    p.add_argument("--pretrain-steps", type=int, default=1200)
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python -m course_utils.lessons.instruction_tuning_bios " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    result = {"command": command, "runs": [],
              "source": "Allen-Zhu & Li 2023, Physics of Language Models 3.1, arXiv 2309.14316"}
    for s in args.seeds:
        for r in RECIPES:
            result["runs"].append(run(s, r, args.n_people, args.pretrain_steps, args.finetune_steps, progress=False))
            print(result["runs"][-1], flush=True)
            with open(args.out, "w", encoding="utf-8") as f:      # after every run: partial results stay usable
                json.dump(result, f, indent=1)
    return result


if __name__ == "__main__":
    main()
