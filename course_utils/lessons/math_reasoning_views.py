"""Notebook 13's companion, part 2: SmolLM2 on sums and zero-shot chain of thought, the figures and the
"ask the adders" widget. Imported through :mod:`course_utils.lessons.math_reasoning` (one alias, ``lab``)."""
from __future__ import annotations

import plotly.graph_objects as go

from .. import arithmetic as ar
from .. import plots
from .math_reasoning import FORMAT_NAMES, AdderConfig


# ------------------------------------------------------------------------- SmolLM2
def measure_smollm2(lm, digits=range(1, 7), n_problems: int = 8, seed: int = 0) -> dict:
    """``arithmetic.addition_accuracy`` for each number of digits, with the per-problem details."""
    out = {}
    for n in digits:
        acc, details = ar.addition_accuracy(lm, n, n_problems=n_problems, seed=seed, return_details=True)
        out[n] = {"accuracy": acc, "details": details}
    return out


def error_summary(measured: dict) -> dict:
    """Where SmolLM2's wrong answers go wrong: accuracy by number of carries, and how often each digit
    position (0 = units) is wrong among the wrong answers."""
    by_carry, wrong_at, n_wrong = {}, {}, 0
    for res in measured.values():
        for d in res["details"]:
            by_carry.setdefault(d["carries"], []).append(d["correct"])
            if not d["correct"] and d["wrong_digits"] is not None:
                n_wrong += 1
                for i in d["wrong_digits"]:
                    wrong_at[i] = wrong_at.get(i, 0) + 1
    return {"accuracy_by_carries": {c: sum(v) / len(v) for c, v in sorted(by_carry.items())},
            "wrong_digit_share": {i: wrong_at[i] / n_wrong for i in sorted(wrong_at)} if n_wrong else {},
            "n_wrong": n_wrong}


WORD_PROBLEMS = [
    ("Tom has 3 apples. He buys 5 more and then eats 2. How many apples does Tom have now?", 6),
    ("A box holds 4 pencils. How many pencils are in 3 boxes?", 12),
    ("Anna had 10 stickers. She gave 3 to Ben and 2 to Cleo. How many stickers does Anna have left?", 5),
    ("There are 7 birds on a tree. 4 fly away and then 6 more arrive. How many birds are on the tree?", 9),
]


DIRECT = " Answer with the number only."


STEP_BY_STEP = " Let's think step by step."


def last_number(text: str) -> int | None:
    import re
    found = re.findall(r"\d+", text.replace(",", ""))
    return int(found[-1]) if found else None


def zero_shot_cot(lm, problems=WORD_PROBLEMS, max_new_tokens: int = 60) -> list[dict]:
    """Each word problem asked directly (first number of the reply) and with "Let's think step by step"
    (Kojima et al. 2022; the last number of the reply), greedy, SmolLM2's default system prompt."""
    direct = ar.chat_answers(lm, [q + DIRECT for q, _ in problems], 8, system=None)
    cot = ar.chat_answers(lm, [q + STEP_BY_STEP for q, _ in problems], max_new_tokens, system=None)
    return [{"question": q, "answer": a, "direct": d, "direct_correct": ar.parse_number(d) == a,
             "direct_tokens": len(lm.encode(d)), "cot": c, "cot_correct": last_number(c) == a,
             "cot_tokens": len(lm.encode(c))}
            for (q, a), d, c in zip(problems, direct, cot)]


# --------------------------------------------------------------------------- figures
def live_accuracy_plot(formats) -> plots.LivePlot:
    return plots.LivePlot({f"acc_{f}": FORMAT_NAMES[f] for f in formats}, title="Test accuracy while training",
                          y_title="exact match on 200 held-out sums", y_range=[0, 1.02])


def relabel(live: plots.LivePlot, fmt: str):
    """A train callback that plots this run's ``accuracy`` as the series of ``fmt``."""
    return lambda record: live.update({**record, f"acc_{fmt}": record["accuracy"]})


def smollm2_figure(measured: dict, title: str = "SmolLM2-135M: exact match on n-digit additions") -> go.Figure:
    n = list(measured)
    return plots.bars([f"{k} digits" for k in n], [measured[k]["accuracy"] for k in n], title=title,
                      colors=plots.PALETTE[0], y_title="exact match", text_format="%{y:.0%}")


