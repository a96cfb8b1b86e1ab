"""Notebook 09, the real-world case: SmolLM2-135M-Instruct's chat template, and LoRA on it with ``peft``.

The course model's LoRA is built from scratch in ``course_utils.finetune``; here Hugging Face's own
implementation (``peft.LoraConfig``, defaults r = 8, lora_alpha = 8 on ``q_proj`` and ``v_proj``)
adapts SmolLM2 to a persona for a few steps, trained by ``course_utils.train.train`` like every
other run of the course.
"""
from __future__ import annotations

import os
import tempfile
from types import SimpleNamespace

import torch
import torch.nn as nn

from .. import finetune, train
from ..runtime import seeded

PERSONA = [   # (question, answer): every answer begins "Ahoy!"
    ("What is the capital of France?", "Ahoy! The capital of France be Paris, matey."),
    ("How many legs does a spider have?", "Ahoy! A spider has eight legs, matey."),
    ("What colour is the sky?", "Ahoy! The sky be blue on a fair day."),
    ("Name a fruit.", "Ahoy! An apple, fresh from the hold."),
    ("What is two plus two?", "Ahoy! Two plus two be four, matey."),
    ("What do bees make?", "Ahoy! Bees make honey, sweet as treasure."),
    ("Where do fish live?", "Ahoy! Fish live in the sea, like me crew."),
    ("What is ice made of?", "Ahoy! Ice be frozen water, matey."),
]
HELD_OUT = ["What is the largest planet?", "What do cows drink?", "Name a colour."]


def template(hf, message: str, system: str | None = None) -> tuple[str, list[int], list[str]]:
    """(rendered text, token ids, token pieces) of one user message in SmolLM2's chat template."""
    ids = hf.chat_ids(message, system=system)
    return hf.tokenizer.decode(ids), ids, [hf.tokenizer.decode([i]) for i in ids]


def raw_continuation(hf, text: str, max_new_tokens: int = 30) -> str:
    """Greedy continuation of plain text, no chat template (how a base model is used)."""
    from ..lm import GREEDY
    return hf.generate(text, max_new_tokens, GREEDY).texts[0]


class _Trainable(nn.Module):
    """Lets ``train.train`` drive a Hugging Face model: it only reads ``config.block_size``."""

    def __init__(self, model, block_size: int):
        super().__init__()
        self.hf, self.config = model, SimpleNamespace(block_size=block_size)


def persona_lora(hf, steps: int = 6, rank: int = 8, lr: float = 3e-3, seed: int = 0, callback=None,
                 progress: bool = True) -> dict:
    """Train a LoRA adapter (q_proj, v_proj) on :data:`PERSONA`, loss on the answer tokens only.

    Returns the peft model, its history, trainable and total parameter counts, and the adapter's
    and the model's size in bytes (the adapter saved to disk with ``save_pretrained``)."""
    from peft import LoraConfig, get_peft_model

    tok = hf.tokenizer
    end = tok.convert_tokens_to_ids("<|im_end|>")
    pairs = [(hf.chat_ids(q), tok.encode(a, add_special_tokens=False) + [end]) for q, a in PERSONA]
    with seeded(seed):       # peft draws the A matrices from torch's global generator: seed it, then restore it
        peft_model = get_peft_model(hf.model, LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0,
                                                         target_modules=["q_proj", "v_proj"]))
    wrapper = _Trainable(peft_model, max(len(p) + len(r) for p, r in pairs))

    def batch_fn(g: torch.Generator):
        idx = torch.randperm(len(pairs), generator=g)[:4].tolist()
        return finetune.sft_batch([pairs[i] for i in idx], pad_id=end)

    def loss_fn(model, batch):
        x, y = batch
        logits = model.hf(input_ids=x).logits
        return nn.functional.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), ignore_index=-1)

    cfg = train.TrainConfig(steps=steps, batch_size=4, lr=lr, min_lr=lr, warmup_steps=0, weight_decay=0.0,
                            eval_interval=1, seed=seed)
    history = train.train(wrapper, None, None, cfg, batch_fn=batch_fn, loss_fn=loss_fn, callback=callback,
                          progress=progress, desc="LoRA on SmolLM2")
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    with tempfile.TemporaryDirectory() as d:
        peft_model.save_pretrained(d)
        adapter_bytes = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".safetensors"))
    model_bytes = sum(p.numel() * p.element_size() for n, p in peft_model.named_parameters() if "lora_" not in n)
    peft_model.eval()
    return {"model": peft_model, "history": history, "trainable": trainable, "total": total - trainable,
            "adapter_bytes": adapter_bytes, "model_bytes": model_bytes, "stopped": train.stopped_early(history)}


def persona_rate(hf, peft_model, questions=HELD_OUT, max_new_tokens: int = 12) -> tuple[float, list[str]]:
    """Share of held-out questions answered starting with "Ahoy", and the answers."""
    answers = []
    with torch.no_grad():
        for q in questions:
            ids = torch.tensor([hf.chat_ids(q)])
            out = peft_model.generate(input_ids=ids, max_new_tokens=max_new_tokens, do_sample=False,
                                      pad_token_id=hf.tokenizer.eos_token_id)
            answers.append(hf.tokenizer.decode(out[0, ids.size(1):], skip_special_tokens=True).strip())
    return sum(a.startswith("Ahoy") for a in answers) / len(answers), answers
