"""Notebook 08's companion, part 2: the two explorers. Token embeddings (neighbours, a 2-D map, case and vowel
similarity; the Shakespeare model and SmolLM2) and the parameter calculator (GPT and Llama formulas, memory
per number format). Imported through :mod:`course_utils.lessons.transformer` (one alias, ``lab``)."""
from __future__ import annotations

import json
import math
import random
import statistics

import plotly.graph_objects as go
import torch
import torch.nn.functional as F

from course_utils import assets, plots
from course_utils.tokenizers import CharTokenizer


# ----------------------------------------------------------------------------- 1. embeddings
def smollm2_embeddings() -> tuple[torch.Tensor, object, dict, int]:
    """SmolLM2-135M's input embedding matrix, its tokenizer (``tokenizers.Tokenizer``), its config.json and
    the number of parameters stored in its weights file, read straight from the files (no model built)."""
    from safetensors import safe_open
    from tokenizers import Tokenizer

    folder = assets.smollm2_dir(verbose=False)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        n_params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())  # noqa: SIM118 (safe_open is not a dict)
        emb = f.get_tensor("model.embed_tokens.weight")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    return emb, Tokenizer.from_file(str(folder / "tokenizer.json")), config, n_params


def char_class(ch: str) -> str:
    if ch.isalpha():
        kind = "vowel" if ch.lower() in "aeiou" else "consonant"
        return f"{kind} ({'upper' if ch.isupper() else 'lower'} case)"
    if ch.isdigit():
        return "digit"
    return "space / newline" if ch.isspace() else "punctuation"


def cosine_matrix(emb: torch.Tensor) -> torch.Tensor:
    e = F.normalize(emb.detach().float(), dim=-1)
    return e @ e.T


def case_pair_similarity(emb: torch.Tensor, tok: CharTokenizer, seed: int = 0) -> dict:
    """Mean cosine similarity of upper/lower pairs of a letter ('a','A'), of two vowels, and of random letter pairs."""
    sim = cosine_matrix(emb)
    letters = [c for c in tok.chars if c.isalpha() and c.isascii()]
    pairs = [(c, c.upper()) for c in letters if c.islower() and c.upper() in tok.stoi]
    vowels = [c for c in letters if c in "aeiou"]
    vowel_pairs = [(a, b) for a in vowels for b in vowels if a < b]
    rng = random.Random(seed)
    rand = [tuple(rng.sample(letters, 2)) for _ in range(500)]
    mean = lambda ps: statistics.mean(sim[tok.stoi[a], tok.stoi[b]].item() for a, b in ps)
    return {"case_pairs": mean(pairs), "vowel_pairs": mean(vowel_pairs), "random_pairs": mean(rand),
            "n_case_pairs": len(pairs)}


def neighbours(emb: torch.Tensor, index: int, k: int = 8) -> list[tuple[int, float]]:
    """The ``k`` tokens whose embeddings have the highest cosine similarity with token ``index`` (itself excluded)."""
    e = F.normalize(emb.detach().float(), dim=-1)
    sims = e @ e[index]
    sims[index] = -2.0
    top = sims.topk(k)
    return list(zip(top.indices.tolist(), top.values.tolist()))


def embedding_pca(emb: torch.Tensor, tok: CharTokenizer, title: str) -> go.Figure:
    """The character embeddings projected on their first two principal components, coloured by class."""
    x = emb.detach().float()
    x = x - x.mean(0)
    _, _, v = torch.linalg.svd(x, full_matrices=False)
    xy = (x @ v[:2].T).tolist()
    fig = go.Figure()
    classes = sorted({char_class(c) for c in tok.chars})
    for i, cls in enumerate(classes):
        rows = [(c, xy[j]) for j, c in enumerate(tok.chars) if char_class(c) == cls]
        fig.add_trace(go.Scatter(x=[p[0] for _, p in rows], y=[p[1] for _, p in rows], mode="text+markers",
                                 text=[plots.show_token(c) for c, _ in rows], textposition="top center",
                                 marker=dict(color=plots.PALETTE[i % 10], size=7), name=cls))
    fig.update_layout(title=title, xaxis_title="principal component 1", yaxis_title="principal component 2",
                      height=460, margin=dict(l=60, r=20, t=50, b=50))
    return fig


class NeighbourExplorer:
    """Type a token, see its nearest neighbours (cosine similarity of input embeddings) in each model."""

    TITLE = "Nearest neighbours in embedding space"

    def __init__(self, models: dict):
        """``models``: {name: (embedding matrix, encode(text) -> ids, decode(id) -> str)}."""
        import ipywidgets as widgets

        self.models = models
        self.model = widgets.Dropdown(options=list(models), description="model:")
        self.token = widgets.Text(value="e", description="token:", continuous_update=False)
        self.note = widgets.HTML()
        self.figure = go.FigureWidget(go.Bar(x=[], y=[]))
        self.figure.update_layout(title=self.TITLE, yaxis_title="cosine similarity", yaxis_range=[-0.2, 1],
                                  height=340, margin=dict(l=60, r=20, t=50, b=60))
        self.model.observe(self.show, "value")
        self.token.observe(self.show, "value")
        self.widget = widgets.VBox([widgets.HBox([self.model, self.token]), self.note, self.figure])
        self.show()

    def lookup(self, name: str, text: str) -> list[tuple[str, float]]:
        emb, encode, decode = self.models[name]
        ids = encode(text)
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for {name}; type exactly one token")
        return [(decode(i), s) for i, s in neighbours(emb, ids[0])]

    def show(self, _=None):
        try:
            rows = self.lookup(self.model.value, self.token.value)
        except ValueError as exc:
            self.note.value = plots.error_html(exc)
            return
        self.note.value = f"8 nearest neighbours of <code>{plots.show_token(self.token.value)}</code>"
        with self.figure.batch_update():
            self.figure.data[0].x = [f"{plots.show_token(t)} " for t, _ in rows]
            self.figure.data[0].y = [s for _, s in rows]
            self.figure.layout.title = f"{self.TITLE}: {self.model.value}, {plots.show_token(self.token.value)!r}"