def curves_figure(runs: list[dict], title: str = "Accuracy against training steps, same budget") -> go.Figure:
    """Test accuracy vs steps for every format: each seed faint, the mean bold."""
    fig = go.Figure()
    formats = list(dict.fromkeys(r["config"]["fmt"] for r in runs))
    for i, fmt in enumerate(formats):
        mine = [r for r in runs if r["config"]["fmt"] == fmt]
        color = plots.PALETTE[i % len(plots.PALETTE)]
        for r in mine:
            fig.add_trace(go.Scatter(x=[h["step"] for h in r["history"]], y=[h["accuracy"] for h in r["history"]],
                                     mode="lines", line=dict(color=color, width=1), opacity=0.35,
                                     showlegend=False, hoverinfo="skip"))
        steps = [h["step"] for h in mine[0]["history"]]
        mean = [sum(r["history"][j]["accuracy"] for r in mine) / len(mine) for j in range(len(steps))]
        fig.add_trace(go.Scatter(x=steps, y=mean, mode="lines+markers", name=f"{FORMAT_NAMES[fmt]} ({len(mine)} seeds)",
                                 line=dict(color=color, width=3)))
    fig.update_layout(title=title, xaxis_title="training step", yaxis_title="exact match", yaxis_range=[0, 1.02],
                      height=400, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def mean_over_seeds(runs: list[dict], key: str) -> dict:
    """{format: {x: mean of run[key][x] over seeds}} for grouped bars."""
    out: dict = {}
    for fmt in dict.fromkeys(r["config"]["fmt"] for r in runs):
        mine = [r[key] for r in runs if r["config"]["fmt"] == fmt]
        out[FORMAT_NAMES[fmt]] = {x: sum(m[x] for m in mine) / len(mine) for x in mine[0]}
    return out


# ---------------------------------------------------------------------- tokens and widget
def token_boxes(pieces, wrong: set[int] = frozenset()) -> str:
    """Tokens as small boxes (red where ``wrong``)."""
    import html
    style = "display:inline-block;border:1px solid #999;border-radius:3px;padding:0 3px;margin:1px;font-family:monospace"
    return "".join(f"<span style='{style}{';background:#ffd7d5' if i in wrong else ''}'>{html.escape(p)}</span>"
                   for i, p in enumerate(pieces))


def formats_html(problem: ar.Problem, width: int | None = None) -> str:
    """One problem in every format: the tokens the model reads (prompt) and must write (answer)."""
    rows = []
    for fmt in ar.FORMATS:
        tok = ar.make_tokenizer(fmt)
        p, t = tok.split(ar.prompt(problem, width)), tok.split(ar.target(problem, fmt, width))
        rows.append(f"<tr><td>{FORMAT_NAMES[fmt]}</td><td>{token_boxes(p)}</td><td>{token_boxes(t)}</td>"
                    f"<td>{len(t)}</td></tr>")
    return ("<table><tr><th>format</th><th>reads</th><th>writes</th><th>tokens written</th></tr>"
            + "".join(rows) + "</table>")


def ask(runs: dict, a_text: str, b_text: str) -> str:
    """HTML: each trained adder's answer to a + b, the tokens it read and wrote, wrong digits in red,
    and the carries; a clear message for bad input."""
    max_digits = min(AdderConfig(**r["config"]).max_digits for r in runs.values())
    a_text, b_text = a_text.strip(), b_text.strip()
    for name, s in (("a", a_text), ("b", b_text)):
        if not (s.isascii() and s.isdigit()):
            return plots.error_html(f"{name} = {s!r} is not a whole number: type digits 0-9 only")
        if len(s.lstrip("0") or "0") > max_digits:
            return plots.error_html(f"{name} = {s} has more than {max_digits} digits; the adders were trained "
                                    f"on numbers of 1 to {max_digits} digits (0 to {10 ** max_digits - 1})")
    problem = ar.Problem(int(a_text), int(b_text))
    carry = "".join(map(str, ar.carries(problem.a, problem.b)))[::-1]
    rows = []
    for fmt, run in runs.items():
        cfg, tok = AdderConfig(**run["config"]), run["tokenizer"]
        text = ar.generate_answers(run["model"], tok, [problem], fmt, cfg.width)[0]
        got = ar.parse_answer(text, fmt)
        ok = got == problem.answer
        pieces = tok.split(text) if all(c in ar.ALPHABET for c in text) else list(text)
        wrong = set()
        if got is not None and not ok and fmt != "scratchpad":
            bad = ar.wrong_digits(got, problem.answer)
            digits = [i for i, p in enumerate(pieces) if p.isdigit()]
            order = digits if fmt == "reversed" else digits[::-1]     # token index of each position, units first
            wrong = {order[i] for i in bad if i < len(order)} if fmt != "chunked" else set(digits)
        verdict = "<b style='color:#1a7f37'>right</b>" if ok else "<b style='color:#cf222e'>wrong</b>"
        rows.append(f"<tr><td>{FORMAT_NAMES[fmt]}</td><td>{token_boxes(tok.split(ar.prompt(problem, cfg.width)))}</td>"
                    f"<td>{token_boxes(pieces, wrong)}</td><td>{got if got is not None else 'unreadable'}</td>"
                    f"<td>{verdict}</td></tr>")
    return (f"<p>{problem} = <b>{problem.answer}</b> &nbsp; carries (highest position first): "
            f"<code>{carry}</code> ({sum(map(int, carry))} in all)</p>"
            "<table><tr><th>model</th><th>read</th><th>wrote</th><th>answer</th><th></th></tr>"
            + "".join(rows) + "</table>")


def adder_widget(runs: dict, a: str = "478", b: str = "356"):
    """Type two numbers; see each trained adder's answer (``ask``)."""
    import ipywidgets as widgets
    box_a = widgets.Text(value=a, description="a:", continuous_update=False)
    box_b = widgets.Text(value=b, description="b:", continuous_update=False)
    out = widgets.HTML()

    def update(_=None):
        out.value = ask(runs, box_a.value, box_b.value)
    box_a.observe(update, "value")
    box_b.observe(update, "value")
    update()
    return widgets.VBox([widgets.HBox([box_a, box_b]), out])
