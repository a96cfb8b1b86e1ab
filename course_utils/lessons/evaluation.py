"""Companion of ``notebooks/15_evaluation.ipynb``: how do we know a model is any good?

Perplexity on two kinds of text, BLEU / ROUGE-L on answers built to fool them, SmolLM2 as a judge
(position and length bias, read from the log-probabilities of its verdict tokens, no generation),
a contaminated benchmark and how a perplexity gap gives it away, and pass@k.
The metrics themselves live in :mod:`course_utils.metrics`; sections 4 and 5 (contamination, pass@k) in
:mod:`course_utils.lessons.evaluation_contamination`, re-exported here so the notebook imports one module.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from .. import metrics, plots, train
from ..model import GPT
from .evaluation_contamination import *  # noqa: F401,F403  (sections 4 and 5 of the notebook)

# ------------------------------------------------------------------------ 1. perplexity
# Modern English written for this notebook (only characters of the Shakespeare alphabet).
MODERN_TEXT = (
    "Thanks for your email. I checked the schedule this morning and the meeting with the design team "
    "has moved to Thursday at 3 pm, in the small room on the second floor. Could you send me the latest "
    "version of the slides before then? The client wants to see the new prices and the delivery dates "
    "for the online store. If the train is late again I will join the call from my phone, so please "
    "share the link in the chat. By the way, the printer is broken, so bring a laptop. Let me know if "
    "anything changes, and have a good weekend. "
    "Our app lets you book a table, order a taxi and pay your bills in a few taps. Download it for free, "
    "create an account with your email address, and turn on notifications so that you never miss an update. "
)


def shakespeare_heldout(n_chars: int = 1000) -> str:
    """The first ``n_chars`` characters (cut at a line end) of the validation split no course model trained on."""
    from ..assets import shakespeare

    text = shakespeare("full", "val")
    return text[: text.rfind("\n", 0, n_chars) + 1]


def char_model_loss(model: GPT, tokenizer, text: str) -> float:
    """Nats per character of the course char model on ``text`` (``train.full_loss``)."""
    return train.full_loss(model, torch.tensor(tokenizer.encode(text)))


@torch.inference_mode()
def lm_text_loss(lm, text: str) -> dict:
    """Loss of a :class:`course_utils.lm.LanguageModel` on ``text``: nats per token and per character.

    Every token after the first is predicted from all those before it (one forward pass).
    """
    ids = lm.encode(text)
    if len(ids) < 2:
        raise ValueError("the text needs at least two tokens")
    logp = lm.logits(torch.tensor([ids]))[0, :-1].float().log_softmax(-1)
    nll = -logp.gather(-1, torch.tensor(ids[1:])[:, None]).sum().item()
    chars = len(text) - len(lm.decode(ids[:1]))
    return {"tokens": len(ids) - 1, "nats_per_token": nll / (len(ids) - 1), "nats_per_char": nll / chars}


def perplexity_rows(char_model, char_tok, smollm2, texts: dict[str, str]) -> list[dict]:
    """One row per (model, text): perplexity per token and bits per character."""
    rows = []
    for name, text in texts.items():
        c = char_model_loss(char_model, char_tok, text)
        rows.append({"model": "Shakespeare char GPT", "text": name, "tokens": len(text),
                     "perplexity": metrics.perplexity(c), "bits_per_char": c / math.log(2)})
        s = lm_text_loss(smollm2, text)
        rows.append({"model": "SmolLM2-135M", "text": name, "tokens": s["tokens"],
                     "perplexity": metrics.perplexity(s["nats_per_token"]),
                     "bits_per_char": s["nats_per_char"] / math.log(2)})
    return rows


# ------------------------------------------------------------------------ 2. reference metrics
@dataclass(frozen=True)
class QA:
    """A question, its reference answer, a correct paraphrase and a wrong answer that copies the reference."""
    question: str
    reference: str
    paraphrase: str
    wrong: str


QA_SET = (
    QA("What is the capital of France?", "The capital of France is Paris.",
       "Paris.", "The capital of France is Lyon."),
    QA("At what temperature does water boil at sea level?", "Water boils at 100 degrees Celsius at sea level.",
       "At sea level it turns to steam once it reaches one hundred °C.",
       "Water boils at 50 degrees Celsius at sea level."),
    QA("How many legs does a spider have?", "A spider has eight legs.",
       "Eight.", "A spider has six legs."),
    QA("Which planet is closest to the Sun?", "Mercury is the planet closest to the Sun.",
       "It is Mercury.", "Jupiter is the planet closest to the Sun."),
    QA("Who wrote Romeo and Juliet?", "Romeo and Juliet was written by William Shakespeare.",
       "Shakespeare wrote it.", "Romeo and Juliet was written by Charles Dickens."),
    QA("What gas do plants absorb from the air?", "Plants absorb carbon dioxide from the air.",
       "They take in CO2.", "Plants absorb helium from the air."),
    QA("How many days are in a week?", "There are seven days in a week.",
       "A week lasts 7 days.", "There are ten days in a week."),
    QA("What is the largest ocean on Earth?", "The Pacific Ocean is the largest ocean on Earth.",
       "The Pacific is the biggest.", "The Arctic Ocean is the largest ocean on Earth."),
)


def overlap_scores(items=QA_SET) -> list[dict]:
    """BLEU and ROUGE-L of each item's paraphrase (right) and wrong answer, against its reference."""
    rows = []
    for it in items:
        for kind in ("paraphrase", "wrong"):
            answer = getattr(it, kind)
            rows.append({"question": it.question, "kind": kind, "answer": answer,
                         "bleu": metrics.bleu(answer, it.reference), "rouge_l": metrics.rouge_l(answer, it.reference)})
    return rows