# ----------------------------------------------------------------------------- 6. parameter calculator
def gpt_params(vocab: int, width: int, depth: int, heads: int, context: int, mlp: bool = True,
               tied: bool = True, bias: bool = True, pos: str = "learned") -> dict[str, int]:
    """Parameters per component of a GPT-2-style model (the course GPT), the same keys as
    ``GPT.parameter_breakdown``. Per block: attention 4·d² (+4·d biases), MLP 8·d² (+5·d), 2 LayerNorms."""
    for name, v in (("vocab", vocab), ("width", width), ("depth", depth), ("heads", heads), ("context", context)):
        if not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if width % heads:
        raise ValueError(f"width={width} must be divisible by heads={heads}")
    d, b = width, int(bias)
    return {"token embedding": vocab * d, "position embedding": context * d if pos == "learned" else 0,
            "attention": depth * (4 * d * d + 4 * b * d), "MLP": depth * (8 * d * d + 5 * b * d) if mlp else 0,
            "LayerNorm": ((2 if mlp else 1) * depth + 1) * d * (1 + b), "output head": 0 if tied else vocab * d}


def llama_params(vocab: int, width: int, depth: int, heads: int, kv_heads: int, ff: int,
                 tied: bool = True) -> dict[str, int]:
    """Parameters of a Llama-style model (SmolLM2): no biases, RMSNorm (one gain vector), grouped-query
    attention (k and v have ``kv_heads`` heads), SwiGLU MLP with three width×ff matrices, no position table."""
    kv = width // heads * kv_heads
    return {"token embedding": vocab * width, "position embedding": 0,
            "attention": depth * (2 * width * width + 2 * width * kv), "MLP": depth * 3 * width * ff,
            "LayerNorm": (2 * depth + 1) * width, "output head": 0 if tied else vocab * width}


BYTES = {"fp32": 4.0, "bf16": 2.0, "int4": 0.5}


def memory(n_params: int) -> dict[str, float]:
    """Bytes to store the weights (only the weights: no activations, no KV cache, no optimizer)."""
    return {fmt: n_params * b for fmt, b in BYTES.items()}


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n:.0f} B"
        n /= 1000


# The GPT-2 "124M" of OpenAI's gpt-2 repository (models/124M/hparams.json: n_vocab 50257, n_ctx 1024,
# n_embd 768, n_head 12, n_layer 12); the others are the course's own models.
PRESETS = {"CPU recipe (notebook 03)": dict(vocab=83, width=96, depth=2, heads=4, context=32),
           "shakespeare-char": dict(vocab=83, width=192, depth=6, heads=6, context=256),
           "GPT-2 small (124M)": dict(vocab=50257, width=768, depth=12, heads=12, context=1024)}


class ParameterCalculator:
    """Sliders for a GPT's shape -> parameters per component and the memory its weights take."""

    TITLE = "Parameter calculator"

    def __init__(self, preset: str = "shakespeare-char"):
        import ipywidgets as widgets

        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="preset:")
        style = dict(description_width="initial")
        self.vocab = widgets.BoundedIntText(min=1, max=1_000_000, description="vocabulary", style=style)
        self.width = widgets.IntSlider(min=16, max=4096, step=16, description="width", style=style)
        self.depth = widgets.IntSlider(min=1, max=96, description="depth", style=style)
        self.heads = widgets.IntSlider(min=1, max=64, description="heads", style=style)
        self.context = widgets.IntSlider(min=16, max=8192, step=16, description="context", style=style)
        self.table = widgets.HTML()
        self.figure = go.FigureWidget(go.Bar(x=[], y=[], marker_color=list(plots.PALETTE[:6])))
        self.figure.update_layout(title=self.TITLE, yaxis_title="parameters", height=360,
                                  margin=dict(l=70, r=20, t=50, b=60))
        self.load_preset()
        self.preset.observe(self.load_preset, "value")
        for w in (self.vocab, self.width, self.depth, self.heads, self.context):
            w.observe(self.show, "value")
        self.widget = widgets.VBox([self.preset, widgets.HBox([self.vocab, self.heads]),
                                    widgets.HBox([self.width, self.depth]), self.context, self.table, self.figure])
        self.show()

    def values(self) -> dict:
        return dict(vocab=self.vocab.value, width=self.width.value, depth=self.depth.value,
                    heads=self.heads.value, context=self.context.value)

    def load_preset(self, _=None):
        self._loading = True
        for k, v in PRESETS[self.preset.value].items():
            getattr(self, k).value = v
        self._loading = False
        self.show()

    def show(self, _=None):
        if getattr(self, "_loading", False):
            return
        try:
            parts = gpt_params(**self.values())
        except ValueError as exc:
            self.table.value = plots.error_html(exc)
            return
        total = sum(parts.values())
        mem = " | ".join(f"{fmt}: <b>{human_bytes(b)}</b>" for fmt, b in memory(total).items())
        self.table.value = f"<b>{total:,}</b> parameters &nbsp; weights in {mem}"
        with self.figure.batch_update():
            self.figure.data[0].x = list(parts)
            self.figure.data[0].y = list(parts.values())
            self.figure.layout.title = f"{self.TITLE}: {total:,} parameters"
