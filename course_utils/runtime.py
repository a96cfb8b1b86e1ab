"""Process-level setup every notebook runs first: threads, seeds, device, offline assets."""
from __future__ import annotations

import os
import contextlib
import random
import warnings

import numpy as np
import torch


def default_threads() -> int:
    """Threads for torch on this machine.

    On a 2-core laptop two threads run *slower* than one as soon as anything else
    (the browser, the Jupyter server, a second notebook) wants a core, so small
    machines get one thread. Bigger machines keep one core free for everything else.
    ``COURSE_THREADS`` or ``OMP_NUM_THREADS`` override the choice.
    """
    for var in ("COURSE_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                raise ValueError(f"{var}={value!r} is not a whole number of threads (use 1 or more)") from None
            if n < 1:
                raise ValueError(f"{var}={n} must be at least 1")
            return n
    cores = os.cpu_count() or 1
    return 1 if cores <= 2 else min(8, cores - 1)


def set_threads(n: int | None = None) -> int:
    """Set torch's intra-op thread count deliberately and return it."""
    n = default_threads() if n is None else n
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"threads must be a whole number >= 1, got {n!r}")
    torch.set_num_threads(n)
    return n


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch; return a torch.Generator seeded the same way."""
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextlib.contextmanager
def seeded(seed: int):
    """``with seeded(seed): model = GPT(cfg)``: torch's global generator is seeded inside the block
    and restored afterwards, so library code can build seeded weights without touching the caller's
    random stream (``torch.random.fork_rng`` plus ``torch.manual_seed``)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        yield


def get_device(prefer: str | None = None) -> torch.device:
    """The compute device: CPU by default, CUDA when present, Apple MPS only on request.

    ``prefer`` may be "cpu", "cuda" or "mps". MPS is never picked automatically because
    some ops are still missing or numerically different there; asking for it warns.
    """
    if prefer not in (None, "cpu", "cuda", "mps"):
        raise ValueError(f"device must be one of None, 'cpu', 'cuda', 'mps'; got {prefer!r}")
    if prefer == "cpu":
        return torch.device("cpu")
    if prefer == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise RuntimeError("device='mps' was requested but Apple MPS is not available on this machine")
        warnings.warn("Using Apple MPS: results may differ slightly from the CPU numbers in the notebooks.")
        return torch.device("mps")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if prefer == "cuda":
        raise RuntimeError("device='cuda' was requested but no CUDA GPU is available; use 'cpu'")
    return torch.device("cpu")


def setup(seed: int = 0, threads: int | None = None, quiet: bool = False) -> dict:
    """Run once at the top of every notebook.

    Sets torch's thread count, seeds every RNG, makes tiktoken work offline, and
    returns a small dict describing the set-up (printed unless ``quiet``).
    """
    from . import assets

    n = set_threads(threads)
    seed_everything(seed)
    cache = assets.install_tiktoken_cache()
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    info = {"torch": torch.__version__, "threads": n, "seed": seed,
            "device": str(get_device()), "tiktoken_cache": cache}
    if not quiet:
        print(f"torch {info['torch']} | {n} thread(s) | seed {seed} | device {info['device']}")
    return info
