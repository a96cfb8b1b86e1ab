"""One interface over every language model of the course: the course GPT and Hugging Face models.

:class:`LanguageModel` is what the notebooks talk to: ``encode``/``decode``, cached next-token
logits (sliders never re-run the model), seeded batched generation with a KV cache, the
log-probability of a continuation (to score answer options without generating), and a chat
template for instruction-tuned models. :class:`CourseGPT` wraps :class:`course_utils.model.GPT`,
:class:`HFModel` wraps a transformers causal LM such as SmolLM2; :func:`wrap` is the one place
that tells them apart.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from . import sampling
from .plots import show_token


# --------------------------------------------------------------------- knobs
@dataclass(frozen=True)
class Knobs:
    """One setting of the sampling knobs (None / 1.0 = that knob is off)."""
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0

    def __post_init__(self):
        sampling.check_knobs(self.temperature, self.top_k, self.top_p, self.min_p, self.repetition_penalty)

    def kwargs(self) -> dict:
        return dict(temperature=self.temperature, top_k=self.top_k, top_p=self.top_p, min_p=self.min_p,
                    repetition_penalty=self.repetition_penalty)

    def label(self) -> str:
        parts = ["greedy" if self.temperature == 0 else f"T={self.temperature:g}"]
        parts += [f"{k}={v:g}" for k, v in (("top-k", self.top_k), ("top-p", self.top_p), ("min-p", self.min_p))
                  if v is not None]
        if self.repetition_penalty != 1.0:
            parts.append(f"rep={self.repetition_penalty:g}")
        return ", ".join(parts)


GREEDY = Knobs(temperature=0.0)


@dataclass
class Generation:
    """Continuations of one batch of prompts, with what the model thought at every step."""
    prompt_ids: list[list[int]]
    new_ids: list[list[int]]
    texts: list[str]                     # decoded continuations (without the prompt)
    logprobs: torch.Tensor               # (n, steps): log p(chosen token) under the raw model (T=1, no filters)
    margins: torch.Tensor                # (n, steps): top-1 minus top-2 raw logit before each choice
    knobs: Knobs = field(default_factory=Knobs)

    @property
    def mean_logprob(self) -> torch.Tensor:
        return self.logprobs.mean(-1)


# ------------------------------------------------------------------ models
class LanguageModel:
    """What notebook 04 needs from a model. Subclasses implement encode/decode/_next."""

    name = "model"
    vocab_size = 0
    max_context: int | None = None

    def __init__(self):
        self._logit_cache: dict[tuple, torch.Tensor] = {}
        self._labels: dict[int, str] = {}

    def encode(self, text: str) -> list[int]:
        raise NotImplementedError

    def decode(self, ids) -> str:
        raise NotImplementedError

    def token_label(self, i: int) -> str:
        if i not in self._labels:
            self._labels[i] = show_token(self.decode([i]))
        return self._labels[i]

    def _next(self, state, ids: torch.Tensor):
        """(logits of the last position (B, V), new state) given all ids so far (B, T)."""
        raise NotImplementedError

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        """Raw logits at every position (B, T, V) of a batch of token ids (B, T), no cache."""
        raise NotImplementedError

    @torch.inference_mode()
    def continuation_logprobs(self, prompt: str | list[int], continuations: list[str] | list[list[int]]) -> list[float]:
        """Summed log-probability of each continuation after ``prompt``: sum_t log p(c_t | prompt, c_<t).

        Scores answer options without generating ("Paris" vs "Rome" after a question). Text is
        encoded as prompt + continuation together, so a continuation should start at a token
        boundary (for BPE models: with its leading space, e.g. " Paris").
        """
        p_ids = list(prompt) if isinstance(prompt, list) else self.prompt_ids(prompt)
        out = []
        for c in continuations:
            c_ids = list(c) if isinstance(c, list) else self.encode(c)
            if not c_ids:
                raise ValueError(f"continuation {c!r} is empty")
            ids = torch.tensor([p_ids + c_ids])
            if self.max_context is not None and ids.size(1) > self.max_context:
                raise ValueError(f"prompt + continuation is {ids.size(1)} tokens, longer than the "
                                 f"{self.max_context}-token context of {self.name}")
            logp = self.logits(ids)[0, len(p_ids) - 1:-1].float().log_softmax(-1)
            out.append(logp.gather(-1, torch.tensor(c_ids)[:, None]).sum().item())
        return out

    @torch.inference_mode()
    def prefix_next_logprobs(self, prefix: str | list[int], suffixes: list[str] | list[list[int]]) -> torch.Tensor:
        """log p(next token | prefix + suffix_i) for every suffix: a (len(suffixes), V) tensor.

        The tool for scoring single-token answer options after many questions that share one long
        prompt (few-shot demonstrations): subclasses with a KV cache run the prefix once. This
        reference version recomputes everything; a suffix may be empty (the prefix alone).
        """
        p_ids, rows = self._prefix_rows(prefix, suffixes)
        return torch.stack([self.logits(torch.tensor([p_ids + r]))[0, -1].float().log_softmax(-1) for r in rows])

    def _prefix_rows(self, prefix, suffixes) -> tuple[list[int], list[list[int]]]:
        p_ids = list(prefix) if isinstance(prefix, list) else self.prompt_ids(prefix)
        if not p_ids:
            raise ValueError("the prefix is empty: give at least one token")
        rows = [list(s) if isinstance(s, list) else (self.encode(s) if s else []) for s in suffixes]
        longest = len(p_ids) + max((len(r) for r in rows), default=0)
        if self.max_context is not None and longest > self.max_context:
            raise ValueError(f"prefix + suffix is {longest} tokens, longer than the "
                             f"{self.max_context}-token context of {self.name}")
        return p_ids, rows

    def prompt_ids(self, prompt: str) -> list[int]:
        if not isinstance(prompt, str):
            raise TypeError(f"the prompt must be a str, got {type(prompt).__name__}")
        ids = self.encode(prompt)
        if not ids:
            raise ValueError("the prompt is empty: type at least one character")
        return ids

    @torch.inference_mode()
    def next_logits(self, prompt: str) -> tuple[list[int], torch.Tensor]:
        """(prompt ids, raw next-token logits (V,)); cached per prompt, so sliders never re-run the model."""
        ids = self.prompt_ids(prompt)
        key = tuple(ids)
        if key not in self._logit_cache:
            if len(self._logit_cache) > 64:
                self._logit_cache.clear()
            logits, _ = self._next(None, torch.tensor([ids]))
            self._logit_cache[key] = logits[0].float()
        return ids, self._logit_cache[key]

    @torch.inference_mode()
    def generate(self, prompts: str | list[str], max_new_tokens: int, knobs: Knobs = Knobs(), seed: int = 0,
                 n: int = 1, nudge: dict[int, tuple[int, float]] | None = None, progress: bool = False) -> Generation:
        """Sample ``n`` continuations of ``prompts`` (one str, or a list of prompts with equal token counts).

        Uses a KV cache. ``seed`` fixes the sampling; ``nudge={step: (token, delta)}`` adds
        ``delta`` to one token's logit at that step (the fork experiment).
        """
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
        if not isinstance(n, int) or n < 1:
            raise ValueError(f"n must be an integer >= 1, got {n!r}")
        prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
        rows = [self.prompt_ids(p) for p in prompts]
        if len({len(r) for r in rows}) != 1:
            raise ValueError(f"batched prompts need equal token counts, got {sorted({len(r) for r in rows})}")
        ids = torch.tensor(rows)
        if self.max_context is not None and ids.size(1) + max_new_tokens > self.max_context:
            raise ValueError(f"prompt ({ids.size(1)} tokens) + {max_new_tokens} new tokens exceeds the "
                             f"{self.max_context}-token context of {self.name}")
        g = torch.Generator().manual_seed(seed)
        penalty = knobs.repetition_penalty != 1.0
        state, logps, margins = None, [], []
        steps = range(max_new_tokens)
        if progress:
            from tqdm.auto import tqdm
            steps = tqdm(steps, desc=f"{self.name}: {knobs.label()}", leave=False)
        for step in steps:
            logits, state = self._next(state, ids)
            logits = logits.float()
            if nudge and step in nudge:
                token, delta = nudge[step]
                logits = logits.clone()
                logits[:, token] += delta
            nxt = sampling.sample(logits, **knobs.kwargs(), generator=g, context=ids if penalty else None)
            logps.append(logits.log_softmax(-1).gather(-1, nxt)[:, 0])
            margins.append(sampling.top2_margin(logits))
            ids = torch.cat([ids, nxt], dim=1)
        new = ids[:, len(rows[0]):].tolist()
        return Generation(rows, new, [self.decode(r) for r in new], torch.stack(logps, 1),
                          torch.stack(margins, 1), knobs)


class CourseGPT(LanguageModel):
    """The course's character-level GPT (``checkpoints.load_checkpoint``)."""

    def __init__(self, model, tokenizer, name: str = "Shakespeare char GPT"):
        super().__init__()
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.vocab_size = tokenizer.vocab_size
        self.max_context = model.config.block_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def _next(self, state, ids):
        from .model import KVCache
        if state is None:
            state, fed = KVCache(self.model.config.n_layer), ids
        else:
            fed = ids[:, -1:]
        return self.model(fed, cache=state).logits[:, -1, :], state

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids).logits


