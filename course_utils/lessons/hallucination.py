"""Companion of notebooks/11_hallucination.ipynb: confabulation on demand, confidence, a knowledge
cutoff, "I don't know" training and retrieval, on a world of invented people.

This module holds what the notebook calls: confidence measures and figures, retrieval, the SmolLM2
experiments, the ask widget and the exercise checkers. The world, its prompts, the world model's training
and checkpoint live in :mod:`course_utils.lessons.hallucination_world` (re-exported here, so the notebook
uses ``lab.<name>`` for both).

    python -m course_utils.lessons.hallucination --out course_utils/checkpoints/hallucination-world

re-trains the shipped checkpoint (``hallucination_world.main``).
"""
from __future__ import annotations

import random

import numpy as np
import torch

from ..retrieval import BM25
from ..tokenizers import WordTokenizer
from .hallucination_world import (  # noqa: F401  (re-exported for the notebook)
    CHECKPOINT,
    CUTOFF,
    QUESTIONS,
    UNKNOWN,
    Recipe,
    World,
    answer_dists,
    answer_of,
    ask,
    closed_prompt,
    document,
    eval_metrics,
    group_report,
    load_world_model,
    main,
    make_tokenizer,
    make_world,
    open_prompt,
    question,
    save_world_model,
    train_world_model,
    training_examples,
)


# --------------------------------------------------------------------------- confidence
def auroc(scores, positive) -> float:
    """Area under the ROC curve: the probability that a random positive scores above a random negative
    (ties count half); 0.5 = the score cannot tell them apart, 1 = it always can."""
    s, y = np.asarray(scores, float), np.asarray(positive, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        raise ValueError("AUROC needs at least one positive and one negative example")
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg)))


def reliability(confidence, correct, n_bins: int = 10) -> dict:
    """Equal-width confidence bins: mean confidence, accuracy and count per bin, and the expected
    calibration error ECE = sum over bins of (n_bin / n) * |accuracy_bin - confidence_bin|."""
    c, y = np.asarray(confidence, float), np.asarray(correct, float)
    if c.shape != y.shape or not len(c) or not ((0 <= c) & (c <= 1)).all():
        raise ValueError("need equally many confidences in [0, 1] and correctness flags")
    bins = np.minimum((c * n_bins).astype(int), n_bins - 1)
    rows = [(c[bins == b].mean(), y[bins == b].mean(), int((bins == b).sum())) for b in range(n_bins) if (bins == b).any()]
    ece = sum(n / len(c) * abs(acc - conf) for conf, acc, n in rows)
    return {"confidence": [r[0] for r in rows], "accuracy": [r[1] for r in rows], "count": [r[2] for r in rows],
            "ece": float(ece)}


def sample_agreement(probs: torch.Tensor, k: int = 10, seed: int = 0) -> np.ndarray:
    """SelfCheckGPT's idea for one-word answers: draw ``k`` answers at temperature 1 and measure how
    often they agree with the greedy one."""
    g = torch.Generator().manual_seed(seed)
    samples = torch.multinomial(probs, k, replacement=True, generator=g)
    return (samples == probs.argmax(-1, keepdim=True)).float().mean(-1).numpy()


def calibration_pool(model, tok, world: World, attrs=("city", "job", "year")) -> dict:
    """Answers about known (seen once or five times) and held-out unknown people, pooled over attributes."""
    rows = {"confidence": [], "correct": [], "agreement": [], "known": []}
    for attr in attrs:
        for g in ("once", "five", "heldout"):
            r = ask(model, tok, world, world.groups[g], attr)
            rows["confidence"] += r["confidence"].tolist()
            rows["correct"] += r["correct"].tolist()
            rows["agreement"] += sample_agreement(r["probs"], seed=world.seed).tolist()
            rows["known"] += [g != "heldout"] * len(r["correct"])
    return {k: np.array(v) for k, v in rows.items()}


