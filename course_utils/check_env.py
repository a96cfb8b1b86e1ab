"""Environment check: is everything the course needs installed and available offline?

    python -m course_utils.check_env      (or: course-check)

Prints one OK/FAIL line per package, offline asset and the compute device; exits 1 if
anything failed. Notebook 00 shows the same table.
"""
from __future__ import annotations

import importlib
import sys
import time
from dataclasses import dataclass

PACKAGES = ("torch", "numpy", "tqdm", "ipywidgets", "plotly", "anywidget", "tiktoken", "safetensors",
            "transformers", "gguf", "accelerate", "jupyterlab")
# Known token ids of "Hello world, tokenization!" (checked against tiktoken itself by the tests).
KNOWN_IDS = {
    "gpt2": [15496, 995, 11, 11241, 1634, 0],
    "r50k_base": [15496, 995, 11, 11241, 1634, 0],
    "p50k_base": [15496, 995, 11, 11241, 1634, 0],
    "cl100k_base": [9906, 1917, 11, 4037, 2065, 0],
    "o200k_base": [13225, 2375, 11, 6602, 2860, 0],
}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


def _run(name: str, fn) -> Check:
    start = time.perf_counter()
    try:
        detail = fn()
        return Check(name, True, f"{detail} ({time.perf_counter() - start:.1f} s)")
    except Exception as exc:  # report, never crash: the point is to list every problem at once
        return Check(name, False, f"{type(exc).__name__}: {exc}")


def _package(name: str):
    from importlib.metadata import version

    importlib.import_module(name)
    return lambda: version(name)


def run_checks(smollm2: bool = True) -> list[Check]:
    from . import assets, checkpoints, runtime

    checks = []
    for name in PACKAGES:
        try:
            fn = _package(name)
        except Exception as exc:
            checks.append(Check(f"package {name}", False,
                                f"{type(exc).__name__}: {exc}. Fix it with: ./course.sh install"))
            continue
        checks.append(_run(f"package {name}", fn))

    def encoding(n):
        def fn():
            ids = assets.get_encoding(n).encode("Hello world, tokenization!")
            if ids != KNOWN_IDS[n]:
                raise assets.AssetError(f"tiktoken encoding {n}", f"unexpected token ids {ids}")
            return f"{assets.get_encoding(n).n_vocab:,} tokens"
        return fn
    for n in assets.ENCODINGS:
        checks.append(_run(f"tiktoken {n}", encoding(n)))

    def corpus():
        small, full = assets.shakespeare("small"), assets.shakespeare("full")
        return f"{len(small):,} / {len(full):,} characters (small / full)"
    checks.append(_run("Shakespeare corpus", corpus))

    for name in checkpoints.NAMES:
        def ckpt(name=name):
            model, tok, meta = checkpoints.load_checkpoint(name)
            return f"{model.num_parameters():,} parameters, stated val loss {meta['val_loss_full']:.3f}"
        checks.append(_run(f"checkpoint {name}", ckpt))

    if smollm2:
        def smol():
            model, tok = assets.load_smollm2()
            return f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f} M parameters, vocabulary {len(tok):,}"
        checks.append(_run("SmolLM2-135M-Instruct", smol))

    checks.append(_run("compute device", lambda: f"{runtime.get_device()} "
                                                 f"({runtime.default_threads()} torch thread(s) by default)"))
    return checks


def report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"{'OK  ' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks]
    failed = sum(not c.ok for c in checks)
    lines.append(f"{len(checks) - failed} OK, {failed} FAIL" + ("" if failed else ": ready for the course"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m course_utils.check_env", description=__doc__.splitlines()[0])
    p.add_argument("--skip-smollm2", action="store_true", help="do not load (and first convert) SmolLM2")
    args = p.parse_args(argv)
    checks = run_checks(smollm2=not args.skip_smollm2)
    print(report(checks))
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