def overlap_figure(rows: list[dict]):
    """Mean BLEU and ROUGE-L of the correct paraphrases and of the wrong copies."""
    groups = {}
    for kind, label in (("paraphrase", "correct paraphrase"), ("wrong", "wrong answer, same words")):
        mine = [r for r in rows if r["kind"] == kind]
        groups[label] = {m: sum(r[key] for r in mine) / len(mine) for m, key in (("BLEU", "bleu"),
                                                                                 ("ROUGE-L", "rouge_l"))}
    return plots.grouped_bars(groups, title="Reference metrics reward copying words, not being right",
                              y_title="mean score (0 to 1)", y_range=[0, 1.05], text_format="%{y:.2f}",
                              colors={"correct paraphrase": plots.PALETTE[2],
                                      "wrong answer, same words": plots.PALETTE[3]})


# ------------------------------------------------------------------------ 3. a model as the judge
JUDGE_SYSTEM = "You are a strict grader."
FILLER = (" I am completely certain of this: it is a well-known, thoroughly verified fact that every "
          "expert agrees with.")

# Zheng et al. 2023, "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena", arXiv 2306.05685v4
# (checked against the paper's text): Table 5 (MT-bench, first turn, setup S2 = non-tie votes),
# Table 2 (position bias, "default" prompt, two similar answers, order swapped), Table 3
# ("repetitive list" verbosity attack on 23 answers), section 3.4 (few-shot judge).
ZHENG_2023 = {
    "agreement_gpt4_human_S2": 0.85, "agreement_human_human_S2": 0.81,
    "agreement_gpt4_human_S1": 0.66, "agreement_human_human_S1": 0.63,
    "consistency": {"Claude-v1": 0.238, "GPT-3.5": 0.462, "GPT-4": 0.650},
    "biased_toward_first": {"Claude-v1": 0.750, "GPT-3.5": 0.500, "GPT-4": 0.300},
    "repetitive_list_failure": {"Claude-v1": 0.913, "GPT-3.5": 0.913, "GPT-4": 0.087},
    "gpt4_consistency_few_shot": 0.775,
}