class HFModel(LanguageModel):
    """A transformers causal LM such as SmolLM2 (``assets.load_smollm2``)."""

    def __init__(self, model, tokenizer, name: str = "SmolLM2-135M"):
        super().__init__()
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.vocab_size = model.config.vocab_size
        self.max_context = getattr(model.config, "max_position_embeddings", None)

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    def _next(self, state, ids):
        fed = ids if state is None else ids[:, -1:]
        out = self.model(input_ids=fed, past_key_values=state, use_cache=True)
        return out.logits[:, -1, :], out.past_key_values

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=ids).logits

    @torch.inference_mode()
    def prefix_next_logprobs(self, prefix: str | list[int], suffixes: list[str] | list[list[int]],
                             batch_size: int = 32) -> torch.Tensor:
        """As :meth:`LanguageModel.prefix_next_logprobs`, with the prefix run once (prefix KV cache).

        The suffixes are right-padded and run in batches on a copy of the prefix's cache; causal
        attention means a real token never sees the padding that follows it, so no mask is needed.
        """
        import copy
        import inspect

        p_ids, rows = self._prefix_rows(prefix, suffixes)
        # transformers >= 5.2x renamed the forward argument past_key_values to cache
        key = "cache" if "cache" in inspect.signature(self.model.forward).parameters else "past_key_values"
        out = self.model(input_ids=torch.tensor([p_ids]), use_cache=True)
        last, cache = out.logits[0, -1].float().log_softmax(-1), (out["cache"] if key == "cache" else out.past_key_values)
        result = torch.empty(len(rows), last.numel())
        for start in range(0, len(rows), batch_size):
            chunk = rows[start:start + batch_size]
            width = max(len(r) for r in chunk)
            if width == 0:
                result[start:start + len(chunk)] = last
                continue
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_repeat_interleave(len(chunk))
            ids = torch.tensor([r + [0] * (width - len(r)) for r in chunk])
            logits = self.model(input_ids=ids, use_cache=True, **{key: batch_cache}).logits.float()
            for i, r in enumerate(chunk):
                result[start + i] = logits[i, len(r) - 1].log_softmax(-1) if r else last
        return result

    def chat_ids(self, messages: list[dict] | str, system: str | None = None) -> list[int]:
        """Token ids of a conversation in the model's chat template, ready for the assistant's answer.

        ``messages``: a user message as a str, or ``[{"role": "user", "content": ...}, ...]``.
        With no system message, SmolLM2's template inserts its own default one.
        """
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if system is not None:
            messages = [{"role": "system", "content": system}] + list(messages)
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return self.tokenizer.encode(text, add_special_tokens=False)

    @torch.inference_mode()
    def chat(self, messages: list[dict] | str, max_new_tokens: int = 60, system: str | None = None) -> str:
        """The greedy answer to a conversation, up to the end-of-turn token (special tokens removed)."""
        ids = torch.tensor([self.chat_ids(messages, system)])
        out = self.model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                  pad_token_id=self.tokenizer.eos_token_id)
        return self.tokenizer.decode(out[0, ids.size(1):], skip_special_tokens=True).strip()


def wrap(model, tokenizer, name: str | None = None) -> LanguageModel:
    """The right adapter for a model: the course GPT or a transformers model (the one place that knows)."""
    from .model import GPT

    if isinstance(model, LanguageModel):
        return model
    cls = CourseGPT if isinstance(model, GPT) else HFModel
    return cls(model, tokenizer) if name is None else cls(model, tokenizer, name=name)


def load_models(smollm2: bool = True) -> dict[str, LanguageModel]:
    """The course char model and (optionally) SmolLM2, wrapped, keyed by display name."""
    from .assets import load_smollm2
    from .checkpoints import load_checkpoint

    model, tok, _ = load_checkpoint("shakespeare-char")
    models: dict[str, LanguageModel] = {}
    lm = CourseGPT(model, tok)
    models[lm.name] = lm
    if smollm2:
        m, t = load_smollm2(verbose=False)
        lm = HFModel(m, t)
        models[lm.name] = lm
    return models


