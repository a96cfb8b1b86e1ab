"""Companion of notebooks/09_instruction_tuning.ipynb: turn the Shakespeare model into an assistant.

Instruction data built from the course corpus (four tasks, held-out lines), a chat template with
three special tokens added to the character vocabulary, supervised fine-tuning (full and LoRA)
through ``course_utils.train.train``, the measurements (exact match per task, stopping at the end
token, Shakespeare loss), the side-by-side widget and the exercise checkers. The SmolLM2 part
lives in ``instruction_tuning_hf``, the biographies experiment in ``instruction_tuning_bios``.

    python -m course_utils.lessons.instruction_tuning --seeds 0 1 --ranks 1 4 16 --out course_utils/data/instruction_tuning_sweep.json
"""
from __future__ import annotations

import argparse
import copy
import html
import json
import random
import re
import shlex
import sys
import time
from dataclasses import dataclass

import torch

from .. import assets, finetune, plots, train
from ..checkpoints import load_checkpoint
from ..lm import GREEDY, wrap
from ..model import GPT
from ..tokenizers import CharTokenizer

USER, ASSISTANT, END = "<|user|>", "<|assistant|>", "<|end|>"
SPECIALS = (USER, ASSISTANT, END)
TASKS = {"repeat": "Repeat: {line}", "first word": "First word: {line}", "last word": "Last word: {line}",
         "speaker": "Who says: {line}"}
WORD = re.compile(r"[A-Za-z']+")


@dataclass(frozen=True)
class Example:
    task: str
    instruction: str
    answer: str


def render(instruction: str, answer: str | None = None) -> str:
    """The course chat template: ``<|user|>instruction<|assistant|>answer<|end|>`` (no answer: the prompt)."""
    return USER + instruction + ASSISTANT + ("" if answer is None else answer + END)


def corpus_lines(split: str = "train", min_len: int = 20, max_len: int = 48) -> list[tuple[str, str]]:
    """(speaker, line) for every spoken line of the small corpus with ``min_len``..``max_len`` characters."""
    out, speaker = [], None
    for raw in assets.shakespeare("small", split).split("\n"):
        line = raw.strip()
        if re.fullmatch(r"[A-Z][A-Z ']+:", line):
            speaker = line[:-1]
        elif not line:
            speaker = None
        elif speaker and min_len <= len(line) <= max_len and len(WORD.findall(line)) >= 3:
            out.append((speaker, line))
    return out


def make_examples(split: str, n_per_task: int, seed: int = 0) -> list[Example]:
    """``n_per_task`` examples of each task from distinct lines of a corpus split (train or val)."""
    lines = corpus_lines(split)
    rng = random.Random(seed)
    picked = rng.sample(lines, min(len(lines), n_per_task * len(TASKS)))
    out = []
    for i, (speaker, line) in enumerate(picked):
        task = list(TASKS)[i % len(TASKS)]
        words = WORD.findall(line)
        answer = {"repeat": line, "first word": words[0], "last word": words[-1], "speaker": speaker}[task]
        out.append(Example(task, TASKS[task].format(line=line), answer))
    return out


def chat_model(name: str = "shakespeare-char") -> tuple[GPT, CharTokenizer]:
    """The shipped model with the template's three special tokens added as new embedding rows, and
    without dropout (so a fine-tuning run depends on its seed only: ``finetune.without_dropout``)."""
    model, tok, _ = load_checkpoint(name)
    finetune.without_dropout(model)
    new_ids = tok.add_special_tokens(SPECIALS)
    assert finetune.grow_embeddings(model, len(SPECIALS)) == new_ids
    return model.eval(), tok


def encode_pair(tok: CharTokenizer, ex: Example) -> tuple[list[int], list[int]]:
    return tok.encode(render(ex.instruction)), tok.encode(ex.answer + END)


# ------------------------------------------------------------------ measures
def per_task(ok, tasks: list[str]) -> dict[str, float]:
    """``{task: share of True}`` for one bool per example and the examples' task names (in first-seen order)."""
    groups: dict[str, list[bool]] = {}
    for o, t in zip(ok, tasks):
        groups.setdefault(t, []).append(bool(o))
    return {t: sum(v) / len(v) for t, v in groups.items()}


def exact_match(model: GPT, tok: CharTokenizer, examples: list[Example]) -> dict[str, float]:
    """Share of examples the model answers exactly (then ``<|end|>``) under greedy decoding, per task
    (``finetune.greedy_matches``: one teacher-forced pass, no generation loop)."""
    ok = finetune.greedy_matches(model, [encode_pair(tok, e) for e in examples], pad_id=tok.stoi[END])
    em = per_task(ok, [e.task for e in examples])
    return {t: em[t] for t in TASKS if t in em}


