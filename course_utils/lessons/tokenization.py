"""Companion of notebook 01 (tokenization): coloured token chips, side-by-side tokenizer
comparisons, the token X-ray, digit and language plots, and the exercise checkers. SmolLM2's measured
addition accuracy (a shipped JSON, its CLI and the live check) lives in the sibling
:mod:`.tokenization_addition` (re-exported here).

Every function accepts any tokenizer the course meets (tiktoken, the course's ``BPETokenizer``
or ``CharTokenizer``, SmolLM2's Hugging Face tokenizer), through :mod:`course_utils.tokenizers.pieces`.
"""
from __future__ import annotations

import collections
import html
import random
from typing import Callable, Mapping, Sequence

import plotly.graph_objects as go

from .. import lm
from ..tokenizers import BPETokenizer, count_tokens, encode, merge_pair, piece_label, token_pieces, token_strings
from .tokenization_addition import (addition_digit_table, addition_figure, addition_live_check,  # noqa: F401
                                    addition_run, addition_table, digit_accuracy, load_addition_results)

# Pastel colours for neighbouring chips (cycled by position, as tiktokenizer does).
CHIP_COLORS = ("#ffd6a5", "#caffbf", "#9bf6ff", "#bdb2ff", "#ffc6ff", "#fdffb6", "#a0c4ff", "#ffadad")

# Text presets for the token X-ray.
PRESETS = {
    "Hello world": "Hello world! hello World HELLO",
    "numbers": "In 2023, 12345 + 67890 = 80235 and pi = 3.14159265.",
    "strawberry": "How many r's are in strawberry? ' strawberry' vs 'strawberry' vs 'Strawberry'",
    "code": "def add(a, b):\n    return a + b  # four spaces of indent\n",
    "emoji and accents": "Café déjà vu 😀👍🏽 naïve",
    "multilingual": "Hello / Bonjour / Привет / 你好 / नमस्ते / مرحبا",
    "glitch tokens": " SolidGoldMagikarp petertodd davidjl",
}

# Article 1 of the Universal Declaration of Human Rights, our transcription of the standard UN
# translations (close to, but not guaranteed identical with, the official texts); the lesson only
# compares their token counts.
UDHR_ARTICLE_1 = {
    "English": "All human beings are born free and equal in dignity and rights. They are endowed with "
               "reason and conscience and should act towards one another in a spirit of brotherhood.",
    "German": "Alle Menschen sind frei und gleich an Würde und Rechten geboren. Sie sind mit Vernunft und "
              "Gewissen begabt und sollen einander im Geist der Brüderlichkeit begegnen.",
    "French": "Tous les êtres humains naissent libres et égaux en dignité et en droits. Ils sont doués de "
              "raison et de conscience et doivent agir les uns envers les autres dans un esprit de fraternité.",
    "Spanish": "Todos los seres humanos nacen libres e iguales en dignidad y derechos y, dotados como están "
               "de razón y conciencia, deben comportarse fraternalmente los unos con los otros.",
    "Russian": "Все люди рождаются свободными и равными в своем достоинстве и правах. Они наделены разумом "
               "и совестью и должны поступать в отношении друг друга в духе братства.",
    "Greek": "Όλοι οι άνθρωποι γεννιούνται ελεύθεροι και ίσοι στην αξιοπρέπεια και τα δικαιώματα. Είναι "
             "προικισμένοι με λογική και συνείδηση, και οφείλουν να συμπεριφέρονται μεταξύ τους με πνεύμα "
             "αδελφοσύνης.",
    "Chinese": "人人生而自由，在尊严和权利上一律平等。他们赋有理性和良心，并应以兄弟关系的精神相对待。",
    "Japanese": "すべての人間は、生まれながらにして自由であり、かつ、尊厳と権利とについて平等である。"
                "人間は、理性と良心とを授けられており、互いに同胞の精神をもって行動しなければならない。",
    "Korean": "모든 인간은 태어날 때부터 자유로우며 그 존엄과 권리에 있어 동등하다. 인간은 천부적으로 "
              "이성과 양심을 부여받았으며 서로 형제애의 정신으로 행동하여야 한다.",
    "Hindi": "सभी मनुष्यों को गौरव और अधिकारों के मामले में जन्मजात स्वतन्त्रता और समानता प्राप्त है। उन्हें "
             "बुद्धि और अन्तरात्मा की देन प्राप्त है और परस्पर उन्हें भाईचारे के भाव से बर्ताव करना चाहिए।",
    "Arabic": "يولد جميع الناس أحرارًا متساوين في الكرامة والحقوق. وقد وهبوا عقلاً وضميرًا وعليهم أن يعامل "
              "بعضهم بعضًا بروح الإخاء.",
}


