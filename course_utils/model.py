"""One readable decoder-only GPT.

token + position embeddings -> n_layer x [LayerNorm -> causal self-attention -> +residual,
LayerNorm -> MLP -> +residual] -> LayerNorm -> linear head over the vocabulary.

Attention can return its weights (for heatmaps), generation uses a KV cache, and a
model saves to safetensors + a JSON config.

Lesson switches (notebook 08, "inside the transformer"); the defaults are the GPT above:
``pos_encoding`` "learned" | "sinusoidal" | "rope" (rotary, applied to q and k) | "none";
``causal=False`` lets every position attend to every other (an encoder, as in BERT);
``residual=False`` and ``layernorm=False`` are *ablations* that remove the residual additions
or every LayerNorm, to show what breaks without them. Never use them for a real model.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
from dataclasses import asdict, dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F


POS_ENCODINGS = ("learned", "sinusoidal", "rope", "none")
ROPE_BASE = 10000.0


@dataclass
class GPTConfig:
    vocab_size: int
    block_size: int = 256          # longest context the model can see
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True
    tie_weights: bool = True       # share the token embedding with the output head
    pos_encoding: str = "learned"  # "learned", "sinusoidal" (fixed table), "rope" (rotary) or "none"
    mlp: bool = True               # False: an attention-only transformer
    causal: bool = True            # False: bidirectional attention (an encoder, BERT-style)
    residual: bool = True          # ablation (lesson 08 only): False drops the "x +" of every block
    layernorm: bool = True         # ablation (lesson 08 only): False replaces every LayerNorm by identity

    def __post_init__(self):
        for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.pos_encoding not in POS_ENCODINGS:
            raise ValueError(f"pos_encoding must be one of {', '.join(map(repr, POS_ENCODINGS))}, "
                             f"got {self.pos_encoding!r}")
        if self.pos_encoding == "rope" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"rope needs an even head size, got n_embd/n_head={self.n_embd // self.n_head}")


def sinusoidal_positions(block_size: int, n_embd: int) -> torch.Tensor:
    """The fixed sin/cos position table of "Attention Is All You Need"."""
    pos = torch.arange(block_size, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, n_embd, 2, dtype=torch.float32) * (-math.log(10000.0) / n_embd))
    table = torch.zeros(block_size, n_embd)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq[: n_embd // 2])
    return table


def rope(x: torch.Tensor, start: int = 0, base: float = ROPE_BASE) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, "RoFormer", arXiv 2104.09864), on x (..., T, d).

    Each pair of features (x[2i], x[2i+1]) of the vector at position m is rotated by the angle
    m * theta_i, theta_i = base^(-2i/d). Applied to queries and keys, the score q_m . k_n then depends
    only on the offset m - n: rotating both by the same extra angle leaves a dot product unchanged.
    """
    T, d = x.size(-2), x.size(-1)
    if d % 2:
        raise ValueError(f"rope needs an even feature size, got {d}")
    theta = base ** (-torch.arange(0, d, 2, dtype=torch.float32, device=x.device) / d)        # (d/2,)
    angle = torch.arange(start, start + T, dtype=torch.float32, device=x.device)[:, None] * theta   # (T, d/2)
    cos, sin = angle.cos().to(x.dtype), angle.sin().to(x.dtype)
    even, odd = x[..., 0::2], x[..., 1::2]
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


