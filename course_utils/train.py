"""Training loop for the course GPT, and a command line that trains on any UTF-8 text.

    python -m course_utils.train --corpus small --steps 2000 --out my-model
    python -m course_utils.train --data notes.txt --steps 500 --out notes-model
"""
from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from dataclasses import asdict, dataclass
from typing import Callable, Sequence

import torch

from .model import GPT, GPTConfig
from .runtime import get_device, seed_everything, set_threads
from .tokenizers import CharTokenizer


@dataclass
class TrainConfig:
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 100
    weight_decay: float = 0.1
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_batches: int = 20
    seed: int = 0
    keep_best: bool = False      # restore the weights with the best validation loss at the end
    time_limit: float | None = None   # stop (after a last evaluation) once this many seconds have passed

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.eval_interval < 1 or self.eval_batches < 1:
            raise ValueError("steps, batch_size, eval_interval and eval_batches must all be >= 1")
        if not (self.lr > 0 and 0 <= self.min_lr <= self.lr):
            raise ValueError(f"need lr > 0 and 0 <= min_lr <= lr, got lr={self.lr}, min_lr={self.min_lr}")
        if self.warmup_steps < 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise ValueError("warmup_steps, grad_clip and weight_decay must be >= 0")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit must be None or a number of seconds > 0, got {self.time_limit!r}")


# The recommended recipe for a 2-core CPU (see benchmarks/train_speed.py). A small, shallow model
# with a short context and a small batch makes many cheap updates: on Tiny Shakespeare it reaches
# nanoGPT's CPU "baby GPT" validation loss with fewer tokens and much less compute per token.
CPU_RECIPE = {"model": dict(n_layer=2, n_head=4, n_embd=96, block_size=32, dropout=0.0),
              "train": dict(steps=2000, batch_size=16, lr=6e-3, min_lr=6e-4, warmup_steps=100)}


def cpu_recipe(vocab_size: int, **overrides) -> tuple[GPTConfig, TrainConfig]:
    """(model config, training config) of the recommended CPU recipe; ``overrides`` may name any
    field of either (e.g. ``steps=1200``, ``seed=1``)."""
    model_kw, train_kw = dict(CPU_RECIPE["model"]), dict(CPU_RECIPE["train"])
    for key, value in overrides.items():
        if key in GPTConfig.__dataclass_fields__ and key != "vocab_size":
            model_kw[key] = value
        elif key in TrainConfig.__dataclass_fields__:
            train_kw[key] = value
        else:
            raise ValueError(f"unknown recipe setting {key!r}; use a field of GPTConfig or TrainConfig")
    return GPTConfig(vocab_size=vocab_size, **model_kw), TrainConfig(**train_kw)


def _recipe_default(field_name: str):
    """What the command line uses when a setting is not given: the CPU recipe, else the dataclass default."""
    for part, cls in (("model", GPTConfig), ("train", TrainConfig)):
        if field_name in CPU_RECIPE[part]:
            return CPU_RECIPE[part][field_name]
        if field_name in cls.__dataclass_fields__:
            return cls.__dataclass_fields__[field_name].default
    raise KeyError(field_name)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``min_lr`` at the last step."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * progress))


def get_batch(data: torch.Tensor, block_size: int, batch_size: int,
              generator: torch.Generator | None = None, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows of ``block_size`` tokens and the same windows shifted by one."""
    if len(data) <= block_size:
        raise ValueError(f"data has {len(data)} tokens; need more than block_size={block_size}")
    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    offsets = torch.arange(block_size)
    x = data[starts[:, None] + offsets]
    y = data[starts[:, None] + offsets + 1]
    return x.to(device), y.to(device)


def fixed_batches(data: torch.Tensor, block_size: int, batch_size: int, n: int, seed: int = 1234):
    """``n`` batches drawn once, so every evaluation compares like with like."""
    g = torch.Generator().manual_seed(seed)
    return [get_batch(data, block_size, batch_size, g) for _ in range(n)]


@torch.no_grad()
def estimate_loss(model: GPT, batches) -> float:
    """Mean loss over fixed batches (model put in eval mode, then restored)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total = sum(model(x.to(device), y.to(device)).loss.item() for x, y in batches)
    model.train(was_training)
    return total / len(batches)


def full_loss(model: GPT, data: torch.Tensor, batch_size: int = 32, max_tokens: int | None = None) -> float:
    """Loss over a whole split: consecutive non-overlapping windows of ``block_size``, every target
    counted once (:func:`course_utils.lm.sequence_loss`, the one loss-over-a-text of the course)."""
    from .lm import sequence_loss

    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    data = data[: max_tokens + 1] if max_tokens else data
    try:
        return sequence_loss(lambda x: model(x).logits, data, model.config.block_size, batch_size, device)
    finally:
        model.train(was_training)


def make_optimizer(model: GPT, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (not on biases and LayerNorm gains)."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    kwargs = dict(lr=cfg.lr, betas=(0.9, cfg.beta2))
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)   # one fused kernel per step
    except (RuntimeError, TypeError):
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def lm_loss(model: GPT, batch) -> torch.Tensor:
    """The default objective: next-token cross-entropy of a batch ``(inputs, targets)`` (ignore index -1)."""
    x, y = batch
    return model(x, y).loss


def train_step(model: GPT, opt: torch.optim.Optimizer, batch, grad_clip: float = 0.0,
               loss_fn: Callable = lm_loss) -> float:
    """One optimisation step on one batch (forward, backward, optional clipping, update); the loss.

    ``loss_fn(model, batch)`` returns the scalar loss; by default ``batch`` is ``(inputs, targets)``.
    """
    loss = loss_fn(model, batch)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], grad_clip)
    opt.step()
    return loss.item()