def chips_html(pieces: Sequence[tuple[int, bytes]], show_ids: bool = False) -> str:
    """Coloured token chips (HTML); hover a chip to see its id and bytes."""
    spans = []
    for k, (i, b) in enumerate(pieces):
        partial = False
        try:
            b.decode("utf-8")
        except UnicodeDecodeError:
            partial = True
        label = html.escape(piece_label(b))
        style = (f"background:{CHIP_COLORS[k % len(CHIP_COLORS)]};padding:1px 2px;margin:1px;border-radius:3px;"
                 "font-family:monospace;white-space:pre;display:inline-block;line-height:1.6;"
                 + ("color:#888;font-style:italic;" if partial else ""))
        tip = html.escape(f"id {i} | bytes {b!r}" + (" | part of a UTF-8 character" if partial else ""))
        sub = f"<sub style='color:#555'>{i}</sub>" if show_ids else ""
        spans.append(f"<span title='{tip}' style='{style}'>{label}{sub}</span>")
    return "".join(spans)


def comparison_html(tokenizers: Mapping[str, object], text: str, show_ids: bool = False) -> str:
    """One row of chips per tokenizer, with its token count."""
    rows = []
    for name, tok in tokenizers.items():
        pieces = token_pieces(tok, text)
        rows.append(f"<div style='margin:4px 0'><b>{html.escape(name)}</b>: {len(pieces)} tokens<br>"
                    f"{chips_html(pieces, show_ids)}</div>")
    return "".join(rows)


class TokenXRay:
    """A text box and preset menu; every tokenizer shows the text as coloured chips with ids."""

    def __init__(self, tokenizers: Mapping[str, object], presets: Mapping[str, str] = PRESETS,
                 text: str | None = None, max_chars: int = 2000):
        import ipywidgets as widgets

        if not tokenizers:
            raise ValueError("TokenXRay needs at least one tokenizer")
        self.tokenizers = dict(tokenizers)
        self.max_chars = max_chars
        self.preset = widgets.Dropdown(options=["(your own text)"] + list(presets), value="(your own text)",
                                       description="preset")
        self.text = widgets.Textarea(value=text if text is not None else next(iter(presets.values())),
                                     layout=widgets.Layout(width="95%", height="70px"), description="text")
        self.show_ids = widgets.Checkbox(value=True, description="show ids")
        self.out = widgets.HTML()
        self._presets = dict(presets)
        self.preset.observe(self._on_preset, names="value")
        self.text.observe(lambda _: self.update(), names="value")
        self.show_ids.observe(lambda _: self.update(), names="value")
        self.widget = widgets.VBox([widgets.HBox([self.preset, self.show_ids]), self.text, self.out])
        self.update()

    def _on_preset(self, change) -> None:
        if change["new"] in self._presets:
            self.text.value = self._presets[change["new"]]

    def counts(self) -> dict[str, int]:
        return {name: count_tokens(tok, self.text.value[:self.max_chars]) for name, tok in self.tokenizers.items()}

    def update(self) -> None:
        text = self.text.value
        note = ""
        if len(text) > self.max_chars:
            text = text[:self.max_chars]
            note = f"<i>(showing the first {self.max_chars} characters)</i>"
        self.out.value = note + comparison_html(self.tokenizers, text, self.show_ids.value)

    def _ipython_display_(self):
        from IPython.display import display
        display(self.widget)