def causal_mask(T: int, S: int | None = None, device=None) -> torch.Tensor:
    """Which keys each query may see: a (T, S) bool matrix, True where query i may attend key j.

    The T queries are the newest T of S positions (S - T of them cached), so query i sits at
    position i + S - T and sees keys j <= i + S - T: the lower triangle, shifted by the cache.
    """
    S = T if S is None else S
    if isinstance(T, bool) or not isinstance(T, int) or not 1 <= T <= S:
        raise ValueError(f"T must be an integer from 1 to S={S}, got {T!r}")
    return torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor | None = None,
              dropout: float = 0.0, return_weights: bool = False,
              scale: float | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention, softmax(q k^T * scale, masked) v, the one definition in the course.

    q: (..., T, d), k and v: (..., S, d); ``mask`` (T, S) bool, True = may attend (None: all);
    ``scale`` defaults to 1/sqrt(d).
    With ``return_weights`` the weights are computed in the open and returned (for heatmaps);
    otherwise torch's fused ``scaled_dot_product_attention`` computes the same thing faster.
    """
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"queries have dimension {q.shape[-1]} but keys {k.shape[-1]}: they must match")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"{k.shape[-2]} keys but {v.shape[-2]} values: they must match")
    if not return_weights:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout, scale=scale), None
    scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)) if scale is None else scale)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)
    return F.dropout(weights, dropout, dropout > 0) @ v, weights


class KVCache:
    """Keys and values of every layer for the tokens seen so far."""

    def __init__(self, n_layer: int):
        self.k: list[torch.Tensor | None] = [None] * n_layer
        self.v: list[torch.Tensor | None] = [None] * n_layer

    def __len__(self) -> int:
        return 0 if self.k[0] is None else self.k[0].size(2)

    def crop(self, length: int) -> None:
        """Keep only the first ``length`` positions (drop rejected tokens in speculative decoding)."""
        if not isinstance(length, int) or not 0 <= length <= len(self):
            raise ValueError(f"crop length must be an integer in [0, {len(self)}], got {length!r}")
        for i in range(len(self.k)):
            if self.k[i] is not None:
                self.k[i], self.v[i] = self.k[i][:, :, :length], self.v[i][:, :, :length]


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head = cfg.n_head
        self.causal, self.rope = cfg.causal, cfg.pos_encoding == "rope"
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = cfg.dropout
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cache: KVCache | None = None, layer: int = 0, return_attn: bool = False):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        # (B, T, C) -> (B, heads, T, head_dim)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if self.rope:                   # rotate by absolute position: new tokens come after this layer's cache
            start = 0 if cache is None or cache.k[layer] is None else cache.k[layer].size(2)
            q, k = rope(q, start), rope(k, start)
        if cache is not None:
            if cache.k[layer] is not None:
                k = torch.cat([cache.k[layer], k], dim=2)
                v = torch.cat([cache.v[layer], v], dim=2)
            cache.k[layer], cache.v[layer] = k, v
        S = k.size(2)                   # number of keys: cached + new
        drop = self.dropout if self.training else 0.0
        if not return_attn and S == T:
            # no cache: the fused kernel's own causal path
            y, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, is_causal=self.causal), None
        else:                           # one new token after a cache sees every key: no mask needed
            mask = None if T == 1 or not self.causal else causal_mask(T, S, x.device)
            y, weights = attention(q, k, v, mask, drop, return_attn)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_drop(self.proj(y)), weights


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


def layer_norm(cfg: GPTConfig) -> nn.Module:
    """A LayerNorm, or the identity under the ``layernorm=False`` ablation."""
    return nn.LayerNorm(cfg.n_embd, bias=cfg.bias) if cfg.layernorm else nn.Identity()


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x)).

    Under the ``residual=False`` ablation the block replaces x instead of adding to it.
    """

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.residual = cfg.residual
        self.ln1 = layer_norm(cfg)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = layer_norm(cfg) if cfg.mlp else None
        self.mlp = MLP(cfg) if cfg.mlp else None

    def forward(self, x, cache=None, layer=0, return_attn=False):
        a, weights = self.attn(self.ln1(x), cache, layer, return_attn)
        x = x + a if self.residual else a
        if self.mlp is not None:
            m = self.mlp(self.ln2(x))
            x = x + m if self.residual else m
        return x, weights


