"""Notebook 01's companion, part 2: SmolLM2's measured accuracy on n-digit additions, with the numbers
written plainly (``12345``) and with thousands separators chunked from the right (``12,345``).

Imported through :mod:`course_utils.lessons.tokenization` (one alias, ``lab``).

The measurement is the core's :func:`course_utils.arithmetic.addition_accuracy` (greedy, chat template,
batched with left padding, exact match on the first number of the reply) for n = 1..6 digits, 50
problems per n, both ways of writing the numbers. That takes a few minutes on a CPU, too slow for the
notebook, so :func:`main` runs it once and writes ``course_utils/data/tokenization_addition.json``
(the exact command, seed, model and date are recorded inside)::

    nice python -m course_utils.lessons.tokenization_addition --threads 1

The notebook loads the file (:func:`load_addition_results`), plots it (:func:`addition_figure`) and re-runs the
first batch of one setting live (:func:`addition_live_check`), which must give the recorded replies.
"""
from __future__ import annotations

import json
import pathlib
from typing import Sequence

import plotly.graph_objects as go

from .. import arithmetic as ar
from .. import plots

RESULTS_PATH = pathlib.Path(__file__).resolve().parent.parent / "data" / "tokenization_addition.json"
DIGITS = (1, 2, 3, 4, 5, 6)
N_PROBLEMS = 50
SEED = 0
BATCH_SIZE = 16          # arithmetic.chat_answers' batch size: the live check re-runs whole batches
LABELS = {False: "plain (12345)", True: "separators (12,345)"}


def measure(lm, digits: Sequence[int] = DIGITS, n_problems: int = N_PROBLEMS, seed: int = SEED,
            verbose: bool = False) -> list[dict]:
    """One record per (separators, n): its accuracy and every problem with the model's reply."""
    runs = []
    for separators in (False, True):
        for n in digits:
            acc, details = ar.addition_accuracy(lm, n, n_problems=n_problems, seed=seed,
                                                separators=separators, return_details=True)
            runs.append({"n_digits": n, "separators": separators, "accuracy": acc,
                         "problems": [{k: d[k] for k in ("a", "b", "reply", "parsed", "correct")}
                                      for d in details]})
            if verbose:
                print(f"{LABELS[separators]:20s} {n} digits: {acc:.0%}", flush=True)
    return runs


def load_addition_results(path: str | pathlib.Path = RESULTS_PATH) -> dict:
    """The shipped measurement (see :func:`main`)."""
    return json.loads(pathlib.Path(path).read_text(encoding="utf-8"))


def addition_run(results: dict, n_digits: int, separators: bool) -> dict:
    for run in results["runs"]:
        if run["n_digits"] == n_digits and run["separators"] == separators:
            return run
    have = sorted({r["n_digits"] for r in results["runs"]})
    raise ValueError(f"no recorded run for n_digits={n_digits!r}, separators={separators!r}; "
                     f"recorded n_digits: {have}")


def addition_table(results: dict) -> dict[bool, dict[int, float]]:
    """``{separators: {n_digits: accuracy}}`` from the recorded runs."""
    out: dict[bool, dict[int, float]] = {False: {}, True: {}}
    for run in results["runs"]:
        out[run["separators"]][run["n_digits"]] = run["accuracy"]
    return out


def digit_accuracy(run: dict) -> float:
    """The share of answer digits a run's replies get right, position by position from the units
    (:func:`arithmetic.wrong_digits`; extra or missing digits count as wrong, a reply without a number as all wrong)."""
    total = 0.0
    for p in run["problems"]:
        answer = p["a"] + p["b"]
        if p["parsed"] is not None:
            total += 1 - len(ar.wrong_digits(p["parsed"], answer)) / max(len(str(p["parsed"])), len(str(answer)))
    return total / len(run["problems"])


def addition_digit_table(results: dict) -> dict[bool, dict[int, float]]:
    """``{separators: {n_digits: digit accuracy}}`` from the recorded replies."""
    out: dict[bool, dict[int, float]] = {False: {}, True: {}}
    for run in results["runs"]:
        out[run["separators"]][run["n_digits"]] = digit_accuracy(run)
    return out


