"""One interface over every language model of the course: the course GPT and Hugging Face models.

:class:`LanguageModel` is what the notebooks talk to: ``encode``/``decode``, cached next-token
logits (sliders never re-run the model), seeded batched generation with a KV cache, the
log-probability of a continuation (to score answer options without generating), the mean
next-token loss over a token tensor (:func:`sequence_loss`, also behind ``train.full_loss``), and a chat
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


# ------------------------------------------------------------------ the loss over a text
@torch.inference_mode()
def sequence_loss(logits_fn, ids: torch.Tensor, window: int, batch_size: int = 8, device=None) -> float:
    """Mean next-token cross-entropy (nats) over a 1-D token tensor, every target counted once.

    ``ids`` is cut into consecutive non-overlapping windows of ``window`` inputs; the last, shorter
    window (if any) is scored too. ``logits_fn(x)`` maps a batch of ids (B, T) to logits (B, T, V).
    The same ``ids`` give comparable numbers for any model (before and after quantization).
    """
    import torch.nn.functional as F

    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a whole number >= 1, got {window!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or len(ids) < 2:
        raise ValueError(f"ids must be a 1-D tensor of at least 2 tokens, got {getattr(ids, 'shape', ids)!r}")
    n_targets = len(ids) - 1
    n_full = n_targets // window
    x = ids[: n_full * window].view(n_full, window)
    y = ids[1: n_full * window + 1].view(n_full, window)
    batches = [(x[i:i + batch_size], y[i:i + batch_size]) for i in range(0, n_full, batch_size)]
    if n_full * window < n_targets:                      # the final, shorter window
        batches.append((ids[n_full * window:-1][None], ids[n_full * window + 1:][None]))
    total = 0.0
    for xb, yb in batches:
        logits = logits_fn(xb.to(device) if device is not None else xb).float()
        total += F.cross_entropy(logits.reshape(-1, logits.size(-1)), yb.to(logits.device).reshape(-1),
                                 reduction="sum").item()
    return total / n_targets


# ------------------------------------------------------------------ models
class LanguageModel:
    """What notebook 04 needs from a model. Subclasses implement encode/decode/_next."""

    name = "model"
    vocab_size = 0
    max_context: int | None = None
    slides = False          # True: past max_context the window slides (the course GPT) instead of failing

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

    def loss(self, ids: torch.Tensor, window: int | None = None, batch_size: int = 8) -> float:
        """Mean next-token loss over a 1-D token tensor (:func:`sequence_loss`); ``window``
        defaults to the model's context length."""
        window = window or self.max_context
        if window is None:
            raise ValueError(f"{self.name} has no fixed context length: pass window=")
        if self.max_context is not None and window > self.max_context:
            raise ValueError(f"window={window} is longer than the {self.max_context}-token context of {self.name}")
        return sequence_loss(self.logits, ids, window, batch_size)

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

    @torch.no_grad()     # not inference_mode: the ids may feed a training step (policy gradients)
    def generate_ids(self, ids: torch.Tensor, max_new_tokens: int, knobs: Knobs = Knobs(),
                     generator: torch.Generator | None = None, nudge: dict[int, tuple[int, float]] | None = None,
                     progress: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The one generation loop of the course: append ``max_new_tokens`` tokens to ``ids`` (B, T).

        Each step asks the model for the next-token logits (``_next`` keeps the KV cache), applies
        the knobs and samples with ``generator``; ``nudge={step: (token, delta)}`` adds ``delta`` to
        one token's logit at that step (the fork experiment). Returns (all ids, log p of each chosen
        token under the raw model (B, steps), top-1 minus top-2 logit before each choice (B, steps)).
        """
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
            nxt = sampling.sample(logits, **knobs.kwargs(), generator=generator, context=ids if penalty else None)
            logps.append(logits.log_softmax(-1).gather(-1, nxt)[:, 0])
            margins.append(sampling.top2_margin(logits))
            ids = torch.cat([ids, nxt], dim=1)
        empty = torch.zeros(ids.size(0), 0)
        return (ids, torch.stack(logps, 1) if logps else empty, torch.stack(margins, 1) if margins else empty)

    def generate(self, prompts: str | list[str], max_new_tokens: int, knobs: Knobs = Knobs(), seed: int = 0,
                 n: int = 1, nudge: dict[int, tuple[int, float]] | None = None, progress: bool = False) -> Generation:
        """Sample ``n`` continuations of ``prompts`` (one str, or a list of prompts with equal token counts).

        Uses a KV cache; ``seed`` fixes the sampling (see :meth:`generate_ids`).
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
        if not self.slides and self.max_context is not None and ids.size(1) + max_new_tokens > self.max_context:
            raise ValueError(f"prompt ({ids.size(1)} tokens) + {max_new_tokens} new tokens exceeds the "
                             f"{self.max_context}-token context of {self.name}")
        ids, logps, margins = self.generate_ids(ids, max_new_tokens, knobs, torch.Generator().manual_seed(seed),
                                                nudge, progress)
        new = ids[:, len(rows[0]):].tolist()
        return Generation(rows, new, [self.decode(r) for r in new], logps, margins, knobs)


class CourseGPT(LanguageModel):
    """The course's GPT (``checkpoints.load_checkpoint``); ``tokenizer`` may be None for ids-only use.

    Generation past the context slides the window: when the cache is full it is rebuilt from
    the last ``block_size - 1`` tokens. ``use_cache=False`` re-reads the whole window every step.
    """

    slides = True

    def __init__(self, model, tokenizer, name: str = "Shakespeare char GPT", use_cache: bool = True):
        super().__init__()
        self.model, self.tokenizer, self.name, self.use_cache = model.eval(), tokenizer, name, use_cache
        self.vocab_size = tokenizer.vocab_size if tokenizer is not None else model.config.vocab_size
        self.max_context = model.config.block_size

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids) -> str:
        return self.tokenizer.decode(ids)

    def _next(self, state, ids):
        from .model import KVCache
        block = self.model.config.block_size
        if not self.use_cache:
            return self.model(ids[:, -block:]).logits[:, -1, :], None
        if state is None or len(state) >= block:        # first step, or the cache is full: (re)build it
            state = KVCache(self.model.config.n_layer)
            fed = ids[:, -(block - 1):] if ids.size(1) >= block else ids
        else:
            fed = ids[:, -1:]
        return self.model(fed, cache=state).logits[:, -1, :], state

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model(ids).logits


def _cache_argument(model) -> str:
    import inspect
    return "cache" if "cache" in inspect.signature(model.forward).parameters else "past_key_values"


def hf_forward(model, ids: torch.Tensor, cache=None, **kwargs):
    """One forward pass of a transformers causal LM with its KV cache: ``(output, cache)``.

    transformers 5.2x renamed the forward argument and output ``past_key_values`` to ``cache``
    (the old name still works, with a deprecation warning); this is the one place that knows."""
    key = _cache_argument(model)
    out = model(input_ids=ids, use_cache=True, **{key: cache}, **kwargs)
    return out, (out["cache"] if key == "cache" else out.past_key_values)


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
        out, cache = hf_forward(self.model, fed, state)
        return out.logits[:, -1, :], cache

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

        p_ids, rows = self._prefix_rows(prefix, suffixes)
        out, cache = hf_forward(self.model, torch.tensor([p_ids]))
        last = out.logits[0, -1].float().log_softmax(-1)
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
            logits = hf_forward(self.model, ids, batch_cache)[0].logits.float()
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