@dataclass
class GPTOutput:
    logits: torch.Tensor
    loss: torch.Tensor | None = None
    attentions: list[torch.Tensor] = field(default_factory=list)   # per layer: (B, heads, T, S)


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        if cfg.pos_encoding == "learned":
            self.pos_emb = nn.Embedding(cfg.block_size, cfg.n_embd)
        elif cfg.pos_encoding == "sinusoidal":
            self.register_buffer("pos_table", sinusoidal_positions(cfg.block_size, cfg.n_embd), persistent=False)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = layer_norm(cfg)
        self.head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.head.weight = self.tok_emb.weight
        self.apply(self._init_weights)
        for name, p in self.named_parameters():   # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def positions(self, start: int, length: int, device) -> torch.Tensor | float:
        """What is added to the token embeddings (0 for "rope", which rotates q and k, and "none")."""
        if self.config.pos_encoding == "learned":
            return self.pos_emb(torch.arange(start, start + length, device=device))
        if self.config.pos_encoding == "sinusoidal":
            return self.pos_table[start:start + length]
        return 0.0

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                cache: KVCache | None = None, return_attn: bool = False) -> GPTOutput:
        """Logits for every position of ``idx`` (B, T); loss if ``targets`` are given."""
        if idx.dim() != 2:
            raise ValueError(f"idx must have shape (batch, time), got {tuple(idx.shape)}")
        B, T = idx.shape
        start = len(cache) if cache is not None else 0
        if start + T > self.config.block_size:
            raise ValueError(f"sequence of {start + T} tokens is longer than the model's context "
                             f"(block_size={self.config.block_size})")
        x = self.drop(self.tok_emb(idx) + self.positions(start, T, idx.device))
        attentions = []
        for i, block in enumerate(self.blocks):
            x, w = block(x, cache, i, return_attn)
            if return_attn:
                attentions.append(w)
        logits = self.head(self.ln_f(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.view(-1, logits.size(-1)), targets.reshape(-1), ignore_index=-1)
        return GPTOutput(logits, loss, attentions)

    # ----------------------------------------------------------------- sizes
    def num_parameters(self, trainable_only: bool = False) -> int:
        """Parameters counted once each (a tied embedding/head is one matrix)."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def parameter_breakdown(self) -> dict[str, int]:
        """Parameter count per component, for tables and bar charts."""
        groups = {"token embedding": self.tok_emb.weight.numel(),
                  "position embedding": self.pos_emb.weight.numel() if hasattr(self, "pos_emb") else 0}
        groups["attention"] = sum(p.numel() for b in self.blocks for p in b.attn.parameters())
        groups["MLP"] = sum(p.numel() for b in self.blocks if b.mlp is not None for p in b.mlp.parameters())
        groups["LayerNorm"] = sum(p.numel() for m in self.modules() if isinstance(m, nn.LayerNorm)
                                  for p in m.parameters())
        groups["output head"] = 0 if self.config.tie_weights else self.head.weight.numel()
        return groups

    # ------------------------------------------------------------ generation
    @torch.no_grad()
    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
                 generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
        """Append ``max_new_tokens`` sampled tokens to ``idx`` (B, T); temperature 0 is greedy.

        The loop is the course's one generation path, :meth:`course_utils.lm.LanguageModel.generate_ids`:
        with ``use_cache`` every step feeds only the newest token and reuses the cached keys and
        values; when the context is full the window slides and the cache is rebuilt.
        """
        from .lm import CourseGPT, Knobs

        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        was_training = self.training
        knobs = Knobs(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p)
        out = CourseGPT(self, None, use_cache=use_cache).generate_ids(idx, max_new_tokens, knobs, generator)[0]
        self.train(was_training)
        return out

    # ------------------------------------------------------------- save/load
    def save(self, folder: str | os.PathLike, **extra) -> pathlib.Path:
        """Write ``model.safetensors`` and ``config.json`` (config plus any ``extra`` JSON fields)."""
        from safetensors.torch import save_model

        folder = pathlib.Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_model(self, str(folder / "model.safetensors"))
        meta = {"model": asdict(self.config), **extra}
        (folder / "config.json").write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n",
                                            encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike, device: str | torch.device = "cpu") -> tuple["GPT", dict]:
        """Load a saved model (eval mode) and its config.json as a dict."""
        from safetensors.torch import load_model

        folder = pathlib.Path(folder)
        for name in ("config.json", "model.safetensors"):
            if not (folder / name).exists():
                raise FileNotFoundError(f"{folder / name} is missing: not a saved course model")
        meta = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        model = cls(GPTConfig(**meta["model"]))
        load_model(model, str(folder / "model.safetensors"), device=str(device))
        return model.to(device).eval(), meta