def zheng_table(verdicts: dict) -> str:
    """Markdown table: Zheng et al. 2023's judges (:data:`ZHENG_2023`) next to this notebook's SmolLM2 ``verdicts``."""
    z, models = ZHENG_2023, ("Claude-v1", "GPT-3.5", "GPT-4")

    def row(label: str, key: str, ours: str) -> str:
        return f"| {label} | " + " | ".join(f"{100 * z[key][m]:.1f}%" for m in models) + f" | {ours} |"

    return "\n".join([
        "| | " + " | ".join(models) + " | SmolLM2-135M, here |", "|---|---|---|---|---|",
        row("consistency when the two answers are swapped (Table 2, default prompt)", "consistency",
            f"{100 * verdicts['consistency']:.0f}%"),
        row("biased toward the first answer (Table 2)", "biased_toward_first", f"{100 * verdicts['says_A']:.0f}% say \"A\""),
        row('fooled by a padded answer (Table 3: "repetitive list" attack, 23 answers; here: confident filler)',
            "repetitive_list_failure", f"{100 * verdicts['padded_wins']:.0f}%")])


def judge_prompt(question: str, answer_a: str, answer_b: str) -> str:
    return (f"Question: {question}\nAnswer A: {answer_a}\nAnswer B: {answer_b}\n"
            "Which answer is correct? Reply with one letter, A or B.")