def train(model: GPT, train_data: torch.Tensor | None, val_data: torch.Tensor | None, cfg: TrainConfig,
          callback: Callable[[dict], bool | None] | None = None, progress: bool = True,
          device: str | torch.device | None = None, batch_fn: Callable[[torch.Generator], object] | None = None,
          loss_fn: Callable = lm_loss, eval_fn: Callable[[GPT], dict] | None = None,
          desc: str = "training") -> list[dict]:
    """Train ``model``; return the evaluation history. Every experiment of the course trains through here.

    By default batches are random windows of the token tensor ``train_data`` and every
    ``eval_interval`` steps (and at the first and last step) the loss on fixed batches of
    ``train_data`` and ``val_data`` is recorded. Three hooks let a lesson train anything else:

    * ``batch_fn(generator) -> batch``: draw a training batch (e.g. prompt/response pairs);
    * ``loss_fn(model, batch) -> loss``: the objective (default: next-token cross-entropy);
    * ``eval_fn(model) -> dict``: extra numbers for each record (e.g. an accuracy). With
      ``train_data``/``val_data`` left as None, ``train_loss`` is the mean training loss since the
      previous record and there is no ``val_loss`` unless ``eval_fn`` returns one.

    ``callback(record)`` is called after each evaluation (a ``LivePlot.update``); returning True
    stops training. Interrupting the kernel (or passing ``cfg.time_limit`` seconds) also stops
    cleanly: the model keeps what it learned so far, the last record gets ``"stopped": True``.
    """
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    block = model.config.block_size
    g = torch.Generator().manual_seed(cfg.seed)
    if batch_fn is None:
        if train_data is None:
            raise ValueError("give train_data (a token tensor) or a batch_fn that draws batches")
        batch_fn = lambda gen: get_batch(train_data, block, cfg.batch_size, gen, device)  # noqa: E731
    fixed = {name: fixed_batches(data, block, cfg.batch_size, cfg.eval_batches, seed=cfg.seed + k)
             for k, (name, data) in enumerate((("train_loss", train_data), ("val_loss", val_data)), 1)
             if data is not None}
    opt = make_optimizer(model, cfg)
    history: list[dict] = []
    recent: list[float] = []
    best = (float("inf"), None)
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=True)

    def evaluate(step: int) -> bool:
        nonlocal best
        record = {"step": step}
        for name, batches in fixed.items():
            record[name] = estimate_loss(model, batches)
        if "train_loss" not in record and recent:
            record["train_loss"] = sum(recent) / len(recent)
        recent.clear()
        if eval_fn is not None:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                record.update(eval_fn(model))
            model.train(was_training)
        record.update(lr=lr_at(min(step, cfg.steps - 1), cfg), seconds=time.perf_counter() - start,
                      tokens=step * cfg.batch_size * block)
        history.append(record)
        bar.set_postfix({k: f"{record[k]:.3f}" for k in ("train_loss", "val_loss") if k in record})
        if cfg.keep_best and record.get("val_loss", float("inf")) < best[0]:
            best = (record["val_loss"], copy.deepcopy(model.state_dict()))
        return bool(callback and callback(record))

    try:
        stop = evaluate(0)
        for step in bar:
            if stop:
                break
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
            recent.append(train_step(model, opt, batch_fn(g), cfg.grad_clip, loss_fn))
            done = step + 1
            out_of_time = cfg.time_limit is not None and time.perf_counter() - start > cfg.time_limit
            if done % cfg.eval_interval == 0 or done == cfg.steps or out_of_time:
                stop = evaluate(done) or out_of_time
                if stop and done < cfg.steps:
                    history[-1]["stopped"] = True
    except KeyboardInterrupt:
        print(f"\nInterrupted after {len(history)} evaluations: the model keeps what it has learned so far.")
        if history:
            history[-1]["stopped"] = True
    finally:
        bar.close()
        model.eval()
    if cfg.keep_best and best[1] is not None:
        model.load_state_dict(best[1])
    return history


