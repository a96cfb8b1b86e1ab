"""Companion of notebook 16, "Images are tokens too": patchify a picture, train a small vision
transformer over the patch tokens, shuffle its patches, and build a tiny vision-language model.

Data: scikit-learn's bundled 8x8 handwritten digits (``sklearn.datasets.load_digits``, no download),
split once into training and held-out images. Every model is built from ``course_utils.model.Block``
and trained through ``course_utils.train.train`` (hooks ``batch_fn``, ``loss_fn``, ``eval_fn``).
"""
from __future__ import annotations

import functools
import html

import ipywidgets as widgets
import plotly.graph_objects as go
import torch
from torch import nn
import torch.nn.functional as F
from plotly.subplots import make_subplots

from course_utils import plots, train
from course_utils.model import Block, GPTConfig
from course_utils.runtime import seeded

SIDE = 8                                  # the digits are 8 x 8 grey levels 0..16
PATCH_SIZES = (1, 2, 4, 8)                # the sizes that tile an 8 x 8 image
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
# ViT: "An Image is Worth 16x16 Words" (Dosovitskiy et al. 2021, arXiv 2010.11929): 224 x 224 images in
# 16 x 16 patches, a learnable class token in front, learned 1-D position embeddings.
VIT = dict(image=224, patch=16, source="Dosovitskiy et al. 2021, arXiv 2010.11929")
# LLaVA (Liu et al. 2023, arXiv 2304.08485): a trainable projection matrix W maps the vision encoder's
# patch features into the language model's word-embedding space; the visual tokens go before the text.
LLAVA_SOURCE = "Liu et al. 2023, arXiv 2304.08485"
# The tiny VLM's words: two questions and their one-word answers.
QUESTIONS = {"digit": ("which", "digit", "is", "this", "?"), "parity": ("is", "it", "even", "or", "odd", "?")}
ANSWER_WORDS = WORDS + ("even", "odd")
VOCAB = tuple(dict.fromkeys(("<pad>",) + QUESTIONS["digit"] + QUESTIONS["parity"] + ANSWER_WORDS))
PROMPT_LEN = max(len(q) for q in QUESTIONS.values())


# ----------------------------------------------------------------------------- data and tokens
@functools.lru_cache(maxsize=4)
def digits(seed: int = 0, test_fraction: float = 0.25):
    """(train images, train labels, test images, test labels): images (N, 8, 8) floats in [0, 1]."""
    from sklearn.datasets import load_digits

    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    n_test = round(test_fraction * len(y))
    test, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[test], y[test]