class Judge:
    """SmolLM2 as a pairwise judge: the log-probabilities of its first answer token being "A" or "B".

    One forward pass over the chat-templated prompt gives both (the same numbers as
    ``lm.continuation_logprobs(ids, [[A], [B]])``, which would run the model twice).
    """

    def __init__(self, lm, system: str = JUDGE_SYSTEM):
        self.lm, self.system = lm, system
        self.tokens = [lm.encode(v) for v in ("A", "B")]
        if any(len(t) != 1 for t in self.tokens):
            raise ValueError(f"the verdicts must be single tokens, got {self.tokens}")
        self._cache: dict[tuple, tuple[float, float]] = {}

    def prompt_ids(self, question: str, answer_a: str, answer_b: str) -> list[int]:
        for name, text in (("question", question), ("answer A", answer_a), ("answer B", answer_b)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"the {name} is empty: type some text")
            if len(text) > 400:
                raise ValueError(f"the {name} has {len(text)} characters; keep it under 400")
        return self.lm.chat_ids(judge_prompt(question, answer_a, answer_b), system=self.system)

    @torch.inference_mode()
    def logprobs_many(self, triples: list[tuple[str, str, str]], batch_size: int = 8) -> list[tuple[float, float]]:
        """(log p("A"), log p("B")) for many (question, answer A, answer B), several prompts per forward pass.

        Prompts are padded on the right: a causal model's logits at a prompt's last real token never
        see the padding after it, so each verdict is exactly that of the prompt alone.
        """
        todo = [t for t in dict.fromkeys(triples) if t not in self._cache]
        for i in range(0, len(todo), batch_size):
            chunk = todo[i:i + batch_size]
            rows = [self.prompt_ids(*t) for t in chunk]
            width = max(map(len, rows))
            ids = torch.tensor([r + [r[-1]] * (width - len(r)) for r in rows])
            last = self.lm.logits(ids)[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
            logp = last.float().log_softmax(-1)
            for t, row in zip(chunk, logp):
                self._cache[t] = (row[self.tokens[0][0]].item(), row[self.tokens[1][0]].item())
        return [self._cache[t] for t in triples]

    def logprobs(self, question: str, answer_a: str, answer_b: str) -> tuple[float, float]:
        """(log p("A"), log p("B")) as the judge's first answer token."""
        return self.logprobs_many([(question, answer_a, answer_b)])[0]

    def margin(self, question: str, answer_a: str, answer_b: str) -> float:
        """log p("A") - log p("B"): > 0 means the verdict is A."""
        a, b = self.logprobs(question, answer_a, answer_b)
        return a - b


def judge_experiment(judge: Judge, items=QA_SET, filler: str = FILLER) -> dict:
    """Each item judged four ways: right answer first / second, and the wrong one padded with ``filler``.

    ``debiased`` = half the difference of the two orders' margins (swapping cancels a fixed
    preference for a position): > 0 means the judge prefers the right answer on content.
    """
    keys = ("right_first", "right_second", "padded_second", "padded_first")
    triples = []
    for it in items:
        right, wrong, padded = it.reference, it.wrong, it.wrong + filler
        triples += [(it.question, right, wrong), (it.question, wrong, right),
                    (it.question, right, padded), (it.question, padded, right)]
    lps = judge.logprobs_many(triples)
    rows = []
    for i, it in enumerate(items):
        m = {k: a - b for k, (a, b) in zip(keys, lps[4 * i:4 * i + 4])}
        m["debiased"] = (m["right_first"] - m["right_second"]) / 2
        m["debiased_padded"] = (m["padded_second"] - m["padded_first"]) / 2
        rows.append({"question": it.question, **m})
    n = len(rows)
    verdict_right = [(r["right_first"] > 0) for r in rows] + [(r["right_second"] < 0) for r in rows]
    return {
        "rows": rows,
        "accuracy": sum(verdict_right) / (2 * n),
        "says_A": sum((r["right_first"] > 0) + (r["right_second"] > 0) for r in rows) / (2 * n),
        "consistency": sum((r["right_first"] > 0) != (r["right_second"] > 0) for r in rows) / n,
        "debiased_accuracy": sum(r["debiased"] > 0 for r in rows) / n,
        "padded_wins": sum(r["debiased_padded"] < 0 for r in rows) / n,
        "mean_debiased": sum(r["debiased"] for r in rows) / n,
        "mean_debiased_padded": sum(r["debiased_padded"] for r in rows) / n,
    }


def judge_figure(result: dict):
    """Per question: the judge's content preference, plain and with the wrong answer padded."""
    rows = result["rows"]
    labels = [r["question"][:28] + ("…" if len(r["question"]) > 28 else "") for r in rows]
    fig = plots.grouped_bars({"plain wrong answer": dict(zip(labels, [r["debiased"] for r in rows])),
                              "wrong answer + confident filler": dict(zip(labels, [r["debiased_padded"]
                                                                                   for r in rows]))},
                             title="The judge's preference for the right answer, position bias removed",
                             y_title="log-odds for the right answer (swap-averaged)")
    fig.add_hline(y=0, line_color="#555")
    return fig


def score_pair(judge: Judge, question: str, reference: str, answer_a: str, answer_b: str,
               swap: bool = False) -> dict:
    """What the widget shows: BLEU, ROUGE-L of each answer against the reference, and the judge's P(verdict)."""
    first, second = (answer_b, answer_a) if swap else (answer_a, answer_b)
    la, lb = judge.logprobs(question, first, second)
    pa, pb = math.exp(la), math.exp(lb)
    p_first = pa / (pa + pb)
    p_a = 1 - p_first if swap else p_first          # probability that the judge prefers *answer A*
    return {"bleu": (metrics.bleu(answer_a, reference), metrics.bleu(answer_b, reference)),
            "rouge_l": (metrics.rouge_l(answer_a, reference), metrics.rouge_l(answer_b, reference)),
            "judge": (p_a, 1 - p_a), "shown_first": "B" if swap else "A"}


def pair_figure(scores: dict | None = None):
    """The widget's bar chart: BLEU, ROUGE-L and the judge's preference for answers A and B."""
    s = scores or {"bleu": (0, 0), "rouge_l": (0, 0), "judge": (0.5, 0.5)}
    groups = {name: {"BLEU": s["bleu"][i], "ROUGE-L": s["rouge_l"][i], "judge P(better)": s["judge"][i]}
              for i, name in enumerate(("answer A", "answer B"))}
    return plots.grouped_bars(groups, title="Scores of the two answers", y_title="score (0 to 1)",
                              y_range=[0, 1.1], text_format="%{y:.2f}")


# ------------------------------------------------------------------------ the widget
class PairExplorer:
    """Write two answers to a question: BLEU and ROUGE-L against the reference, and the judge's verdict
    (with a "swap order" toggle that shows answer B to the judge first)."""

    def __init__(self, judge: Judge, item: QA = QA_SET[0]):
        import ipywidgets as widgets

        self.judge = judge
        lay = widgets.Layout(width="640px")
        self.question = widgets.Text(value=item.question, description="question", layout=lay)
        self.reference = widgets.Text(value=item.reference, description="reference", layout=lay)
        self.answer_a = widgets.Text(value=item.paraphrase, description="answer A", layout=lay)
        self.answer_b = widgets.Text(value=item.wrong, description="answer B", layout=lay)
        self.swap = widgets.ToggleButton(value=False, description="swap order", icon="exchange",
                                         tooltip="show answer B to the judge first")
        self.info = widgets.HTML()
        self.plot = widgets.Output()     # a fresh static figure per update: renders even while the kernel is busy
        self.figure = None
        for w in (self.question, self.reference, self.answer_a, self.answer_b):
            w.continuous_update = False
            w.observe(self.update, "value")
        self.swap.observe(self.update, "value")
        self.widget = widgets.VBox([self.question, self.reference, self.answer_a, self.answer_b, self.swap,
                                    self.info, self.plot])
        self.update()

    def _score(self) -> dict | None:
        try:
            if not metrics.words(self.reference.value):
                raise ValueError("the reference has no words to compare with")
            s = score_pair(self.judge, self.question.value, self.reference.value, self.answer_a.value,
                           self.answer_b.value, swap=self.swap.value)
        except ValueError as err:
            self.info.value = plots.error_html(err)
            return None
        verdict = "A" if s["judge"][0] > 0.5 else "B"
        self.info.value = (f"The judge saw answer <b>{s['shown_first']}</b> first and prefers answer <b>{verdict}</b> "
                           f"(P = {max(s['judge']):.2f}). BLEU A/B: {s['bleu'][0]:.2f} / {s['bleu'][1]:.2f}; "
                           f"ROUGE-L A/B: {s['rouge_l'][0]:.2f} / {s['rouge_l'][1]:.2f}.")
        return s

    def update(self, _=None) -> dict | None:
        from IPython.display import display

        s = self._score()
        if s is not None:
            self.figure = pair_figure(s)
            with self.plot:
                self.plot.clear_output(wait=True)
                display(self.figure)
        return s


# ------------------------------------------------------------------------ exercise checkers
def check_clipped_precision(fn) -> None:
    """``fn(candidate_tokens, reference_tokens, n)`` -> clipped n-gram precision (one reference)."""
    cases = [("the the the the the the the".split(), "the cat is on the mat".split(), 1),
             ("the cat sat on the mat".split(), "the cat is on the mat".split(), 2),
             ("a b a b a b".split(), "a b c a b".split(), 2),
             ("x y z".split(), "a b c".split(), 1)]
    for cand, ref, n in cases:
        got, want = fn(cand, ref, n), metrics.clipped_precision(cand, [ref], n)
        assert isinstance(got, (int, float)), f"return a number, got {type(got).__name__}"
        assert abs(got - want) < 1e-9, (f"candidate {' '.join(cand)!r}, reference {' '.join(ref)!r}, n={n}: "
                                        f"expected {want:.4f}, got {got:.4f}")


def check_lcs(fn) -> None:
    """``fn(a, b)`` -> length of the longest common subsequence of two token lists."""
    rng = random.Random(0)
    cases = [("police killed the gunman".split(), "police kill the gunman".split()),
             ("the gunman kill police".split(), "police killed the gunman".split()),
             ([], ["a"]), (list("abcbdab"), list("bdcaba"))]
    cases += [([rng.choice("abc") for _ in range(rng.randint(0, 9))], [rng.choice("abc") for _ in range(rng.randint(0, 9))])
              for _ in range(20)]
    for a, b in cases:
        got, want = fn(a, b), metrics.lcs_length(a, b)
        assert got == want, f"lcs({a}, {b}): expected {want}, got {got}"


def check_pass_at_k(fn) -> None:
    """``fn(n, c, k)`` -> the unbiased pass@k estimate."""
    for n, c, k in [(10, 3, 1), (10, 3, 5), (10, 0, 3), (10, 10, 2), (20, 2, 19), (5, 4, 2), (100, 7, 50)]:
        got, want = fn(n, c, k), metrics.pass_at_k(n, c, k)
        assert isinstance(got, (int, float)), f"return a number, got {type(got).__name__}"
        assert abs(got - want) < 1e-9, f"n={n}, c={c}, k={k}: expected {want:.6f}, got {got:.6f}"
