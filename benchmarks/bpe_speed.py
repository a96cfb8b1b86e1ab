"""How fast does the course's BPE trainer learn a vocabulary, and how well does it compress?

    python benchmarks/bpe_speed.py                          # Shakespeare (small, train split), vocab 512
    python benchmarks/bpe_speed.py --text my.txt --vocab-size 1024
    python benchmarks/bpe_speed.py --minbpe /path/to/minbpe   # side by side with karpathy/minbpe

With ``--minbpe`` (a checkout of https://github.com/karpathy/minbpe, never copied into this
repository) the script also trains minbpe's ``RegexTokenizer`` with the same regex on the same
text and vocabulary size, and prints both times and both compressions.

Times are CPU seconds of this process (``time.process_time``): on a busy machine that is closer
to what an idle laptop would take than wall-clock time. Run it with ``OMP_NUM_THREADS=1``.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from course_utils.tokenizers import GPT4_PATTERN, BPETokenizer  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--text", help="a UTF-8 text file (default: the course's Shakespeare, small train split)")
    ap.add_argument("--vocab-size", type=int, default=512)
    ap.add_argument("--minbpe", help="path to a karpathy/minbpe checkout, to train its RegexTokenizer side by side")
    ap.add_argument("--repeat", type=int, default=3, help="time the course trainer this many times, report the best")
    args = ap.parse_args(argv)

    if args.text:
        text = pathlib.Path(args.text).read_text(encoding="utf-8")
        source = args.text
    else:
        from course_utils.assets import shakespeare
        text = shakespeare("small", "train")
        source = "Shakespeare (small, train split)"
    n_bytes = len(text.encode("utf-8"))
    print(f"text: {source}: {len(text):,} characters, {n_bytes:,} UTF-8 bytes; vocab_size {args.vocab_size}")

    best = float("inf")
    for _ in range(max(1, args.repeat)):
        t0 = time.process_time()
        tok = BPETokenizer.train(text, args.vocab_size)
        best = min(best, time.process_time() - t0)
    t0 = time.process_time()
    ids = tok.encode(text)
    t_enc = time.process_time() - t0
    assert tok.decode(ids) == text, "round trip failed"
    print(f"course BPETokenizer.train : {best:8.3f} s CPU (best of {args.repeat}), "
          f"{len(ids):,} tokens = {n_bytes / len(ids):.3f} bytes/token; encode {t_enc:.3f} s")

    if args.minbpe:
        sys.path.insert(0, str(pathlib.Path(args.minbpe).resolve()))
        from minbpe import RegexTokenizer

        ref = RegexTokenizer(pattern=GPT4_PATTERN)
        t0 = time.process_time()
        ref.train(text, args.vocab_size)
        t_ref = time.process_time() - t0
        ref_ids = ref.encode_ordinary(text)
        assert ref.decode(ref_ids) == text, "minbpe round trip failed"
        same = sum(1 for m in ref.merges if ref.vocab[ref.merges[m]] in tok.ranks)
        print(f"minbpe RegexTokenizer.train: {t_ref:8.3f} s CPU, "
              f"{len(ref_ids):,} tokens = {n_bytes / len(ref_ids):.3f} bytes/token")
        print(f"speed-up {t_ref / best:.1f}x; {same}/{len(ref.merges)} of minbpe's merged tokens are also "
              f"in the course vocabulary; token counts differ by {len(ids) - len(ref_ids):+,}")


if __name__ == "__main__":
    main()
