"""Companion of ``notebooks/12_context.ipynb``: the context is the program.

A country -> continent task built offline from the ``countryinfo`` package, few-shot prompts in
several formats, answers scored by log-probability (never generated) with the demonstrations'
KV cache shared by every question (:meth:`course_utils.lm.HFModel.prefix_next_logprobs`),
contextual calibration (Zhao et al. 2021), label, distraction and position experiments, system
prompts, the prompt-builder widget and the exercise checkers. The majority-label and recency biases
live in :mod:`.context_bias`, the probes beyond classification in :mod:`.context_probes`.
"""
from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from .. import plots
from ..lm import HFModel, LanguageModel

LABELS = ("Africa", "Americas", "Asia", "Europe")
# countries on two continents, or a name the package keeps twice
AMBIGUOUS = {"Russia", "Turkey", "Kazakhstan", "Azerbaijan", "Georgia", "Egypt", "Burma",
             "Serbia and Montenegro", "Armenia", "Cyprus"}
FORMATS = {                                   # format name -> (demonstration, question); label follows
    "colon": ("{country}: {label}\n", "{country}:"),
    "arrow": ("{country} => {label}\n", "{country} =>"),
    "Q/A": ("Q: {country}\nA: {label}\n", "Q: {country}\nA:"),
    "sentence": ("{country} is in {label}.\n", "{country} is in"),
}
INSTRUCTION = "Continent of each country (Africa, Americas, Asia or Europe).\n"
CONTENT_FREE = "N/A"                          # Zhao et al.'s content-free input


@dataclass(frozen=True)
class Example:
    country: str
    label: str


# ------------------------------------------------------------------ data
def countries(min_population: int = 4_000_000) -> list[Example]:
    """Countries of four continents from ``countryinfo`` (offline), largest first, one continent each."""
    import countryinfo

    rows = []
    for c in countryinfo.all_countries():
        try:
            name, region, pop = c.name(), c.region(), c.population() or 0
        except Exception:                     # a few entries lack a field
            continue
        if region in LABELS and pop >= min_population and name not in AMBIGUOUS and name.isascii():
            rows.append((pop, name, region))
    return [Example(n, r) for _, n, r in sorted(rows, reverse=True)]


def split(n_pool: int = 2, n_test: int = 6, seed: int = 0) -> tuple[list[Example], list[Example]]:
    """(demonstration pool, test set): ``n_pool`` and ``n_test`` countries per continent, disjoint."""
    rng = random.Random(seed)
    pool, test = [], []
    for label in LABELS:
        mine = [e for e in countries() if e.label == label]
        if len(mine) < n_pool + n_test:
            raise ValueError(f"only {len(mine)} countries in {label}, asked for {n_pool} + {n_test}")
        picked = rng.sample(mine[: 2 * (n_pool + n_test)], n_pool + n_test)
        pool += picked[:n_pool]
        test += picked[n_pool:]
    rng.shuffle(pool)
    return pool, test


# ------------------------------------------------------------------ prompts
def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is not one of {list(FORMATS)}")


def few_shot_prompt(examples: Sequence[Example], fmt: str = "colon", instruction: bool = True) -> str:
    """The demonstrations in one format, with the optional instruction line first."""
    check_format(fmt)
    demo = FORMATS[fmt][0]
    return (INSTRUCTION if instruction else "") + "".join(demo.format(country=e.country, label=e.label)
                                                         for e in examples)


def question(country: str, fmt: str = "colon") -> str:
    check_format(fmt)
    return FORMATS[fmt][1].format(country=country)


def label_ids(lm: LanguageModel, space: bool = True) -> list[int]:
    """The first token of each label: with its leading space after a raw prompt, without at a chat answer's start.

    Scoring the first token is exact when the first tokens differ (checked): nothing after it can
    change which label was chosen. After a space every label is a single token in SmolLM2.
    """
    ids = [lm.encode((" " if space else "") + label)[0] for label in LABELS]
    if len(set(ids)) != len(ids):
        raise ValueError(f"the labels' first tokens must differ for {lm.name}, got {dict(zip(LABELS, ids))}")
    return ids