# ---------------------------------------------------------------------------
# Numbers
# ---------------------------------------------------------------------------
def digit_pattern(tokenizer, number: str) -> str:
    """How a number is cut: the digit count of each token that holds digits, e.g. '3-3-1'."""
    groups = [sum(ch.isdigit() for ch in s) for s in token_strings(tokenizer, number)]
    return "-".join(str(g) for g in groups if g)


def random_number(n_digits: int, rng: random.Random) -> str:
    if isinstance(n_digits, bool) or not isinstance(n_digits, int) or not 1 <= n_digits <= 30:
        raise ValueError(f"n_digits must be an integer from 1 to 30, got {n_digits!r}")
    low = 0 if n_digits == 1 else 10 ** (n_digits - 1)
    return str(rng.randint(low, 10 ** n_digits - 1))


def digit_pattern_counts(tokenizer, n_digits: int, n_samples: int = 500, seed: int = 0,
                         commas: bool = False) -> collections.Counter:
    """How often each split pattern occurs over ``n_samples`` random ``n_digits``-digit numbers."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 1 <= n_samples <= 100_000:
        raise ValueError(f"n_samples must be an integer from 1 to 100000, got {n_samples!r}")
    rng = random.Random(seed)
    counts: collections.Counter = collections.Counter()
    for _ in range(n_samples):
        x = random_number(n_digits, rng)
        counts[digit_pattern(tokenizer, f"{int(x):,}" if commas else x)] += 1
    return counts


def digit_patterns_figure(tokenizers: Mapping[str, object], n_digits: int = 7, n_samples: int = 500,
                          commas: bool = False, seed: int = 0) -> go.Figure:
    """Bar chart: share of random numbers cut into each digit pattern, per tokenizer."""
    fig = go.Figure()
    _fill_digit_figure(fig, tokenizers, n_digits, n_samples, commas, seed)
    fig.update_layout(title="How random numbers are cut into tokens", barmode="group", height=400,
                      xaxis_title="digits per token, left to right", yaxis_title="share of numbers",
                      yaxis_range=[0, 1.05], margin=dict(l=60, r=20, t=50, b=60))
    return fig


def _fill_digit_figure(fig, tokenizers, n_digits, n_samples, commas, seed) -> None:
    data = []
    for name, tok in tokenizers.items():
        counts = digit_pattern_counts(tok, n_digits, n_samples, seed, commas)
        top = counts.most_common(12)
        data.append(go.Bar(name=name, x=[p for p, _ in top], y=[c / n_samples for _, c in top],
                           hovertemplate="%{x}: %{y:.1%}<extra>" + name + "</extra>"))
    fig.data = ()
    for bar in data:
        fig.add_trace(bar)
    fig.update_layout(xaxis=dict(type="category"))


def digit_explorer(tokenizers: Mapping[str, object], n_samples: int = 300):
    """A slider for the number length and a 'with commas' switch over the digit-pattern chart."""
    import ipywidgets as widgets

    length = widgets.IntSlider(value=7, min=1, max=12, description="digits")
    commas = widgets.Checkbox(value=False, description="with commas (1,234,567)", indent=False,
                              layout=widgets.Layout(width="auto"))
    fig = go.FigureWidget(digit_patterns_figure(tokenizers, length.value, n_samples))

    def redraw(_=None):
        with fig.batch_update():
            _fill_digit_figure(fig, tokenizers, length.value, n_samples, commas.value, 0)
    length.observe(redraw, names="value")
    commas.observe(redraw, names="value")
    return widgets.VBox([widgets.HBox([length, commas]), fig])


# ---------------------------------------------------------------------------
# Training your own BPE
# ---------------------------------------------------------------------------
def compression_figure(tok: BPETokenizer, n_bytes: int, eval_points: Mapping[int, float] | None = None) -> go.Figure:
    """Bytes per token of the training text after each merge (from ``tok.history``)."""
    if not tok.history:
        raise ValueError("this tokenizer has no training history; train it with BPETokenizer.train")
    xs = [v for v, _ in tok.history]
    fig = go.Figure(go.Scatter(x=xs, y=[n_bytes / n for _, n in tok.history], mode="lines",
                               name="training text", hovertemplate="vocab %{x}: %{y:.2f} bytes/token<extra></extra>"))
    if eval_points:
        fig.add_trace(go.Scatter(x=list(eval_points), y=list(eval_points.values()), mode="markers",
                                 marker=dict(size=9), name="held-out text"))
    fig.update_layout(title="Compression grows with the vocabulary", xaxis_title="vocabulary size",
                      yaxis_title="UTF-8 bytes per token", height=380, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def merges_table_html(tok: BPETokenizer, first: int = 0, n: int = 20) -> str:
    """The merges ``first .. first+n`` as 'left + right -> new' chips."""
    if tok.merges is None:
        raise ValueError("this tokenizer has no merge list (train it with BPETokenizer.train)")
    rows = []
    for k, (a, b, new) in enumerate(tok.merges[first:first + n], start=first):
        cells = [chips_html([(a, tok.token_bytes(a))]), "+", chips_html([(b, tok.token_bytes(b))]), "→",
                 chips_html([(new, tok.token_bytes(new))])]
        rows.append(f"<tr><td style='color:#777'>#{k + 1}</td>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "<table style='border-collapse:collapse'>" + "".join(rows) + "</table>"


def merge_explorer(tok: BPETokenizer, sample: str):
    """A vocabulary-size slider: the sample text re-tokenized with only the first merges."""
    import ipywidgets as widgets

    if tok.merges is None:
        raise ValueError("merge_explorer needs a tokenizer trained with BPETokenizer.train")
    top = 256 + len(tok.merges)
    size = widgets.IntSlider(value=min(300, top), min=256, max=top, step=1, description="vocab size",
                             continuous_update=False, layout=widgets.Layout(width="60%"))
    out = widgets.HTML()

    def redraw(_=None):
        small = tok.truncated(size.value)
        pieces = token_pieces(small, sample)
        n_bytes = len(sample.encode("utf-8"))
        newest = max(0, size.value - 256 - 8)
        out.value = (f"<b>{len(pieces)} tokens</b> for {n_bytes} bytes "
                     f"({n_bytes / max(1, len(pieces)):.2f} bytes/token)<br>{chips_html(pieces)}"
                     f"<br><b>newest merges</b>{merges_table_html(tok, newest, size.value - 256 - newest)}")
    size.observe(redraw, names="value")
    redraw()
    return widgets.VBox([size, out])


# ---------------------------------------------------------------------------
# Languages
# ---------------------------------------------------------------------------
def language_counts(tokenizers: Mapping[str, object], texts: Mapping[str, str] = UDHR_ARTICLE_1) -> dict[str, dict[str, int]]:
    """{tokenizer: {language: token count}}."""
    return {name: {lang: count_tokens(tok, t) for lang, t in texts.items()} for name, tok in tokenizers.items()}


def language_figure(counts: Mapping[str, Mapping[str, int]], relative_to: str | None = "English") -> go.Figure:
    """Grouped bars: tokens per language for each tokenizer (as a multiple of ``relative_to``)."""
    fig = go.Figure()
    for name, per_lang in counts.items():
        langs = list(per_lang)
        if relative_to is not None and relative_to not in per_lang:
            raise ValueError(f"relative_to={relative_to!r} is not one of the languages {langs}")
        base = per_lang[relative_to] if relative_to else 1
        fig.add_trace(go.Bar(name=name, x=langs, y=[per_lang[l] / base for l in langs],
                             customdata=[per_lang[l] for l in langs],
                             hovertemplate="%{x}: %{customdata} tokens (%{y:.1f}x)<extra>" + name + "</extra>"))
    fig.update_layout(title="The same sentence costs different numbers of tokens", barmode="group", height=420,
                      yaxis_title=f"tokens, as a multiple of {relative_to}" if relative_to else "tokens",
                      margin=dict(l=60, r=20, t=50, b=60))
    return fig


# ---------------------------------------------------------------------------
# Exercise checkers (notebook 01). Each raises AssertionError with a helpful message.
# ---------------------------------------------------------------------------
def check_merge(fn: Callable[[list[int], tuple[int, int], int], list[int]]) -> None:
    """Exercise: one BPE merge step ``merge(ids, pair, new_id)``."""
    cases = [([1, 2, 3, 1, 2], (1, 2), 99, [99, 3, 99]),
             ([5, 5, 5], (5, 5), 7, [7, 5]),
             ([5, 5, 5, 5], (5, 5), 7, [7, 7]),
             ([1, 2], (2, 1), 9, [1, 2]),
             ([], (1, 2), 9, []),
             ([3], (3, 3), 9, [3])]
    for ids, pair, new, want in cases:
        got = fn(list(ids), pair, new)
        assert list(got) == want, (f"merge({ids}, {pair}, {new}) returned {got}, expected {want}"
                                   + (" (overlapping pairs: merge left to right, and a token used in one "
                                      "merge cannot be used again)" if len(set(ids)) == 1 else ""))
    rng = random.Random(1)
    for _ in range(200):
        ids = [rng.randint(0, 3) for _ in range(rng.randint(0, 20))]
        pair = (rng.randint(0, 3), rng.randint(0, 3))
        want = merge_pair(ids, pair, 256)
        got = fn(list(ids), pair, 256)
        assert list(got) == want, f"merge({ids}, {pair}, 256) returned {got}, expected {want}"


def check_most_frequent_pair(fn: Callable[[list[int]], tuple[int, int]]) -> None:
    """Exercise: the most frequent adjacent pair (any of the tied ones)."""
    assert tuple(fn([1, 2, 3, 1, 2])) == (1, 2), "in [1, 2, 3, 1, 2] the pair (1, 2) occurs twice"
    assert tuple(fn(list(b"hello hello"))) in {(104, 101), (101, 108), (108, 108), (108, 111)}, \
        "pairs are (id, id) tuples of neighbours; in 'hello hello' several pairs occur twice"
    rng = random.Random(2)
    for _ in range(100):
        ids = [rng.randint(0, 5) for _ in range(rng.randint(2, 30))]
        counts = collections.Counter(zip(ids, ids[1:]))
        got = fn(list(ids))
        got = tuple(got) if got is not None else None
        assert got in counts, f"{got} is not a pair of neighbours in {ids}"
        assert counts[got] == max(counts.values()), \
            f"{got} occurs {counts[got]} times in {ids}, but some pair occurs {max(counts.values())} times"


def check_digit_groups(fn: Callable[[str], list[str]], encoding) -> None:
    """Exercise: reproduce how cl100k cuts a digit string (``encoding`` is tiktoken's cl100k_base)."""
    rng = random.Random(3)
    examples = ["7", "42", "123", "1234", "1234567", "000123", "9876543210"]
    examples += [random_number(rng.randint(1, 15), rng) for _ in range(100)]
    for x in examples:
        want = [encoding.decode([i]) for i in encoding.encode_ordinary(x)]
        got = fn(x)
        assert list(got) == want, f"for {x!r} you returned {got}; cl100k cuts it into {want}"


def check_token_predictions(predictions: Mapping[str, int], encoding) -> None:
    """Exercise: predict token counts; every prediction must match ``encoding`` exactly."""
    if not predictions:
        raise AssertionError("fill in at least one prediction")
    if any(v is None for v in predictions.values()):
        raise NotImplementedError
    wrong = {t: (p, len(encoding.encode_ordinary(t))) for t, p in predictions.items()
             if p != len(encoding.encode_ordinary(t))}
    assert not wrong, "; ".join(f"{t!r}: you said {p}, it is {a}" for t, (p, a) in wrong.items())


# ---------------------------------------------------------------------------
# Pre-tokenization chunks and next-token peeks
# ---------------------------------------------------------------------------
def chunks_html(chunks: Sequence[str]) -> str:
    """Regex pre-tokenization chunks as chips (merges never cross a chip border)."""
    return chips_html([(k, c.encode("utf-8")) for k, c in enumerate(chunks)])


def next_token_top(model, tokenizer, prompt: str, k: int = 5) -> list[tuple[str, float]]:
    """The ``k`` most likely next tokens of a model, as (token text, probability)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
        raise ValueError(f"k must be an integer from 1 to 100, got {k!r}")
    model = lm.wrap(model, tokenizer)
    top = model.next_logits(prompt)[1].softmax(-1).topk(k)
    return [(model.decode([i]), p) for p, i in zip(top.values.tolist(), top.indices.tolist())]


def token_probability(model, tokenizer, prompt: str, token_text: str) -> float:
    """Probability that the next token is exactly the single token spelling ``token_text``."""
    ids = encode(tokenizer, token_text)
    if len(ids) != 1:
        raise ValueError(f"{token_text!r} is {len(ids)} tokens for this tokenizer; pass a single-token text")
    return float(lm.wrap(model, tokenizer).next_logits(prompt)[1].softmax(-1)[ids[0]])


# ---------------------------------------------------------------------------------------------
# Ids across tokenizers, digits after a space, chat templates
# ---------------------------------------------------------------------------------------------


def ids_figure(tokenizers: Mapping[str, object], texts: Sequence[str], title: str = "Token ids") -> go.Figure:
    """Grouped bars: for each text (x) and tokenizer (colour), the number of tokens; each bar is
    labelled with the token ids themselves, so equal-looking texts show their different ids."""
    if not texts:
        raise ValueError("texts must contain at least one string")
    fig = go.Figure()
    labels = [repr(t) for t in texts]
    for k, (name, tok) in enumerate(tokenizers.items()):
        ids = [encode(tok, t) for t in texts]
        fig.add_trace(go.Bar(name=name, x=labels, y=[len(i) for i in ids], marker_color=CHIP_COLORS[k % len(CHIP_COLORS)],
                             text=[" ".join(map(str, i)) for i in ids], textposition="inside", insidetextanchor="middle",
                             hovertemplate=f"{html.escape(name)}<br>%{{x}}: %{{y}} token(s)<br>ids %{{text}}<extra></extra>"))
    fig.update_layout(title=title, barmode="group", yaxis_title="tokens (bar labels: the ids)", height=420,
                      margin=dict(l=60, r=20, t=50, b=60), uniformtext=dict(minsize=8, mode="show"))
    return fig


def vocab_size(tokenizer) -> int:
    """Number of ids of any course tokenizer (tiktoken and the course BPE: ``n_vocab``; Hugging Face: ``len``)."""
    return getattr(tokenizer, "n_vocab", None) or len(tokenizer)


def cross_decode(ids: Sequence[int], tokenizers: Mapping[str, object]) -> dict[str, str]:
    """What each tokenizer's decoder makes of the same ids (tokenizers too small for the largest id are skipped)."""
    out = {}
    for name, tok in tokenizers.items():
        if max(ids) < vocab_size(tok):
            out[name] = tok.decode(list(ids))
    return out


def digit_probability(model, tokenizer, prompt: str) -> float:
    """Probability that the next token is one of the single-digit tokens 0-9."""
    try:
        ids = [encode(tokenizer, d) for d in "0123456789"]
    except (ValueError, KeyError):
        ids = []
    if len(ids) != 10 or any(len(i) != 1 for i in ids):
        raise ValueError("this tokenizer does not have one token per digit")
    probs = lm.wrap(model, tokenizer).next_logits(prompt)[1].softmax(-1)
    return float(sum(probs[i[0]] for i in ids))


def ids_html(tokenizer, ids: Sequence[int]) -> str:
    """Chips for a list of ids (with each id under its chip), e.g. a chat template's special tokens."""
    return chips_html([(i, tokenizer.decode([i]).encode("utf-8")) for i in ids], show_ids=True)