def stopped_early(history: Sequence[dict]) -> bool:
    """True when a run was interrupted or hit its time limit (skip a claim's assert, report instead)."""
    return bool(history) and bool(history[-1].get("stopped"))


def encode_text(text: str, tokenizer: CharTokenizer) -> torch.Tensor:
    return torch.tensor(tokenizer.encode(text), dtype=torch.long)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m course_utils.train",
                                description="Train a character-level GPT on a UTF-8 text file.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="UTF-8 text file: first 90%% train, last 10%% validation")
    src.add_argument("--corpus", choices=["small", "full"], help="the course's Shakespeare corpus")
    p.add_argument("--out", required=True, help="folder for model.safetensors + config.json")
    # Every model and training setting defaults to the benchmarked CPU recipe (CPU_RECIPE, then TrainConfig).
    for f in ("n_layer", "n_head", "n_embd", "block_size"):
        p.add_argument("--" + f.replace("_", "-"), type=int, default=None, help=f"default: {_recipe_default(f)}")
    p.add_argument("--dropout", type=float, default=None, help=f"default: {_recipe_default('dropout')}")
    p.add_argument("--pos-encoding", choices=["learned", "sinusoidal"], default=None, help="default: learned")
    for f in ("steps", "batch_size", "warmup_steps", "eval_interval", "eval_batches", "seed"):
        p.add_argument("--" + f.replace("_", "-"), type=int, default=None, help=f"default: {_recipe_default(f)}")
    for f in ("lr", "min_lr", "weight_decay", "beta2", "grad_clip"):
        p.add_argument("--" + f.replace("_", "-"), type=float, default=None, help=f"default: {_recipe_default(f)}")
    p.add_argument("--keep-best", action="store_true", help="save the weights with the best val loss")
    p.add_argument("--time-limit", type=float, default=None, help="stop after this many seconds of training")
    p.add_argument("--device", choices=["cpu", "cuda", "mps"], default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)

    set_threads(args.threads)
    seed_everything(args.seed if args.seed is not None else TrainConfig.seed)
    device = get_device(args.device)
    if args.corpus:
        from . import assets
        train_text, val_text = assets.shakespeare(args.corpus, "train"), assets.shakespeare(args.corpus, "val")
        tokenizer = CharTokenizer(assets.corpus_alphabet())
    else:
        with open(args.data, encoding="utf-8") as f:
            text = f.read()
        cut = int(len(text) * 0.9)
        train_text, val_text = text[:cut], text[cut:]
        tokenizer = CharTokenizer.from_text(text)
    train_data, val_data = encode_text(train_text, tokenizer), encode_text(val_text, tokenizer)
    given = {f: getattr(args, f) for f in (*GPTConfig.__dataclass_fields__, *TrainConfig.__dataclass_fields__)
             if f != "vocab_size" and getattr(args, f, None) is not None}
    model_cfg, cfg = cpu_recipe(tokenizer.vocab_size, **given)
    model = GPT(model_cfg).to(device)
    print(f"{model.num_parameters():,} parameters | {len(train_data):,} train / {len(val_data):,} val tokens "
          f"| device {device}", flush=True)
    t0 = time.perf_counter()
    history = train(model, train_data, val_data, cfg, progress=not args.no_progress, device=device)
    seconds = time.perf_counter() - t0
    val = full_loss(model, val_data)
    command = "python -m course_utils.train " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    model.to("cpu").save(args.out, tokenizer=tokenizer.to_dict(), train=asdict(cfg), history=history,
                         val_loss_full=val, data=args.data or f"course corpus: {args.corpus}",
                         train_seconds=seconds, command=command)
    print(f"done in {seconds:.0f} s | validation loss over the whole split {val:.4f} | saved to {args.out}")
    return {"val_loss": val, "seconds": seconds}


if __name__ == "__main__":
    main()