def label_probs(lm: LanguageModel, prefix: str, suffixes: Sequence[str], system: str | None = None,
                chat: bool = False) -> torch.Tensor:
    """P(label | prefix + suffix), renormalised over the four labels: a (len(suffixes), 4) tensor.

    Raw mode: the prefix (demonstrations) runs once and every question reuses its KV cache.
    Chat mode wraps demonstrations + question in the chat template (user turn), so the
    assistant's first token is scored; ``system=None`` lets the template insert its default.
    """
    if chat:
        if not isinstance(lm, HFModel):
            raise TypeError(f"chat mode needs a chat model (SmolLM2), got {lm.name}")
        logp = _shared_logprobs(lm, [lm.chat_ids(prefix + s, system=system) for s in suffixes])
        ids = label_ids(lm, space=False)
    elif not prefix:                          # zero-shot, no instruction: split at the shared tokens
        logp = _shared_logprobs(lm, [lm.prompt_ids(s) for s in suffixes])
        ids = label_ids(lm, space=True)
    else:
        logp = lm.prefix_next_logprobs(prefix, list(suffixes))
        ids = label_ids(lm, space=True)
    return logp[:, ids].softmax(-1)


def _shared_logprobs(lm: LanguageModel, rows: Sequence[list[int]]) -> torch.Tensor:
    """Next-token log-probs after each row of token ids, running the tokens all rows share only once."""
    n = min(len(r) for r in rows)
    common = next((i for i in range(n) if len({r[i] for r in rows}) > 1), n)
    if common == 0:                           # nothing shared: one short prompt at a time
        return torch.cat([lm.prefix_next_logprobs(r[:1], [r[1:]]) for r in rows])
    return lm.prefix_next_logprobs(rows[0][:common], [r[common:] for r in rows])


def evaluate(lm: LanguageModel, demos: Sequence[Example], test: Sequence[Example], fmt: str = "colon",
             instruction: bool = True, calibrate: bool = False, distractor: str = "") -> dict:
    """Accuracy of one few-shot prompt on the test set (+ predictions, probabilities, the content-free probs).

    ``calibrate``: contextual calibration, p ∝ p / p(content-free input) (Zhao et al. 2021).
    ``distractor``: an irrelevant sentence put right before every question.
    """
    prefix = few_shot_prompt(demos, fmt, instruction) if (demos or instruction) else ""
    suffixes = [distractor + question(e.country, fmt) for e in test] + [question(CONTENT_FREE, fmt)]
    probs = label_probs(lm, prefix, suffixes)
    probs, cf = probs[:-1], probs[-1]
    if calibrate:
        probs = calibrate_probs(probs, cf)
    pred = [LABELS[i] for i in probs.argmax(-1).tolist()]
    acc = sum(p == e.label for p, e in zip(pred, test)) / len(test)
    return dict(accuracy=acc, predictions=pred, probs=probs, content_free=cf)


def calibrate_probs(probs: torch.Tensor, content_free: torch.Tensor) -> torch.Tensor:
    """Contextual calibration (Zhao et al. 2021): W = diag(p_cf)^-1, b = 0, then renormalise."""
    q = probs / content_free
    return q / q.sum(-1, keepdim=True)


def shot_curve(lm, pool, test, shots=(0, 1, 2, 4, 8), seeds=(0, 1), fmt="colon") -> dict[int, list[float]]:
    """Accuracy with k demonstrations drawn from the pool (one draw per seed)."""
    out = {}
    for k in shots:
        out[k] = [evaluate(lm, random.Random(s).sample(pool, k), test, fmt)["accuracy"] for s in seeds]
    return out


def order_spread(lm, demos, test, formats=("colon", "arrow", "Q/A"), n_orders: int = 4, seed: int = 0) -> list[dict]:
    """Accuracy (raw and calibrated) for several orders of the same demonstrations in several formats."""
    perms = list(itertools.permutations(range(len(demos))))
    orders = random.Random(seed).sample(perms, n_orders)
    rows = []
    for fmt in formats:
        for order in orders:
            r = evaluate(lm, [demos[i] for i in order], test, fmt)
            rows.append(dict(format=fmt, order=order, accuracy=r["accuracy"],
                             calibrated=accuracy_of(calibrate_probs(r["probs"], r["content_free"]), test),
                             last=demos[order[-1]].label, predictions=r["predictions"]))
    return rows


