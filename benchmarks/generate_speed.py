"""How fast does SmolLM2-135M write 100 tokens? Hugging Face ``generate`` in fp32 vs the course's paths.

    python benchmarks/generate_speed.py [--tokens 100] [--threads 1]

Side by side, in one run, on one fixed prompt (greedy): Hugging Face ``generate`` in fp32 (the
baseline, today's path), the course's lean loop (``course_utils.decode``) in fp32, bf16 and int8,
and greedy speculative decoding with the int8 copy as draft and the fp32 model as checker (its text
is the fp32 text by construction). For each: seconds, tokens/s, whether the text equals the fp32
baseline's, and the bytes-per-token bound (weight bytes / measured memory bandwidth). Lower-precision
paths also print their loss difference on a fixed passage. The course path is the fastest one whose
text equals the baseline's or whose loss difference is at most ``--max-loss`` nats/token (default
0.05, a perplexity about 5 % higher: plain int8 is fastest but loses 0.11 nats/token, int8-mixed 0.048,
bf16 0.009, measured on this machine; the numbers are deterministic, only the times vary);
the last line is a JSON summary ``{"baseline_s", "course_s", "course_path", "loss_diff", "tokens",
"same_text"}``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

PROMPT = "The history of the printing press begins"


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int, default=100)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--gamma", type=int, default=4)
    p.add_argument("--max-loss", type=float, default=0.05,
                   help="largest loss difference (nats/token) a lower-precision course path may have")
    args = p.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    from course_utils import decode
    from course_utils.assets import load_smollm2

    model, tok = load_smollm2(verbose=False)
    ids = tok.encode(PROMPT)
    passage = tok.encode(decode.PASSAGE)
    bandwidth = decode.memory_bandwidth()
    n = args.tokens
    print(f"SmolLM2-135M, {n} greedy tokens after {PROMPT!r}, {args.threads} thread(s); "
          f"measured read bandwidth {bandwidth / 1e9:.1f} GB/s")

    with torch.inference_mode():
        t = time.perf_counter()
        out = model.generate(torch.tensor([ids]), max_new_tokens=n, min_new_tokens=n, do_sample=False,
                             pad_token_id=tok.eos_token_id)
        baseline_s = time.perf_counter() - t
    base = out[0, len(ids):].tolist()
    base_loss = decode.text_loss(model, passage)
    rows = [("HF generate fp32 (baseline)", baseline_s, True, decode.weight_bytes(model), 0.0)]
    copies = {fmt: decode.with_weights(model, fmt) for fmt in decode.FORMATS}
    for fmt, m in copies.items():
        toks, st = decode.greedy(m, ids, n)
        rows.append((f"course lean loop {fmt}", st["seconds"], toks == base, decode.weight_bytes(m),
                     decode.text_loss(m, passage) - base_loss))
    toks, st = decode.speculative_greedy(model, copies["int8"], ids, n, gamma=args.gamma)
    rows.append((f"speculative: int8 drafts {args.gamma}, fp32 checks", st["seconds"], toks == base,
                 decode.weight_bytes(model), 0.0))
    spec_accept = st["accepted"] / max(1, st["drafted"])

    print(f"{'path':42s} {'seconds':>8s} {'tok/s':>7s} {'same text':>9s} {'MB/token':>9s} "
          f"{'bound s':>8s} {'loss diff':>9s}")
    for name, s, same, nbytes, dloss in rows:
        print(f"{name:42s} {s:8.2f} {n / s:7.1f} {str(same):>9s} {nbytes / 1e6:9.0f} "
              f"{n * nbytes / bandwidth:8.2f} {dloss:+9.4f}")
    print(f"speculative acceptance rate {spec_accept:.2f}; loss diff = loss on a fixed {len(passage)}-token "
          f"passage minus fp32's (nats/token); 'bound s' = {n} x bytes per token / bandwidth")
    eligible = [r for r in rows[1:] if r[2] or r[4] <= args.max_loss]
    name, course_s, same, _, dloss = min(eligible, key=lambda r: r[1])
    print(f"course path: {name} ({baseline_s / course_s:.2f}x faster than the baseline"
          + ("" if same else f", text differs from fp32, loss {dloss:+.4f} nats/token") + ")"
          + f"; eligible: same text or loss diff <= {args.max_loss} nats/token")
    summary = {"baseline_s": round(baseline_s, 3), "course_s": round(course_s, 3), "course_path": name,
               "loss_diff": round(dloss, 4), "tokens": n, "same_text": bool(same)}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