def addition_figure(results: dict, title: str = "SmolLM2-135M-Instruct adding two n-digit numbers") -> go.Figure:
    """Exact match (solid) and the share of digits right (dotted) against the number of digits, one colour per
    way of writing the numbers."""
    fig = go.Figure()
    curves = (("exact match", addition_table(results), "solid"), ("digits right", addition_digit_table(results), "dot"))
    for what, table, dash in curves:
        for i, (separators, accs) in enumerate(table.items()):
            n = sorted(accs)
            name = f"{what}, {LABELS[separators]}"
            fig.add_trace(go.Scatter(x=n, y=[100 * accs[k] for k in n], mode="lines+markers", name=name,
                                     line=dict(color=plots.PALETTE[i], dash=dash),
                                     hovertemplate="%{x} digits: %{y:.0f}%<extra>" + name + "</extra>"))
    fig.update_layout(title=title, xaxis=dict(title="digits per number (n)", dtick=1),
                      yaxis=dict(title=f"% ({results['n_problems']} problems per n)", range=[-3, 103]),
                      height=400, margin=dict(t=50, b=40))
    return fig


def addition_live_check(lm, results: dict, n_digits: int = 3, separators: bool = True, batches: int = 1) -> dict:
    """Re-run the first ``batches`` batches of one recorded setting and compare with the records.

    Whole batches of the recorded run (same problems, same left padding) are re-run, so greedy
    decoding must give the recorded replies token for token.
    """
    if isinstance(batches, bool) or not isinstance(batches, int) or batches < 1:
        raise ValueError(f"batches must be an integer >= 1, got {batches!r}")
    run = addition_run(results, n_digits, separators)
    k = min(batches * BATCH_SIZE, len(run["problems"]))
    acc, details = ar.addition_accuracy(lm, n_digits, n_problems=k, seed=results["seed"],
                                        separators=separators, return_details=True)
    recorded = run["problems"][:k]
    same = [(d["a"], d["b"], d["reply"]) == (r["a"], r["b"], r["reply"]) for d, r in zip(details, recorded)]
    return {"n_problems": k, "agree": sum(same), "live_accuracy": acc,
            "recorded_accuracy": sum(r["correct"] for r in recorded) / k,
            "example": details[0], "mismatches": [(d, r) for d, r, s in zip(details, recorded, same) if not s]}


def main(argv: list[str] | None = None) -> dict:
    """Measure SmolLM2 on n-digit additions with and without separators and write the JSON."""
    import argparse
    import datetime
    import shlex
    import sys

    import torch
    import transformers

    from ..assets import SMOLLM2_GGUF, SMOLLM2_SHA256, load_smollm2
    from ..lm import HFModel

    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.tokenization_addition", description=main.__doc__)
    p.add_argument("--out", default=str(RESULTS_PATH))
    p.add_argument("--digits", nargs="+", type=int, default=list(DIGITS))
    p.add_argument("--n-problems", type=int, default=N_PROBLEMS)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = HFModel(*load_smollm2(verbose=False))
    runs = measure(lm, args.digits, args.n_problems, args.seed, verbose=True)
    argv = sys.argv[1:] if argv is None else argv
    out = {"command": "python -m course_utils.lessons.tokenization_addition " + " ".join(shlex.quote(a) for a in argv),
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d"),
           "model": f"SmolLM2-135M-Instruct ({SMOLLM2_GGUF}, sha256 {SMOLLM2_SHA256[:12]}..., "
                    "dequantized to float32 by course_utils.assets.load_smollm2)",
           "seed": args.seed, "n_problems": args.n_problems, "batch_size": BATCH_SIZE, "threads": args.threads,
           "torch": torch.__version__, "transformers": transformers.__version__,
           "system": ar.SYSTEM, "question": ar.QUESTION, "answer_prefix": ar.ANSWER_PREFIX,
           "decoding": "greedy, left-padded batches, exact match on the first number of the reply (commas removed)",
           "runs": runs}
    pathlib.Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.out).write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