def answer(model: GPT, tok: CharTokenizer, instruction: str, max_new_tokens: int = 60) -> str:
    """The model's greedy reply to an instruction in the template, cut after ``<|end|>``."""
    text = wrap(model, tok).generate(render(instruction), max_new_tokens, GREEDY).texts[0]
    return text.split(END)[0] + END if END in text else text


def behaviour(model: GPT, tok: CharTokenizer, examples: list[Example], max_new_tokens: int = 60) -> dict:
    """Rates over generated replies: ``stops`` (writes ``<|end|>``), ``in_template`` (stops and writes
    no other special token before it)."""
    replies = [answer(model, tok, e.instruction, max_new_tokens) for e in examples]
    stops = [END in r for r in replies]
    clean = [s and not any(t in r for t in (USER, ASSISTANT)) for s, r in zip(stops, replies)]
    return {"stops": sum(stops) / len(replies), "in_template": sum(clean) / len(replies), "replies": replies}


def shakespeare_loss(model: GPT, tok: CharTokenizer, chars: int = 16_000) -> float:
    """Cross-entropy (nats per character) on the first ``chars`` characters of the validation split."""
    data = torch.tensor(tok.encode(assets.shakespeare("small", "val")[:chars]))
    return train.full_loss(model, data)


def continuation(model: GPT, tok: CharTokenizer, prompt: str, max_new_tokens: int = 120) -> str:
    return wrap(model, tok).generate(prompt, max_new_tokens, GREEDY).texts[0]


def sample_after_user_marker(model: GPT, tok: CharTokenizer, n: int = 8, seed: int = 0,
                             max_new_tokens: int = 40) -> list[str]:
    """What the model writes when given only ``<|user|>`` (temperature 0.8, ``n`` samples)."""
    from ..lm import Knobs
    return wrap(model, tok).generate(USER, max_new_tokens, Knobs(temperature=0.8), seed=seed, n=n).texts


def writes_instruction(text: str) -> bool:
    """Does a sample start like one of the training instructions ("Repeat: ...")?"""
    return any(text.startswith(t.split("{")[0]) for t in TASKS.values())


# ------------------------------------------------------------------ training
def sft(model: GPT, tok: CharTokenizer, train_examples: list[Example], eval_examples: list[Example],
        steps: int = 50, lr: float = 1e-3, batch_size: int = 16, mask_prompt: bool = True,
        lora_rank: int | None = None, seed: int = 0, callback=None, progress: bool = True) -> dict:
    """Fine-tune a copy of ``model`` on prompt -> response pairs; returns the model and its history.

    ``lora_rank``: LoRA adapters of that rank (alpha = 2 * rank) on every linear layer of the blocks,
    everything else frozen, merged into the weights after training; None: full fine-tuning."""
    model = copy.deepcopy(model)
    if lora_rank is not None:
        finetune.add_lora(model, lora_rank, alpha=2 * lora_rank, seed=seed)
    trainable = model.num_parameters(trainable_only=True)
    optimizer_bytes = finetune.adam_state_bytes(model)
    pairs = [encode_pair(tok, e) for e in train_examples]
    pad = tok.stoi[END]

    def batch_fn(g: torch.Generator):
        idx = torch.randint(len(pairs), (batch_size,), generator=g).tolist()
        return finetune.sft_batch([pairs[i] for i in idx], pad, mask_prompt, model.config.block_size)

    def eval_fn(m: GPT) -> dict:
        em = exact_match(m, tok, eval_examples)
        return {"exact_match": sum(em.values()) / len(em)}

    cfg = train.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=5,
                            weight_decay=0.0, eval_interval=max(1, steps // 5), seed=seed)
    t0 = time.perf_counter()
    history = train.train(model, None, None, cfg, batch_fn=batch_fn, eval_fn=eval_fn, callback=callback,
                          progress=progress, desc="LoRA" if lora_rank else "full fine-tuning")
    seconds = time.perf_counter() - t0
    if lora_rank is not None:
        finetune.merge_lora(model)
    return {"model": model.eval(), "history": history, "trainable": trainable, "optimizer_bytes": optimizer_bytes,
            "seconds": seconds, "stopped": train.stopped_early(history)}


def live_plot(title: str) -> plots.LivePlot:
    return plots.LivePlot({"train_loss": "training loss (response tokens)", "exact_match": "held-out exact match"},
                          title=title, y_title="loss (nats) / share correct")


def evaluate(model: GPT, tok: CharTokenizer, test: list[Example], behave: list[Example]) -> dict:
    em = exact_match(model, tok, test)
    b = behaviour(model, tok, behave)
    return {"exact_match": em, "mean_exact_match": sum(em.values()) / len(em), "stops": b["stops"],
            "in_template": b["in_template"], "shakespeare_loss": shakespeare_loss(model, tok)}


# ------------------------------------------------------------------ widgets
def compare_widget(models: dict[str, GPT], tok: CharTokenizer, value: str = "First word: Now is the winter"):
    """A box for an instruction and each model's greedy reply, side by side."""
    import ipywidgets as widgets

    box = widgets.Text(value=value, description="instruction:", continuous_update=False,
                       layout=widgets.Layout(width="640px"))
    out = widgets.HTML()

    def show(_=None):
        text = box.value
        if not text.strip():
            out.value = plots.error_html("type an instruction (at least one character)")
            return
        try:
            tok.encode(text)
        except ValueError as err:
            out.value = plots.error_html(err)
            return
        rows = "".join(f"<tr><td><b>{html.escape(name)}</b></td><td style='font-family:monospace'>"
                       f"{html.escape(answer(m, tok, text))}</td></tr>" for name, m in models.items())
        out.value = f"<table class='model-answers'><tr><th>model</th><th>reply</th></tr>{rows}</table>"

    box.observe(show, "value")
    show()
    return widgets.VBox([box, out])


def results_table(results: dict[str, dict]) -> str:
    """HTML table of :func:`evaluate` results, one column per model."""
    keys = [(f"exact match: {t}", lambda r, t=t: f"{r['exact_match'][t]:.0%}") for t in TASKS]
    keys += [("stops at <|end|>", lambda r: f"{r['stops']:.0%}"), ("reply in the template", lambda r: f"{r['in_template']:.0%}"),
             ("Shakespeare loss (nats/char)", lambda r: f"{r['shakespeare_loss']:.3f}")]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in results)
    rows = "".join(f"<tr><td>{html.escape(k)}</td>" + "".join(f"<td>{f(r)}</td>" for r in results.values()) + "</tr>"
                   for k, f in keys)
    return f"<table><tr><th></th>{head}</tr>{rows}</table>"