def reliability_figure(rel: dict, title: str = "Reliability diagram: confidence vs accuracy"):
    import plotly.graph_objects as go
    fig = go.Figure([go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                                line=dict(dash="dot", color="grey")),
                     go.Scatter(x=rel["confidence"], y=rel["accuracy"], mode="lines+markers", name="world model",
                                marker=dict(size=[6 + 30 * n / max(rel["count"]) for n in rel["count"]]),
                                text=[f"{n} answers" for n in rel["count"]])])
    fig.update_layout(title=title, xaxis_title="confidence (probability of its own answer)",
                      yaxis_title="share of those answers that are right", height=400, xaxis_range=[0, 1],
                      yaxis_range=[0, 1.05], margin=dict(l=60, r=20, t=50, b=50))
    return fig


def confidence_histogram(known_conf, unknown_conf, title: str = "Confidence: known vs unknown people"):
    import plotly.graph_objects as go
    fig = go.Figure([go.Histogram(x=known_conf, name="known people", opacity=0.6, xbins=dict(start=0, end=1, size=0.05)),
                     go.Histogram(x=unknown_conf, name="unknown people (never seen)", opacity=0.6,
                                  xbins=dict(start=0, end=1, size=0.05))])
    fig.update_layout(title=title, barmode="overlay", xaxis_title="probability of its own answer",
                      yaxis_title="answers", height=360, margin=dict(l=60, r=20, t=50, b=50))
    return fig


# --------------------------------------------------------------------------- retrieval
class DocumentStore:
    """One document per known or unknown person (readers excluded), searched with BM25."""

    def __init__(self, world: World):
        self.people = [p for g in ("once", "five", "abstain", "heldout") for p in world.groups[g]]
        self.docs = [document(p) for p in self.people]
        self.index = BM25(self.docs)

    def retrieve(self, q: list[str]) -> tuple[int, float]:
        return self.index.top(q, k=1)[0]


def rag_report(model, tok, world: World, store: DocumentStore, attr: str = "city", seed: int = 0) -> dict:
    """Recall@1, closed- vs open-book accuracy, and how often a wrong (counterfactual) document wins."""
    people = world.groups["five"] + world.groups["heldout"]
    hits = [store.retrieve(question(p, attr))[0] for p in people]
    recall = float(np.mean([store.people[h] == p for h, p in zip(hits, people)]))
    out = {"recall_at_1": recall}
    for g in ("five", "heldout"):
        ps = world.groups[g]
        docs = [store.docs[store.retrieve(question(p, attr))[0]] for p in ps]
        out[f"closed_{g}"] = float(ask(model, tok, world, ps, attr)["correct"].mean())
        out[f"open_{g}"] = float(ask(model, tok, world, ps, attr, docs=docs)["correct"].mean())
    rng = random.Random(seed)
    ps = world.groups["five"]
    values = sorted({answer_of(p, attr) for p in world.people})
    wrong = [rng.choice([v for v in values if v != answer_of(p, attr)]) for p in ps]
    key = {"year": "year"}.get(attr, attr)
    docs = [document(p, **{key: w}) for p, w in zip(ps, wrong)]
    r = ask(model, tok, world, ps, attr, docs=docs)
    out["follows_wrong_doc"] = float(np.mean([a == w for a, w in zip(r["answers"], wrong)]))
    out["keeps_memory"] = float(r["correct"].mean())
    return out



# --------------------------------------------------------------------------- SmolLM2
ABSTAIN_WORDS = ("not", "no", "unknown", "sorry", "fictional", "fictitious", "there", "a", "an", "the", "none",
                 "unclear", "i", "it", "this", "that", "non")
COUNTRY_SUFFIXES = ("ia", "land", "stan", "ora", "ania", "ovia")


