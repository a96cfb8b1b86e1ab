"""Notebook 04's companion, part 2: temperature 0 on a real model. The same greedy chat prompts
run on SmolLM2 alone, inside one left-padded batch, and in that batch with extra padding; we count
how many greedy answers differ. Imported through :mod:`course_utils.lessons.sampling`.

Left padding: every prompt is right-aligned, pad tokens in front get attention mask 0 and the
real tokens get positions 0, 1, 2, … (``position_ids = cumsum(mask) - 1``), so in exact arithmetic
the padded batch computes the same answer as the prompt alone. Only the floating-point reduction
order (the kernels chosen for each shape) can differ.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..lm import HFModel, hf_forward

# Short requests a chat model answers, of different token lengths (so the batch needs padding).
CHAT_QUESTIONS = (
    "What is the capital of France?", "Name three primary colours.", "Why is the sky blue?",
    "Give me a synonym for happy.", "How many legs does a spider have?", "Write a haiku about rain.",
    "What is 12 times 7?", "Who wrote Romeo and Juliet?", "Explain gravity in one sentence.",
    "What do bees make?", "Translate 'good morning' into French.", "What is the boiling point of water?",
    "Suggest a name for a pet cat.", "What is photosynthesis?", "List two planets.",
    "Tell me a fun fact about octopuses.",
)


@torch.inference_mode()
def greedy_padded(lm: HFModel, rows: list[list[int]], max_new_tokens: int, extra_pad: int = 0,
                  model=None) -> tuple[list[list[int]], torch.Tensor]:
    """Greedy continuations of a batch of token-id prompts of any lengths, left-padded with an
    attention mask (``extra_pad`` more pad tokens in front of every row). Returns (new ids per row,
    top-1 minus top-2 logit before each choice (B, steps)). ``model`` replaces ``lm.model`` (e.g. a
    bf16 copy of it)."""
    if not rows or any(not r for r in rows):
        raise ValueError("rows must be a non-empty list of non-empty token-id lists")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not isinstance(extra_pad, int) or extra_pad < 0:
        raise ValueError(f"extra_pad must be an integer >= 0, got {extra_pad!r}")
    model = lm.model if model is None else model
    tok = lm.tokenizer
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    width = max(len(r) for r in rows) + extra_pad
    ids = torch.tensor([[pad] * (width - len(r)) + list(r) for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    state, fed, new, margins = None, ids, [], []
    for _ in range(max_new_tokens):
        positions = (mask.cumsum(-1) - 1).clamp(min=0)[:, -fed.size(1):]
        out, state = hf_forward(model, fed, state, attention_mask=mask, position_ids=positions)
        logits = out.logits[:, -1].float()
        top2 = logits.topk(2, dim=-1).values
        margins.append(top2[:, 0] - top2[:, 1])
        fed = logits.argmax(-1, keepdim=True)
        new.append(fed)
        mask = torch.cat([mask, torch.ones(len(rows), 1, dtype=mask.dtype)], dim=1)
    return torch.cat(new, 1).tolist(), torch.stack(margins, 1)


@dataclass
class BatchInvariance:
    """Greedy answers to the same prompts in three settings, and where they fork."""
    dtype: str
    questions: list[str]
    alone: list[list[int]]        # each prompt in a batch of one, no padding
    batched: list[list[int]]      # all prompts in one left-padded batch
    padded: list[list[int]]       # the same batch with extra padding in front
    cpu_seconds: float = 0.0

    def differ(self, a: str, b: str) -> list[int]:
        """Indices of the prompts whose greedy answers differ between two settings."""
        x, y = getattr(self, a), getattr(self, b)
        return [i for i, (u, v) in enumerate(zip(x, y)) if u != v]

    def counts(self) -> dict[str, int]:
        return {"alone vs batched": len(self.differ("alone", "batched")),
                "alone vs padded batch": len(self.differ("alone", "padded")),
                "batched vs padded batch": len(self.differ("batched", "padded"))}

    def first_fork(self) -> tuple[int, int, str, str] | None:
        """(prompt index, first differing step, setting a, setting b) of the first fork found, or None."""
        for a, b in (("alone", "batched"), ("alone", "padded"), ("batched", "padded")):
            for i in self.differ(a, b):
                x, y = getattr(self, a)[i], getattr(self, b)[i]
                return i, next(s for s, (u, v) in enumerate(zip(x, y)) if u != v), a, b
        return None


def batch_invariance(lm: HFModel, questions=CHAT_QUESTIONS, max_new_tokens: int = 24, extra_pad: int = 8,
                     dtype: torch.dtype = torch.float32, progress: bool = True) -> BatchInvariance:
    """Run each chat question (SmolLM2's chat template) greedily alone, in one batch, and in that
    batch with ``extra_pad`` more pad tokens; ``dtype`` is float32 or bfloat16."""
    import time

    from tqdm.auto import tqdm

    if dtype not in (torch.float32, torch.bfloat16):
        raise ValueError(f"dtype must be torch.float32 or torch.bfloat16, got {dtype!r}")
    questions = list(questions)
    if len(questions) < 2:
        raise ValueError(f"need at least 2 questions to make a batch, got {len(questions)}")
    import copy

    rows = [lm.chat_ids(q) for q in questions]
    model = lm.model if dtype == torch.float32 else copy.deepcopy(lm.model).to(dtype)   # never cast in place
    t0 = time.process_time()
    alone = [greedy_padded(lm, [r], max_new_tokens, model=model)[0][0]
             for r in tqdm(rows, desc=f"alone ({str(dtype).split('.')[-1]})", disable=not progress, leave=False)]
    batched = greedy_padded(lm, rows, max_new_tokens, model=model)[0]
    padded = greedy_padded(lm, rows, max_new_tokens, extra_pad=extra_pad, model=model)[0]
    return BatchInvariance(str(dtype).split(".")[-1], questions, alone, batched, padded, time.process_time() - t0)