def spread_figure(rows: Sequence[dict], title: str = "Same 4 examples, other format or order: accuracy"):
    """One dot per prompt (format x order), raw and after contextual calibration."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for i, (key, name) in enumerate((("accuracy", "raw"), ("calibrated", "calibrated"))):
        fig.add_trace(go.Scatter(x=[r["format"] for r in rows], y=[r[key] for r in rows], mode="markers", name=name,
                                 marker=dict(size=11, color=plots.PALETTE[i], opacity=0.8),
                                 text=[f"order {' '.join(str(j + 1) for j in r['order'])}" for r in rows],
                                 offsetgroup=name))
    fig.update_layout(title=title, yaxis_title="accuracy on 24 countries", yaxis_range=[0, 1.05], height=360,
                      scattermode="group")
    return fig


def accuracy_of(probs: torch.Tensor, test: Sequence[Example]) -> float:
    return sum(LABELS[i] == e.label for i, e in zip(probs.argmax(-1).tolist(), test)) / len(test)


def spread(accuracies: Sequence[float]) -> float:
    """Max minus min accuracy: how far the prompt alone moves the score."""
    if not accuracies:
        raise ValueError("no accuracies given")
    return max(accuracies) - min(accuracies)


def relabel(demos: Sequence[Example], how: str, seed: int = 0) -> list[Example]:
    """The demonstrations with correct, random or flipped (each continent -> the next one) labels."""
    if how == "correct":
        return list(demos)
    if how == "random":
        rng = random.Random(seed)
        return [Example(e.country, rng.choice(LABELS)) for e in demos]
    if how == "flipped":
        return [Example(e.country, flip(e.label)) for e in demos]
    raise ValueError(f"labels must be 'correct', 'random' or 'flipped', got {how!r}")


def flip(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % len(LABELS)]


# ------------------------------------------------------------------ the prompt builder (widget)
SYSTEMS = {"none (raw text)": None, "template default": "", "You are a geography teacher.": "You are a geography teacher.",
           "Answer with one word.": "Answer with one word."}
BUILDER_TITLE = "Prompt builder: P(continent | your prompt)"


def parse_order(text: str, n: int) -> list[int]:
    """'3 1 2' -> [2, 0, 1]: which examples (numbered from 1) in which order; repeats allowed, max 8."""
    parts = text.replace(",", " ").split()
    if len(parts) > 8 or not all(p.isdigit() and 1 <= int(p) <= n for p in parts):
        raise ValueError(f"examples must be up to 8 numbers between 1 and {n} separated by spaces, got {text!r}")
    return [int(p) - 1 for p in parts]


import html  # noqa: E402  (used by the widget's prompt box)


class PromptBuilder:
    """Choose demonstrations, their order, the format and the system prompt; see the answer distribution."""

    def __init__(self, lm: HFModel, pool: Sequence[Example], test: Sequence[Example], order: str = "1 2 3 4",
                 country: str | None = None):
        import ipywidgets as widgets
        import plotly.graph_objects as go

        self.lm, self.pool, self.test = lm, list(pool), list(test)
        self._cache: dict[tuple, dict] = {}
        names = [e.country for e in self.test]
        self.order = widgets.Text(value=order, description="examples", continuous_update=False,
                                  placeholder="e.g. 4 2 1 3")
        self.format = widgets.Dropdown(options=list(FORMATS), value="colon", description="format")
        self.system = widgets.Dropdown(options=list(SYSTEMS), value="none (raw text)", description="system prompt")
        self.country = widgets.Dropdown(options=names, value=country or names[0], description="question")
        self.calibrate = widgets.Checkbox(value=False, description="calibrate")
        self.legend = widgets.HTML(" · ".join(f"<b>{i + 1}</b> {e.country}: {e.label}" for i, e in enumerate(self.pool)))
        self.info, self.prompt_box = widgets.HTML(), widgets.HTML()
        self.fig = go.FigureWidget(go.Bar(x=list(LABELS), y=[0.0] * len(LABELS), marker_color=plots.PALETTE[0]))
        self.fig.update_layout(title=BUILDER_TITLE, yaxis_title="probability", yaxis_range=[0, 1], height=320)
        for w in (self.order, self.format, self.system, self.country, self.calibrate):
            w.observe(lambda _: self.update(), names="value")
        self.widget = widgets.VBox([self.legend, widgets.HBox([self.order, self.format]),
                                    widgets.HBox([self.system, self.country, self.calibrate]),
                                    self.fig, self.info, self.prompt_box])
        self.update()

    def result(self, order: tuple[int, ...], fmt: str, system: str) -> dict:
        """Label probabilities for every test country (and the content-free input); cached per setting."""
        key = (order, fmt, system)
        if key not in self._cache:
            demos = [self.pool[i] for i in order]
            prefix = few_shot_prompt(demos, fmt, instruction=True)
            suffixes = [question(e.country, fmt) for e in self.test] + [question(CONTENT_FREE, fmt)]
            sys = SYSTEMS[system]
            probs = label_probs(self.lm, prefix, suffixes, system=sys or None, chat=sys is not None)
            self._cache[key] = dict(probs=probs[:-1], content_free=probs[-1], prefix=prefix)
        return self._cache[key]

    def update(self) -> None:
        try:
            order = tuple(parse_order(self.order.value, len(self.pool)))
        except ValueError as exc:
            self.info.value = plots.error_html(str(exc))
            return
        r = self.result(order, self.format.value, self.system.value)
        probs = calibrate_probs(r["probs"], r["content_free"]) if self.calibrate.value else r["probs"]
        i = [e.country for e in self.test].index(self.country.value)
        p = probs[i].tolist()
        with self.fig.batch_update():
            self.fig.data[0].y = p
            self.fig.data[0].marker.color = [plots.COLORS["kept"] if l == self.test[i].label
                                             else plots.PALETTE[0] for l in LABELS]
            self.fig.layout.title.text = f"{BUILDER_TITLE}: {self.country.value} -> {LABELS[max(range(4), key=p.__getitem__)]}"
        self.info.value = (f"answer <b>{LABELS[max(range(4), key=p.__getitem__)]}</b> (right: {self.test[i].label}); "
                           f"accuracy on all {len(self.test)} test countries: <b>{accuracy_of(probs, self.test):.0%}</b>")
        shown = r["prefix"] + question(self.country.value, self.format.value)
        self.prompt_box.value = f"<pre style='font-size:85%'>{html.escape(shown)} …</pre>"


# ------------------------------------------------------------------ exercise checkers
def check_prompt(fn: Callable[[Sequence[Example], str], str]) -> None:
    """``fn(examples, country)`` must give the colon-format few-shot prompt ending in 'COUNTRY:'."""
    demos = [Example("Kenya", "Africa"), Example("Peru", "Americas"), Example("Japan", "Asia")]
    got = fn(demos, "Spain")
    want = few_shot_prompt(demos, "colon", instruction=False) + question("Spain", "colon")
    assert isinstance(got, str), f"return a str, got {type(got).__name__}"
    assert got == want, f"for 3 examples and Spain expected\n{want!r}\ngot\n{got!r}"
    assert fn([], "Chad") == "Chad:", f"with no examples the prompt is just the question, got {fn([], 'Chad')!r}"


def check_calibration(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> None:
    """``fn(p, p_cf)`` must divide by the content-free probabilities and renormalise (Zhao et al. 2021)."""
    p_cf = torch.tensor([0.1, 0.2, 0.3, 0.4])
    got = fn(p_cf.clone(), p_cf.clone())
    assert torch.allclose(torch.as_tensor(got, dtype=torch.float32), torch.full((4,), 0.25), atol=1e-5), \
        f"the content-free input itself must become uniform after calibration, got {got}"
    g = torch.Generator().manual_seed(0)
    p = torch.rand(5, 4, generator=g).softmax(-1)
    got = torch.as_tensor(fn(p, p_cf), dtype=torch.float32)
    assert got.shape == p.shape, f"keep the shape {tuple(p.shape)}, got {tuple(got.shape)}"
    assert torch.allclose(got.sum(-1), torch.ones(5), atol=1e-5), "each row must sum to 1 again"
    assert torch.allclose(got, calibrate_probs(p, p_cf), atol=1e-5), "rows do not match p / p_cf, renormalised"


def check_spread(fn: Callable[[Sequence[float]], float]) -> None:
    """``fn(accuracies)`` must give the spread: best minus worst accuracy."""
    for accs in ([0.5, 0.75, 0.625], [0.9], [0.2, 0.2, 0.8, 0.4]):
        got = fn(accs)
        assert abs(got - spread(accs)) < 1e-9, f"for {accs} expected {spread(accs):g}, got {got!r}"


# Loss by position, the fact's depth, system prompts and changed answers, and the majority-label and recency
# biases, live in sibling modules; re-exported here (at the end: they use Example above) so the notebook keeps
# one alias, ``lab``.
from .context_probes import *  # noqa: E402,F401,F403
from .context_bias import *  # noqa: E402,F401,F403  (majority-label and recency biases, Zhao et al. 2021)