def real_countries(n: int = 40) -> list[tuple[str, str]]:
    """The ``n`` most populous countries of the ``countryinfo`` package (offline) with a one-word-name capital."""
    import countryinfo

    rows = []
    for c in countryinfo.all_countries():
        try:
            name, capital, pop = c.name(), c.capital(), c.population() or 0
        except Exception:  # a few entries lack fields
            continue
        if capital and name and " " not in name and pop:
            rows.append((pop, name.title() if name.islower() else name, capital))
    rows.sort(reverse=True)
    if len(rows) < n:
        raise ValueError(f"countryinfo has only {len(rows)} usable countries, asked for {n}")
    return [(name, capital) for _, name, capital in rows[:n]]


def invented_countries(n: int = 40, seed: int = 0) -> list[str]:
    """Country names that exist nowhere: an invented name word and a country-like ending."""
    from ..world import name_word

    rng, out = random.Random(seed), []
    while len(out) < n:
        w = name_word(rng)[:-1] + rng.choice(COUNTRY_SUFFIXES)
        if w not in out:
            out.append(w)
    return out


def _fold(text: str) -> str:
    import unicodedata
    return "".join(ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)).lower()


@torch.inference_mode()
def smol_answers(lm, user_messages: list[str], prefills: list[str], max_new_tokens: int = 4,
                 system: str = "Answer in one short sentence.") -> list[dict]:
    """Greedy answers of SmolLM2 (its chat template; the answer's first words ``prefill`` ed), batched with
    left padding: the text and the probability of its first token (the confidence)."""
    tok = lm.tokenizer
    rows = [lm.chat_ids(m, system=system) + lm.encode(p) for m, p in zip(user_messages, prefills)]
    L = max(map(len, rows))
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    ids = torch.tensor([[pad] * (L - len(r)) + r for r in rows])
    mask = (torch.arange(L)[None] >= torch.tensor([L - len(r) for r in rows])[:, None]).long()
    out = lm.model.generate(ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                            output_scores=True, return_dict_in_generate=True, pad_token_id=pad)
    first = out.scores[0].float().softmax(-1)
    conf = first.gather(-1, out.sequences[:, L:L + 1])[:, 0]
    texts = [tok.decode(r, skip_special_tokens=True).strip() for r in out.sequences[:, L:]]
    return [{"text": t, "confidence": float(c)} for t, c in zip(texts, conf)]


def gives_a_name(text: str) -> bool:
    """Does the answer start with a proper name (a capitalised word that is not an abstention)?"""
    words = text.replace(",", " ").replace(".", " ").split()
    return bool(words) and words[0][:1].isupper() and words[0].lower() not in ABSTAIN_WORDS


def country_experiment(lm, n: int = 40, seed: int = 0) -> dict:
    """SmolLM2 on the capitals of ``n`` real and ``n`` invented countries."""
    real, fake = real_countries(n), invented_countries(n, seed)
    names = [c for c, _ in real] + fake
    res = smol_answers(lm, [f"What is the capital of {c}?" for c in names], [f"The capital of {c} is" for c in names])
    for r, c in zip(res, names):
        r["country"] = c
    real_res, fake_res = res[:n], res[n:]
    for r, (_, cap) in zip(real_res, real):
        r["truth"] = cap
        r["correct"] = _fold(r["text"]).startswith(_fold(cap.split()[0]))
    return {"real": real_res, "invented": fake_res,
            "accuracy_real": float(np.mean([r["correct"] for r in real_res])),
            "named_invented": float(np.mean([gives_a_name(r["text"]) for r in fake_res])),
            "auroc_real_vs_invented": auroc([r["confidence"] for r in res], [True] * n + [False] * n)}