# ------------------------------------------------------------------ exercises
def check_sft_targets(fn) -> None:
    """The student's ``fn(prompt_ids, response_ids) -> (inputs, targets)`` against ``finetune.sft_targets``."""
    for prompt, response in (([5, 6, 7], [8, 9]), ([1], [2, 3, 4]), ([4, 4, 4, 4], [4])):
        got = fn(list(prompt), list(response))
        assert isinstance(got, tuple) and len(got) == 2, "return a pair (inputs, targets)"
        want = finetune.sft_targets(prompt, response)
        x, y = (torch.as_tensor(t).tolist() for t in got)
        assert x == want[0].tolist(), f"inputs for prompt {prompt} + response {response}: want {want[0].tolist()}, got {x}"
        assert y == want[1].tolist(), f"targets for prompt {prompt} + response {response}: want {want[1].tolist()}, got {y}"


def check_lora_count(fn, model: GPT) -> None:
    """The student's ``fn(model, rank) -> int`` against the count of a real adapted copy."""
    for rank in (1, 4, 16):
        want = finetune.add_lora(copy.deepcopy(model), rank).num_parameters(trainable_only=True)
        got = fn(model, rank)
        assert got == want, f"rank {rank}: LoRA trains {want:,} parameters, you counted {got!r}"


def check_render(fn) -> None:
    """The student's ``fn(messages) -> str`` renders a multi-turn conversation in the course template."""
    convs = [[("user", "Repeat: Good night"), ("assistant", "Good night")],
             [("user", "First word: Ay me"), ("assistant", "Ay"), ("user", "Last word: Ay me")]]
    for conv in convs:
        want = "".join(USER + t if role == "user" else ASSISTANT + t + END for role, t in conv)
        if conv[-1][0] == "user":
            want += ASSISTANT
        got = fn(conv)
        assert got == want, f"for {conv} want {want!r}, got {got!r}"


# ------------------------------------------------------------------ shipped sweep
def sweep(seeds=(0, 1), steps: int = 50, ranks=(1, 4, 16), n_train: int = 400, n_test: int = 40,
          save=None) -> list[dict]:
    """Full fine-tuning (response-only and whole-sequence loss) and LoRA at ``ranks``, per seed;
    ``save(runs)`` is called after every run (a long sweep leaves usable partial results)."""
    base, tok = chat_model()
    runs = []
    for seed in seeds:
        tr, te = make_examples("train", n_train, seed), make_examples("val", n_test, seed + 100)
        behave = te[::4]
        setups = [("full, response-only loss", dict(mask_prompt=True)),
                  ("full, whole-sequence loss", dict(mask_prompt=False))]
        setups += [(f"LoRA r={r}", dict(lora_rank=r, lr=5e-3)) for r in ranks]
        for name, kw in setups:
            res = sft(base, tok, tr, te, steps=steps, seed=seed, progress=False, **{"lr": 1e-3, **kw})
            samples = sample_after_user_marker(res["model"], tok, seed=seed)
            runs.append({"seed": seed, "setup": name, "trainable": res["trainable"],
                         "optimizer_bytes": res["optimizer_bytes"], "seconds": res["seconds"],
                         **{k: v for k, v in evaluate(res["model"], tok, te, behave).items()},
                         "user_marker_samples": samples,
                         "writes_instruction": sum(map(writes_instruction, samples)) / len(samples)})
            print(runs[-1], flush=True)
            if save is not None:
                save(runs)
    return runs


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.instruction_tuning")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16])
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python -m course_utils.lessons.instruction_tuning " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))

    base, tok = chat_model()
    head = {"command": command, "base_shakespeare_loss": shakespeare_loss(base, tok),
            "source": "Biderman et al. 2024, LoRA Learns Less and Forgets Less, arXiv 2405.09673"}

    def save(runs):
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({**head, "runs": runs}, f, indent=1, ensure_ascii=False)
    return {**head, "runs": sweep(tuple(args.seeds), args.steps, tuple(args.ranks), save=save)}