def n_tokens(height: int, width: int, patch: int) -> int:
    """Patches of side ``patch`` in a height x width image: (H / P) x (W / P), the ViT's N = HW / P^2."""
    for name, v in (("height", height), ("width", width), ("patch", patch)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if height % patch or width % patch:
        raise ValueError(f"patch size {patch} must divide the image size {height} x {width}")
    return (height // patch) * (width // patch)


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """(B, H, W) or (H, W) images -> (B, N, patch*patch) patch vectors, patches in row-major order."""
    single = images.dim() == 2
    x = images.unsqueeze(0) if single else images
    B, H, W = x.shape
    n_tokens(H, W, patch)                                   # validates the patch size
    x = x.reshape(B, H // patch, patch, W // patch, patch).permute(0, 1, 3, 2, 4)
    out = x.reshape(B, (H // patch) * (W // patch), patch * patch)
    return out[0] if single else out


def unpatchify(patches: torch.Tensor, patch: int, side: int = SIDE) -> torch.Tensor:
    """The inverse of ``patchify`` for square images: (B, N, P*P) -> (B, side, side)."""
    B, g = patches.shape[0], side // patch
    return patches.reshape(B, g, g, patch, patch).permute(0, 1, 3, 2, 4).reshape(B, side, side)


def position_grid(height: int, width: int, patch: int) -> list[tuple[int, int]]:
    """(row, column) of each patch in the order ``patchify`` emits them."""
    n_tokens(height, width, patch)
    return [(r, c) for r in range(height // patch) for c in range(width // patch)]


def shuffle_patches(patches: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """The same patches of each image in a random order (one permutation per image)."""
    g = torch.Generator().manual_seed(seed)
    order = torch.stack([torch.randperm(patches.shape[1], generator=g) for _ in range(patches.shape[0])])
    return torch.gather(patches, 1, order.unsqueeze(-1).expand_as(patches))


# ----------------------------------------------------------------------------- a vision transformer
class PatchClassifier(nn.Module):
    """A ViT in miniature: linear patch embedding, a class token in front, optional learned positions,
    bidirectional ``Block``s (``causal=False``), and a linear head on the class token's output."""

    def __init__(self, patch: int = 2, n_classes: int = 10, pos_encoding: str = "learned",
                 n_embd: int = 48, n_layer: int = 2, n_head: int = 4):
        super().__init__()
        if pos_encoding not in ("learned", "none"):
            raise ValueError(f"pos_encoding must be 'learned' or 'none', got {pos_encoding!r}")
        n = n_tokens(SIDE, SIDE, patch)
        self.patch = patch
        self.config = GPTConfig(vocab_size=n_classes, block_size=n + 1, n_layer=n_layer, n_head=n_head,
                                n_embd=n_embd, dropout=0.0, causal=False, pos_encoding=pos_encoding)
        self.embed = nn.Linear(patch * patch, n_embd)       # the "tokenizer" of pixels: one matrix
        self.cls = nn.Parameter(torch.zeros(1, 1, n_embd))
        self.pos = nn.Parameter(0.02 * torch.randn(1, n + 1, n_embd)) if pos_encoding == "learned" else None
        self.blocks = nn.ModuleList(Block(self.config) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, n_classes)

    def forward(self, patches: torch.Tensor, return_attn: bool = False):
        """patches (B, N, P*P) -> logits (B, classes), and per layer the attention (B, heads, N+1, N+1)."""
        x = torch.cat([self.cls.expand(patches.shape[0], -1, -1), self.embed(patches)], dim=1)
        if self.pos is not None:
            x = x + self.pos
        attentions = []
        for block in self.blocks:
            x, w = block(x, return_attn=return_attn)
            attentions.append(w)
        return self.head(self.ln_f(x[:, 0])), attentions


def accuracy(model: PatchClassifier, images: torch.Tensor, labels: torch.Tensor,
             shuffle: bool = False, seed: int = 0) -> float:
    """Fraction of ``images`` classified correctly (optionally with their patches shuffled)."""
    patches = patchify(images, model.patch)
    if shuffle:
        patches = shuffle_patches(patches, seed)
    with torch.no_grad():
        logits, _ = model.eval()(patches)
    return (logits.argmax(-1) == labels).float().mean().item()


def train_classifier(patch: int = 2, pos_encoding: str = "learned", steps: int = 300, seed: int = 0,
                     callback=None, progress: bool = True):
    """Train a ``PatchClassifier`` on the training digits; (model, history with ``val_acc``)."""
    xtr, ytr, xte, yte = digits()
    with seeded(seed):                                       # the weights' initialisation, locally
        model = PatchClassifier(patch, pos_encoding=pos_encoding)
    ptr = patchify(xtr, patch)
    cfg = train.TrainConfig(steps=steps, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                            eval_interval=max(1, steps // 6), weight_decay=0.05, seed=seed)

    def batch_fn(g):
        i = torch.randint(len(ytr), (cfg.batch_size,), generator=g)
        return ptr[i], ytr[i]

    def loss_fn(m, batch):
        return F.cross_entropy(m(batch[0])[0], batch[1])

    history = train.train(model, None, None, cfg, callback=callback, progress=progress, batch_fn=batch_fn,
                          loss_fn=loss_fn, eval_fn=lambda m: {"val_acc": accuracy(m, xte, yte)},
                          desc=f"ViT, {patch}x{patch} patches, positions: {pos_encoding}")
    return model, history


def cls_attention(model: PatchClassifier, image: torch.Tensor) -> torch.Tensor:
    """The last layer's attention from the class token to each patch, head-averaged, as a (g, g) grid."""
    with torch.no_grad():
        _, att = model.eval()(patchify(image, model.patch).unsqueeze(0), return_attn=True)
    g = SIDE // model.patch
    return att[-1][0, :, 0, 1:].mean(0).reshape(g, g)


# ----------------------------------------------------------------------------- a tiny VLM
class TinyVLM(nn.Module):
    """A decoder that reads [image patch tokens, question words] and predicts the answer word.

    The projector (one linear map, as in LLaVA) puts patch vectors into the word-embedding space; from
    there the causal ``Block``s treat image and text tokens alike.
    """

    def __init__(self, patch: int = 2, n_embd: int = 48, n_layer: int = 2, n_head: int = 4):
        super().__init__()
        self.patch, self.n_img = patch, n_tokens(SIDE, SIDE, patch)
        self.config = GPTConfig(vocab_size=len(VOCAB), block_size=self.n_img + PROMPT_LEN, n_layer=n_layer,
                                n_head=n_head, n_embd=n_embd, dropout=0.0, causal=True)
        self.projector = nn.Linear(patch * patch, n_embd)
        self.tok_emb = nn.Embedding(len(VOCAB), n_embd)
        self.pos_emb = nn.Embedding(self.config.block_size, n_embd)
        self.blocks = nn.ModuleList(Block(self.config) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, len(VOCAB), bias=False)

    def forward(self, patches: torch.Tensor, prompt: torch.Tensor, return_attn: bool = False):
        """Logits over the vocabulary at the last position (the answer), and per-layer attention."""
        x = torch.cat([self.projector(patches), self.tok_emb(prompt)], dim=1)
        x = x + self.pos_emb(torch.arange(x.shape[1]))
        attentions = []
        for block in self.blocks:
            x, w = block(x, return_attn=return_attn)
            attentions.append(w)
        return self.head(self.ln_f(x[:, -1])), attentions


def encode_prompt(kind: str) -> torch.Tensor:
    """The question's word ids, left-padded to ``PROMPT_LEN`` so the answer is always predicted last."""
    if kind not in QUESTIONS:
        raise ValueError(f"question must be one of {sorted(QUESTIONS)}, got {kind!r}")
    words = ("<pad>",) * (PROMPT_LEN - len(QUESTIONS[kind])) + QUESTIONS[kind]
    return torch.tensor([VOCAB.index(w) for w in words])


def answer_word(label: int, kind: str) -> str:
    return WORDS[label] if kind == "digit" else ("even" if label % 2 == 0 else "odd")


def vlm_batch(images: torch.Tensor, labels: torch.Tensor, kinds: list[str], patch: int):
    prompts = torch.stack([encode_prompt(k) for k in kinds])
    targets = torch.tensor([VOCAB.index(answer_word(int(y), k)) for y, k in zip(labels, kinds)])
    return patchify(images, patch), prompts, targets


def vlm_answers(model: TinyVLM, images: torch.Tensor, kind: str) -> tuple[list[str], torch.Tensor]:
    """The model's answer word (argmax over the whole vocabulary) and its probability, per image."""
    with torch.no_grad():
        logits, _ = model.eval()(patchify(images, model.patch), encode_prompt(kind).expand(len(images), -1))
    p = logits.softmax(-1)
    return [VOCAB[i] for i in p.argmax(-1).tolist()], p.max(-1).values


def vlm_accuracy(model: TinyVLM, images: torch.Tensor, labels: torch.Tensor, kind: str) -> float:
    words, _ = vlm_answers(model, images, kind)
    return sum(w == answer_word(int(y), kind) for w, y in zip(words, labels)) / len(words)


def train_vlm(patch: int = 2, steps: int = 400, seed: int = 0, callback=None, progress: bool = True):
    """Train a ``TinyVLM`` on both questions about the training digits; (model, history)."""
    xtr, ytr, xte, yte = digits()
    with seeded(seed):
        model = TinyVLM(patch)
    cfg = train.TrainConfig(steps=steps, batch_size=64, lr=3e-3, min_lr=3e-4, warmup_steps=20,
                            eval_interval=max(1, steps // 6), weight_decay=0.05, seed=seed)
    kinds = sorted(QUESTIONS)

    def batch_fn(g):
        i = torch.randint(len(ytr), (cfg.batch_size,), generator=g)
        k = torch.randint(len(kinds), (cfg.batch_size,), generator=g).tolist()
        return vlm_batch(xtr[i], ytr[i], [kinds[j] for j in k], patch)

    def loss_fn(m, batch):
        patches, prompts, targets = batch
        return F.cross_entropy(m(patches, prompts)[0], targets)

    def eval_fn(m):
        return {f"val_{k}": vlm_accuracy(m, xte, yte, k) for k in kinds}

    history = train.train(model, None, None, cfg, callback=callback, progress=progress, batch_fn=batch_fn,
                          loss_fn=loss_fn, eval_fn=eval_fn, desc="tiny VLM")
    return model, history


def answer_attention(model: TinyVLM, image: torch.Tensor, kind: str = "digit") -> torch.Tensor:
    """Last layer, head-averaged attention from the answer position to each image patch, as a grid."""
    with torch.no_grad():
        _, att = model.eval()(patchify(image, model.patch).unsqueeze(0), encode_prompt(kind).unsqueeze(0),
                              return_attn=True)
    g = SIDE // model.patch
    return att[-1][0, :, -1, :model.n_img].mean(0).reshape(g, g)


def image_attention_share(model: TinyVLM, images: torch.Tensor, kind: str = "digit") -> list[float]:
    """Per layer, the mean share of the answer position's attention that lands on image tokens."""
    with torch.no_grad():
        _, att = model.eval()(patchify(images, model.patch), encode_prompt(kind).expand(len(images), -1),
                              return_attn=True)
    return [w[:, :, -1, :model.n_img].sum(-1).mean().item() for w in att]


# ----------------------------------------------------------------------------- figures and widget
def image_figure(image: torch.Tensor, patch: int, attention: torch.Tensor | None = None,
                 title: str = "") -> go.Figure:
    """The digit with its patch grid, and (if given) the attention over the patches beside it."""
    cols = 2 if attention is not None else 1
    fig = make_subplots(1, cols, subplot_titles=("pixels and patches", "attention over patches")[:cols])
    fig.add_trace(go.Heatmap(z=image.tolist(), colorscale="Greys", showscale=False, zmin=0, zmax=1,
                             hovertemplate="row %{y}, col %{x}: %{z:.2f}<extra></extra>"), 1, 1)
    for k in range(0, SIDE + 1, patch):
        fig.add_shape(type="line", x0=k - 0.5, x1=k - 0.5, y0=-0.5, y1=SIDE - 0.5, line=dict(color="red"))
        fig.add_shape(type="line", y0=k - 0.5, y1=k - 0.5, x0=-0.5, x1=SIDE - 0.5, line=dict(color="red"))
    if attention is not None:
        fig.add_trace(go.Heatmap(z=attention.tolist(), colorscale="Blues", zmin=0,
                                 hovertemplate="patch row %{y}, col %{x}: %{z:.3f}<extra></extra>"), 1, 2)
    for k in range(1, cols + 1):                             # square pixels in each panel, row 0 on top
        fig.update_yaxes(autorange="reversed", scaleanchor=f"x{k if k > 1 else ''}", constrain="domain", row=1, col=k)
        fig.update_xaxes(constrain="domain", dtick=1 if k > 1 else None, row=1, col=k)
        fig.update_yaxes(dtick=1 if k > 1 else None, row=1, col=k)
    fig.update_layout(title=title, height=380, margin=dict(l=40, r=20, t=70, b=40))
    return fig


def patch_vectors_figure(image: torch.Tensor, patch: int) -> go.Figure:
    """Each patch flattened into one row: the sequence of token vectors the transformer reads."""
    p = patchify(image, patch)
    return plots.heatmap(p.tolist(), [f"px{j}" for j in range(p.shape[1])],
                         [f"token {i} {rc}" for i, rc in enumerate(position_grid(SIDE, SIDE, patch))],
                         title=f"{p.shape[0]} tokens of {p.shape[1]} numbers ({patch}x{patch} patches)",
                         x_title="pixel in the patch", y_title="token (patch row, col)", colorscale="Greys",
                         zmax=1, hover_value="grey level")


class ImageExplorer:
    """Pick a held-out digit and a patch size: its tokens, the classifier's answer, the class-token attention."""
    TITLE = "Image explorer"

    def __init__(self, models: dict[int, PatchClassifier], vlm: TinyVLM | None = None):
        self.models, self.vlm = models, vlm
        *_, self.x, self.y = digits()
        self.index = widgets.IntSlider(0, 0, len(self.y) - 1, description="image",
                                       continuous_update=False)
        self.patch = widgets.Dropdown(options=sorted(models), value=min(models), description="patch size")
        self.info = widgets.HTML()
        self.figure = go.FigureWidget(image_figure(self.x[0], min(models), torch.zeros(1, 1)))
        for w in (self.index, self.patch):
            w.observe(lambda _: self.refresh(), "value")
        self.widget = widgets.VBox([widgets.HBox([self.index, self.patch]), self.info, self.figure])
        self.refresh()

    def refresh(self) -> None:
        i, p = self.index.value, self.patch.value
        if p not in self.models:
            self.info.value = plots.error_html(f"patch size {p!r} has no trained model; choose {sorted(self.models)}")
            return
        model, image = self.models[p], self.x[i]
        with torch.no_grad():
            probs = model.eval()(patchify(image, p).unsqueeze(0))[0].softmax(-1)[0]
        guess = int(probs.argmax())
        mark = "&#10004;" if guess == int(self.y[i]) else "&#10008;"
        self.info.value = (f"<b>{n_tokens(SIDE, SIDE, p)} patch tokens</b> + 1 class token &middot; "
                           f"model says <b>{html.escape(WORDS[guess])}</b> (p = {probs[guess]:.2f}) {mark} "
                           f"&middot; truth: {WORDS[int(self.y[i])]}")
        if self.vlm is not None:
            (digit,), _ = vlm_answers(self.vlm, image.unsqueeze(0), "digit")
            (parity,), _ = vlm_answers(self.vlm, image.unsqueeze(0), "parity")
            self.info.value += (f"<br>tiny VLM ({self.vlm.patch}x{self.vlm.patch} patches): "
                                f"<i>which digit is this?</i> &rarr; <b>{digit}</b>; "
                                f"<i>is it even or odd?</i> &rarr; <b>{parity}</b>")
        fig = image_figure(image, p, cls_attention(model, image),
                           title=f"{self.TITLE}: held-out image {i}, {p}x{p} patches")
        with self.figure.batch_update():
            self.figure.layout.shapes = ()
            plots.replace_figure(self.figure, fig)


# ----------------------------------------------------------------------------- exercise checkers
def check_patchify(fn) -> None:
    xtr = digits()[0][:3]
    for p in (2, 4):
        for img in xtr:
            got = torch.as_tensor(fn(img, p), dtype=torch.float32)
            want = patchify(img, p)
            assert got.shape == want.shape, f"patch size {p}: shape {tuple(got.shape)}, expected {tuple(want.shape)}"
            assert torch.allclose(got, want), (f"patch size {p}: the shape is right but the numbers are not "
                                               "(check the order of the patches, row by row, and inside each patch)")


def check_count_tokens(fn) -> None:
    for h, w, p in ((8, 8, 2), (8, 8, 4), (224, 224, 16), (224, 224, 32), (336, 336, 14), (64, 32, 8)):
        got = fn(h, w, p)
        assert got == n_tokens(h, w, p), f"an image of {h}x{w} pixels in {p}x{p} patches: you said {got!r}"


def check_position_grid(fn) -> None:
    for h, w, p in ((8, 8, 2), (8, 8, 4), (16, 8, 4)):
        got = [tuple(rc) for rc in fn(h, w, p)]
        want = position_grid(h, w, p)
        assert len(got) == len(want), f"{h}x{w} in {p}x{p} patches: {len(got)} positions, expected {len(want)}"
        assert got == want, f"{h}x{w} in {p}x{p} patches: first mismatch at token " \
                            f"{next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)}"