def smol_rag(lm, world: World, n: int = 20, seed: int = 0) -> dict:
    """SmolLM2 on invented people: closed-book vs with their document, and with a wrong document."""
    rng = random.Random(seed)
    ps = world.groups["heldout"][:n]
    cities = sorted({p.city for p in world.people})
    wrong = [rng.choice([c for c in cities if c != p.city]) for p in ps]
    q = [f"Where does {p.full_name} live?" for p in ps]
    pre = [f"{p.full_name} lives in" for p in ps]
    text = lambda p, city: " ".join(document(p, city=city)).replace(" ,", ",").replace(" .", ".")  # noqa: E731
    closed = smol_answers(lm, q, pre)
    opened = smol_answers(lm, [f"{text(p, p.city)}\n\n{x}" for p, x in zip(ps, q)], pre)
    counter = smol_answers(lm, [f"{text(p, w)}\n\n{x}" for p, w, x in zip(ps, wrong, q)], pre)
    hit = lambda rs, targets: float(np.mean([_fold(r["text"]).startswith(_fold(t)) for r, t in zip(rs, targets)]))  # noqa: E731
    return {"closed": hit(closed, [p.city for p in ps]), "open": hit(opened, [p.city for p in ps]),
            "follows_wrong_doc": hit(counter, wrong), "examples": list(zip(ps, closed, opened))}



# --------------------------------------------------------------------------- the widget
ASK_TITLE = "What the world model answers (top 5)"


def parse_question(text: str, tok: WordTokenizer) -> tuple[list[str], str]:
    """("where does Hilvor Mornelka live ?") -> (question words, attribute); a clear ValueError otherwise."""
    words = (text or "").replace("?", " ?").split()
    if not words:
        raise ValueError("the question is empty: type e.g. 'where does Hilvor Mornelka live ?'")
    for attr, template in QUESTIONS.items():
        t = template.split()
        if len(words) == len(t) + 1 and words[:t.index("{n}")] == t[:t.index("{n}")] and words[-2:] == t[-2:]:
            unknown = [w for w in words if w not in tok.stoi]
            if unknown:
                raise ValueError(f"words this model has never seen: {unknown} (names are case-sensitive)")
            return words, attr
    forms = "; ".join(t.replace("{n}", "FIRST LAST") for t in QUESTIONS.values())
    raise ValueError(f"unknown question format {text!r}; ask one of: {forms}")


class AskWidget:
    """Ask the world model about anyone, with retrieval off or on: its answer, confidence and the document."""

    def __init__(self, model, tok, world: World, store: DocumentStore):
        import ipywidgets as widgets
        import plotly.graph_objects as go

        self.model, self.tok, self.world, self.store = model, tok, world, store
        labels = {"once": "known, seen once", "five": "known, seen 5 times", "abstain": "unknown",
                  "heldout": "unknown"}
        opts = [(f"{p.full_name} ({labels[g]})", p.full_name) for g in ("five", "once", "heldout")
                for p in world.groups[g][:8]]
        self.person = widgets.Dropdown(options=opts, description="person:", layout=widgets.Layout(width="420px"))
        self.text = widgets.Text(description="question:", layout=widgets.Layout(width="520px"))
        self.retrieval = widgets.Checkbox(value=False, description="retrieval (BM25 document in the prompt)")
        self.note = widgets.HTML()
        self.fig = go.FigureWidget(go.Bar(x=[], y=[], marker_color=[]))
        self.fig.update_layout(title=ASK_TITLE, yaxis_title="probability", yaxis_range=[0, 1], height=330,
                               margin=dict(l=60, r=20, t=50, b=60))
        self.person.observe(self._pick, "value")
        self.text.observe(self.update, "value")
        self.retrieval.observe(self.update, "value")
        self._pick()
        self.widget = widgets.VBox([self.person, self.text, self.retrieval, self.note, self.fig])

    def _pick(self, _=None):
        self.text.value = " ".join(question(self.person.value, "city"))

    def update(self, _=None):
        from ..plots import error_html
        try:
            q, attr = parse_question(self.text.value, self.tok)
        except ValueError as err:
            self.note.value = error_html(err)
            return
        doc_html = "retrieval off: closed book"
        if self.retrieval.value:
            i, score = self.store.retrieve(q)
            doc = self.store.docs[i]
            prompt = open_prompt(doc, q)
            doc_html = f"retrieved document (BM25 score {score:.2f}): <i>{' '.join(doc)}</i>"
        else:
            prompt = closed_prompt(q)
        probs = answer_dists(self.model, self.tok, [prompt])[0]
        top = probs.topk(5)
        words = [self.tok.symbols[i] for i in top.indices.tolist()]
        person = self.world.by_name(" ".join(q[2:4]))          # every question form has the name at 2:4
        truth = answer_of(person, attr) if person else None
        with self.fig.batch_update():
            self.fig.data[0].x = words
            self.fig.data[0].y = top.values.tolist()
            self.fig.data[0].marker.color = ["#59a14f" if w == truth else "#e15759" for w in words]
        who = ("not in this world at all" if person is None else
               {"once": "known (seen once)", "five": "known (seen five times)", "abstain": "unknown (after the cutoff)",
                "heldout": "unknown (after the cutoff)", "readers": "only ever seen in a document"}[self.world.group_of(person)])
        self.note.value = (f"Answer: <b>{words[0]}</b> with probability {top.values[0]:.0%}. "
                           f"The right answer: <b>{truth or 'none: nobody of that name exists'}</b>. "
                           f"This person is {who}.<br>{doc_html}")


