"""How fast does the course trainer reach a given validation loss on a CPU?

    python benchmarks/train_speed.py --data ../shared/data/tinyshakespeare.txt --target-val-loss 1.886

Trains the course's recommended CPU recipe (``course_utils.train.CPU_RECIPE``) on a character-level
split of FILE (first 90% train, last 10% validation, as nanoGPT's ``prepare.py`` does), then measures
the loss over the *whole* validation split. If the target is not reached yet, it keeps training at
the final learning rate in chunks of 10% of the recipe, measuring after each chunk, until the target
or the time cap. The last line printed is one JSON object with ``wall_seconds`` (the whole process
after the interpreter started: imports, data, training, every evaluation), ``tokens_per_second``
(training tokens / training seconds), ``val_loss`` and ``reached``.

Reference: karpathy/nanoGPT's README CPU command (4 layers, 128 channels, context 64, batch 12,
2000 iterations) reaches validation loss 1.8857 (its 20-batch estimate; 1.898 over the whole split)
in about 145 s on an idle 2-core machine. Compare only on an idle machine, one run after the other:
with two threads, PyTorch slows down many times over as soon as another process wants a core.
This is a benchmark, not a test: nothing here asserts a time.
"""
import time

START = time.perf_counter()   # before the heavy imports, so wall_seconds includes them

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import sys  # noqa: E402

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))   # run from a checkout, no install needed

import torch  # noqa: E402

from course_utils.model import GPT  # noqa: E402
from course_utils.runtime import seed_everything  # noqa: E402
from course_utils.tokenizers import CharTokenizer  # noqa: E402
from course_utils.train import cpu_recipe, full_loss, train  # noqa: E402


def split_text(text: str) -> tuple[str, str]:
    """First 90% for training, last 10% for validation (by character position)."""
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def run(data: str, target: float, time_cap: float = 300.0, threads: int | None = None, seed: int = 0,
        steps: int | None = None, progress: bool = True) -> dict:
    if not target > 0:
        raise ValueError(f"--target-val-loss must be > 0, got {target}")
    if not time_cap > 0:
        raise ValueError(f"--time-cap must be > 0 seconds, got {time_cap}")
    threads = threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    seed_everything(seed)
    with open(data, encoding="utf-8") as f:
        text = f.read()
    tokenizer = CharTokenizer.from_text(text)
    train_text, val_text = split_text(text)
    train_data = torch.tensor(tokenizer.encode(train_text), dtype=torch.long)
    val_data = torch.tensor(tokenizer.encode(val_text), dtype=torch.long)
    overrides = {"seed": seed, "eval_batches": 1}
    if steps is not None:
        overrides["steps"] = steps
    model_cfg, cfg = cpu_recipe(tokenizer.vocab_size, **overrides)
    # train()'s own evaluations are only the first and last step on one batch: the decision uses the whole split
    cfg.eval_interval = cfg.steps
    model = GPT(model_cfg)
    print(f"recipe: {model.num_parameters():,} parameters, {model_cfg.n_layer} layers x {model_cfg.n_embd} "
          f"channels, context {model_cfg.block_size}, batch {cfg.batch_size}, {cfg.steps} steps, lr {cfg.lr:g} "
          f"-> {cfg.min_lr:g} | {threads} thread(s) | {len(train_data):,} train / {len(val_data):,} val tokens",
          file=sys.stderr, flush=True)

    tokens, train_seconds, rounds = 0, 0.0, []
    block = model_cfg.block_size
    while True:
        cfg.time_limit = max(1e-3, time_cap - (time.perf_counter() - START))
        t0 = time.perf_counter()
        history = train(model, train_data, val_data, cfg, progress=progress)
        train_seconds += time.perf_counter() - t0
        tokens += history[-1]["tokens"]
        val = full_loss(model, val_data, batch_size=256)
        elapsed = time.perf_counter() - START
        rounds.append({"steps": history[-1]["step"], "val_loss": round(val, 4), "at_seconds": round(elapsed, 2)})
        print(f"after {sum(r['steps'] for r in rounds)} steps ({elapsed:.1f} s): validation loss over the whole "
              f"split {val:.4f} (target {target})", file=sys.stderr, flush=True)
        if val <= target or elapsed >= time_cap:
            break
        # not there yet: another 10% of the recipe at the final learning rate (short warm-up for the new optimizer)
        cfg.steps, cfg.lr, cfg.warmup_steps, cfg.eval_interval = max(1, cfg.steps // 10), cfg.min_lr, 10, 10**9
        cfg.seed += 1
    wall = time.perf_counter() - START
    return {"wall_seconds": round(wall, 2), "tokens_per_second": round(tokens / train_seconds),
            "val_loss": round(val, 4), "reached": bool(val <= target), "target_val_loss": target,
            "train_seconds": round(train_seconds, 2), "tokens": tokens, "rounds": rounds, "threads": threads,
            "parameters": model.num_parameters(), "block_size": block, "torch": torch.__version__}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="UTF-8 text file (e.g. ../shared/data/tinyshakespeare.txt)")
    p.add_argument("--target-val-loss", type=float, required=True, help="stop once the whole-split val loss is <= this")
    p.add_argument("--time-cap", type=float, default=300.0, help="give up after this many seconds (default 300)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: every core; run it on an idle machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--steps", type=int, default=None, help="override the recipe's number of steps (for quick checks)")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    result = run(args.data, args.target_val_loss, args.time_cap, args.threads, args.seed, args.steps,
                 progress=not args.no_progress)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