if __name__ == "__main__":
    main()


# ------------------------------------------------------------------ shipped results
def load_results(name: str) -> dict:
    """A results file shipped with the course: ``"sweep"`` (masking and LoRA ranks) or ``"bios"``."""
    import pathlib
    path = pathlib.Path(__file__).resolve().parents[1] / "data" / f"instruction_tuning_{name}.json"
    return json.loads(path.read_text(encoding="utf-8"))


def mean_by(runs: list[dict], key: str, metrics: list[str]) -> dict[str, dict[str, float]]:
    """``{metric: {group: mean over seeds}}`` for runs grouped by ``key``."""
    groups: dict[str, list[dict]] = {}
    for r in runs:
        groups.setdefault(r[key], []).append(r)
    return {m: {g: sum(r[m] for r in rs) / len(rs) for g, rs in groups.items()} for m in metrics}


def lora_setups(sweep_result: dict) -> list[str]:
    """The sweep's LoRA setups by rank, then full fine-tuning (response-only loss, the same recipe)."""
    names = {r["setup"] for r in sweep_result["runs"] if r["setup"].startswith("LoRA")}
    return sorted(names, key=lambda n: int(n.split("=")[1])) + ["full, response-only loss"]


def lora_summary(sweep_result: dict) -> dict[str, dict]:
    """Per setup (LoRA ranks, then full): trainable parameters, optimizer bytes, and over seeds the
    exact match per task, its mean, and the alignment tax (Shakespeare loss minus the base model's)."""
    base = sweep_result["base_shakespeare_loss"]
    out = {}
    for name in lora_setups(sweep_result):
        rs = [r for r in sweep_result["runs"] if r["setup"] == name]
        out[name] = {"seeds": [r["seed"] for r in rs], "trainable": rs[0]["trainable"],
                     "optimizer_bytes": rs[0]["optimizer_bytes"],
                     "exact_match": {t: [r["exact_match"][t] for r in rs] for t in TASKS},
                     "mean_exact_match": [r["mean_exact_match"] for r in rs],
                     "tax": [r["shakespeare_loss"] - base for r in rs]}
    return out


def lora_figure(sweep_result: dict):
    """Two panels against the setup (LoRA by rank, then full): exact match per task and the
    alignment tax, each bar the mean over seeds with every seed as a dot."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    summary = lora_summary(sweep_result)
    labels = [n if n.startswith("LoRA") else "full" for n in summary]
    mean = lambda v: sum(v) / len(v)
    fig = make_subplots(rows=1, cols=2, subplot_titles=["exact match per task (held-out lines)",
                                                        "alignment tax: Shakespeare loss lost (nats/char)"])
    for i, t in enumerate(TASKS):
        fig.add_trace(go.Bar(x=labels, y=[mean(s["exact_match"][t]) for s in summary.values()], name=t,
                             marker_color=plots.PALETTE[i % len(plots.PALETTE)]), 1, 1)
    fig.add_trace(go.Bar(x=labels, y=[mean(s["tax"]) for s in summary.values()], name="tax (mean)",
                         marker_color="#888888"), 1, 2)
    fig.add_trace(go.Scatter(x=[l for l, s in zip(labels, summary.values()) for _ in s["tax"]],
                             y=[v for s in summary.values() for v in s["tax"]], mode="markers",
                             name="tax (each seed)", marker={"color": "black", "size": 8}), 1, 2)
    n_seeds = len({r["seed"] for r in sweep_result["runs"]})
    fig.update_layout(title=f"LoRA rank vs full fine-tuning (shipped sweep, mean of {n_seeds} seeds)",
                      barmode="group", height=420, margin={"l": 60, "r": 20, "t": 80, "b": 60})
    fig.update_yaxes(range=[0, 1.05], title_text="share exact", row=1, col=1)
    return fig