# --------------------------------------------------------------------------- exercise checkers
def check_ece(fn) -> None:
    """Exercise: expected calibration error, compared with :func:`reliability` on fixed and random data."""
    rng = np.random.default_rng(0)
    cases = [([0.95, 0.9, 0.85, 0.3], [1, 1, 0, 0])]
    cases += [(rng.uniform(0, 1, 50).tolist(), rng.integers(0, 2, 50).tolist()) for _ in range(3)]
    for conf, corr in cases:
        got, want = fn(conf, corr, 10), reliability(conf, corr, 10)["ece"]
        assert got is not None and abs(float(got) - want) < 1e-6, \
            f"for confidences {np.round(conf[:4], 2).tolist()}... expected ECE {want:.4f}, got {got}"


def check_bm25_term(fn) -> None:
    """Exercise: one term's BM25 contribution, against :class:`course_utils.retrieval.BM25`."""
    docs = ["a b b c", "a c", "b d d d e", "e"]
    store = BM25(docs, k1=1.5, b=0.75)
    for term in "abcde":
        j = store.vocab[term]
        for d in range(len(docs)):
            tf = int(store.tf[d, j])
            want = store.scores([term])[d]
            got = fn(tf, int((store.tf[:, j] > 0).sum()), len(docs), float(store.lengths[d]), store.avgdl, 1.5, 0.75)
            assert got is not None and abs(float(got) - want) < 1e-6, \
                f"term {term!r} in document {docs[d]!r} (tf={tf}): expected {want:.4f}, got {got}"


def check_abstain(fn) -> None:
    """Exercise: answer only above a confidence threshold."""
    answers, conf = ["Pelquinax", "Ostyode", "Umbaraique", "Calfenum"], [0.9, 0.35, 0.6, 0.2]
    for t, want in ((0.5, ["Pelquinax", UNKNOWN, "Umbaraique", UNKNOWN]), (0.0, answers), (0.95, [UNKNOWN] * 4),
                    (0.6, ["Pelquinax", UNKNOWN, "Umbaraique", UNKNOWN])):
        got = fn(answers, conf, t)
        assert list(got or []) == want, f"threshold {t}: expected {want}, got {got}"


def abstain(answers, confidence, threshold: float) -> list[str]:
    """Keep an answer when its confidence is at least ``threshold``, else say "unknown"."""
    return [a if c >= threshold else UNKNOWN for a, c in zip(answers, confidence)]


def selective_curve(pool: dict, thresholds=np.linspace(0, 1, 21)) -> dict:
    """For each threshold: share of questions answered, and accuracy of the answered ones."""
    c, y = pool["confidence"], pool["correct"]
    answered = [float((c >= t).mean()) for t in thresholds]
    acc = [float(y[c >= t].mean()) if (c >= t).any() else float("nan") for t in thresholds]
    return {"threshold": list(map(float, thresholds)), "answered": answered, "accuracy": acc}


if __name__ == "__main__":
    main()
