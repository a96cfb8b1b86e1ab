"""Notebook 10's companion, part 2: DPO and the policy-gradient loop (both through ``train.train``), the
measurements of a tuned model, the shipped sweeps and their command line, and the exercise checkers.
Imported through :mod:`course_utils.lessons.preference_tuning` (one alias, ``lab``)."""
from __future__ import annotations

import argparse
import copy
import json
import math
import pathlib
import shlex
import sys
import time

import torch

from .. import plots, rl, train
from ..model import GPT
from ..preference import bradley_terry_loss, dpo_loss, dpo_margins, sequence_logprob
from .preference_tuning import (KIND, RESPONSE_CHARS, TEMPERATURE, Pairs, features, make_pairs, pair_accuracy,
                                policy_model, prompts, reward_scores, sample, train_reward_model, true_score,
                                word_counts, words)

DATA = pathlib.Path(__file__).resolve().parents[1] / "data"


def build_data(seed: int = 0, n_train: int = 96, k_train: int = 8, n_test: int = 8, k_test: int = 64,
               train_pairs_per_prompt: int = 4, test_pairs_per_prompt: int = 16) -> dict:
    """The experiment's data for one seed: training prompts (train split) with ``k_train`` samples each and
    their pairs; held-out prompts (validation split) with ``k_test`` samples each and their pairs."""
    base, tok = policy_model()
    train_s = sample(base, tok, prompts(tok, "train", n_train, seed), k_train, seed)
    test_s = sample(base, tok, prompts(tok, "val", n_test, seed + 100), k_test, seed + 1)
    return {"base": base, "tok": tok, "train": train_s, "test": test_s,
            "train_pairs": make_pairs(train_s, train_pairs_per_prompt, seed),
            "test_pairs": make_pairs(test_s, test_pairs_per_prompt, seed + 1)}


# ------------------------------------------------------------------ DPO
@torch.no_grad()
def pair_logprobs(model: GPT, pairs: Pairs) -> tuple[torch.Tensor, torch.Tensor]:
    """log pi(chosen | prompt) and log pi(rejected | prompt) for every pair (no gradients)."""
    return sequence_logprob(model, pairs.prompts, pairs.chosen), sequence_logprob(model, pairs.prompts, pairs.rejected)


def _policy_pair_logprobs(model: GPT, prompts_: torch.Tensor, chosen: torch.Tensor, rejected: torch.Tensor):
    both = sequence_logprob(model, torch.cat([prompts_, prompts_]), torch.cat([chosen, rejected]))
    return both[:len(chosen)], both[len(chosen):]


def dpo(base: GPT, train_pairs: Pairs, test_pairs: Pairs, beta: float = 0.1, steps: int = 24, lr: float = 5e-4,
        batch_size: int = 16, seed: int = 0, eval_interval: int | None = None, eval_pairs: int = 64, callback=None,
        progress: bool = True) -> dict:
    """Fine-tune a copy of ``base`` with the DPO loss against a frozen copy of it (the reference).

    Records: ``train_loss`` (DPO loss of the steps since the last record), ``val_loss`` (held-out DPO loss;
    exactly ln 2 at step 0) and ``accuracy`` (share of ``eval_pairs`` held-out pairs, spread over the prompts, whose implicit
    reward ranks them right)."""
    keep = torch.linspace(0, len(test_pairs) - 1, min(eval_pairs, len(test_pairs))).round().long()
    test_pairs = Pairs(*(t[keep] for t in (test_pairs.prompts, test_pairs.chosen, test_pairs.rejected,
                                                   test_pairs.chosen_score, test_pairs.rejected_score, test_pairs.index)))
    policy, reference = copy.deepcopy(base), rl.frozen_copy(base)
    for p in policy.parameters():
        p.requires_grad_(True)
    ref_train, ref_test = pair_logprobs(reference, train_pairs), pair_logprobs(reference, test_pairs)

    def batch_fn(g):
        idx = torch.randint(len(train_pairs), (batch_size,), generator=g)
        return (train_pairs.prompts[idx], train_pairs.chosen[idx], train_pairs.rejected[idx],
                ref_train[0][idx], ref_train[1][idx])

    def loss_fn(m, batch):
        pc, pr = _policy_pair_logprobs(m, *batch[:3])
        return dpo_loss(pc, pr, batch[3], batch[4], beta)

    def eval_fn(m):
        pc, pr = _policy_pair_logprobs(m, test_pairs.prompts, test_pairs.chosen, test_pairs.rejected)
        margins = dpo_margins(pc, pr, ref_test[0], ref_test[1], beta)
        return {"val_loss": dpo_loss(pc, pr, ref_test[0], ref_test[1], beta).item(),
                "accuracy": pair_accuracy(margins, torch.zeros_like(margins))}   # a tie (step 0) counts half

    cfg = train.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=2,
                            weight_decay=0.0, eval_interval=eval_interval or max(1, steps // 4), seed=seed)
    t0 = time.perf_counter()
    history = train.train(policy, None, None, cfg, batch_fn=batch_fn, loss_fn=loss_fn, eval_fn=eval_fn,
                          callback=callback, progress=progress, desc=f"DPO beta={beta}")
    return {"model": policy.eval(), "reference": reference, "history": history, "seconds": time.perf_counter() - t0,
            "stopped": train.stopped_early(history)}


def repetition(texts: list[str]) -> dict:
    """Signs of reward hacking in samples: ``distinct`` (distinct words / words), ``top_word`` (the most
    frequent kind word and its share of all kind words), ``repeats`` (share of samples that use one
    kind word twice or more)."""
    ws = [words(t) for t in texts]
    flat = [w for row in ws for w in row]
    kinds = word_counts(texts, KIND)
    top, top_n = kinds.most_common(1)[0] if kinds else ("", 0)
    kind = set(KIND)
    repeats = [any(row.count(w) >= 2 for w in set(row) & kind) for row in ws]
    return {"distinct": len(set(flat)) / max(1, len(flat)), "top_word": top,
            "top_word_share": top_n / max(1, sum(kinds.values())), "repeats": sum(repeats) / len(texts)}


@torch.no_grad()
def evaluate_policy(policy: GPT, reference: GPT, tok, prompt_ids: torch.Tensor, k: int = 16, seed: int = 0) -> dict:
    """Sample ``k`` continuations per held-out prompt from ``policy``: their mean true score, the KL to the
    reference (Monte-Carlo: mean over samples of log pi(y|x) - log ref(y|x), summed over the characters,
    in nats per continuation) and :func:`repetition`."""
    s = sample(policy, tok, prompt_ids, k, seed)
    P = prompt_ids.size(1)
    ids = torch.cat([prompt_ids.repeat_interleave(k, 0), s.flat_responses()], 1)
    kl = (rl.token_logprobs(policy, ids, P) - rl.token_logprobs(reference, ids, P)).sum(1).mean().item()
    texts = [t for row in s.texts for t in row]
    return {"true_score": s.scores.mean().item(), "kl": kl, **repetition(texts), "texts": texts}


# ------------------------------------------------------------------ policy gradient (RLHF's loop)
def policy_gradient(base: GPT, tok, prompt_ids: torch.Tensor, reward: str = "reward model", head=None,
                    steps: int = 40, prompts_per_step: int = 4, group_size: int = 8, kl_coef: float = 0.05,
                    lr: float = 3e-4, seed: int = 0, eval_interval: int = 1, callback=None,
                    progress: bool = True) -> dict:
    """REINFORCE with GRPO's group-normalised advantages and a KL penalty to the frozen base (``course_utils.rl``),
    through ``train.train``. ``reward``: ``"reward model"`` (RLHF: the learned proxy ``head``) or ``"lexicon"``
    (a reward a program checks). Each record holds the on-policy batches' mean true score, reward-model
    score and KL (nats per continuation) since the last record."""
    if reward not in ("reward model", "lexicon"):
        raise ValueError(f"reward must be 'reward model' or 'lexicon', got {reward!r}")
    if reward == "reward model" and head is None:
        raise ValueError("reward='reward model' needs the trained reward head")
    policy, reference = copy.deepcopy(base), rl.frozen_copy(base)
    for p in policy.parameters():
        p.requires_grad_(True)
    P = prompt_ids.size(1)
    stash: list[dict] = []

    def batch_fn(g):
        idx = torch.randint(len(prompt_ids), (prompts_per_step,), generator=g)
        ro = rl.rollout(policy, prompt_ids[idx], lambda i, c: 0.0, group_size, RESPONSE_CHARS,
                        temperature=TEMPERATURE, generator=g, reference=reference)
        responses = ro.ids[:, P:]
        truth = torch.tensor([float(true_score(tok.decode(r.tolist()))) for r in responses])
        rm = head(features(reference, responses)) if head is not None else torch.zeros_like(truth)
        ro.rewards = rm if reward == "reward model" else truth
        ro.advantages = rl.group_advantages(ro.rewards.view(prompts_per_step, group_size)).view(-1)
        with torch.no_grad():
            kl = (rl.token_logprobs(policy, ro.ids, P) - ro.ref_logprobs).sum(1).mean().item()
        stash.append({"true_score": truth.mean().item(), "reward_model": rm.mean().item(), "kl": kl})
        return ro

    def eval_fn(m):
        if not stash:
            return {}
        out = {key: sum(r[key] for r in stash) / len(stash) for key in stash[0]}
        stash.clear()
        return out

    cfg = train.TrainConfig(steps=steps, batch_size=prompts_per_step * group_size, lr=lr, min_lr=lr, warmup_steps=0,
                            weight_decay=0.0, eval_interval=eval_interval, seed=seed)
    t0 = time.perf_counter()
    history = train.train(policy, None, None, cfg, batch_fn=batch_fn, loss_fn=lambda m, b: rl.policy_loss(m, b, kl_coef),
                          eval_fn=eval_fn, callback=callback, progress=progress, desc=f"policy gradient ({reward})")
    return {"model": policy.eval(), "reference": reference, "history": history, "seconds": time.perf_counter() - t0,
            "stopped": train.stopped_early(history)}


# ------------------------------------------------------------------ figures
def live_dpo_plot() -> plots.LivePlot:
    return plots.LivePlot({"train_loss": "DPO loss (training pairs)", "val_loss": "DPO loss (held-out pairs)",
                           "accuracy": "held-out implicit-reward accuracy"},
                          title="DPO, live", y_title="loss (nats) / share of pairs")


def live_pg_plot() -> plots.LivePlot:
    return plots.LivePlot({"true_score": "true score (lexicon)", "reward_model": "reward model's score"},
                          title="Policy gradient, live: the reward over steps", y_title="mean per continuation")


def sweep_figure(runs: list[dict], beta: float | None = None):
    """Shipped β sweep: true score against KL to the reference, one point per (β, seed); ``beta`` highlighted."""
    import plotly.graph_objects as go

    fig = go.Figure()
    betas = sorted({r["beta"] for r in runs})
    for i, b in enumerate(betas):
        rs = [r for r in runs if r["beta"] == b]
        fig.add_trace(go.Scatter(x=[r["kl"] for r in rs], y=[r["true_score"] for r in rs], mode="markers",
                                 name=f"β = {b}", marker=dict(size=16 if b == beta else 9, color=plots.PALETTE[i],
                                                              line=dict(width=2 if b == beta else 0, color="black"))))
    ref = sum(r["reference_true_score"] for r in runs) / len(runs)
    fig.add_hline(y=ref, line_dash="dot", annotation_text="reference model (mean over seeds)")
    title = "DPO: true score vs KL to the reference" + (f" (β = {beta} highlighted)" if beta is not None else "")
    fig.update_layout(title=title, xaxis_title="KL(tuned || reference), nats per continuation",
                      yaxis_title="mean true score of samples", height=400, margin=dict(l=60, r=20, t=50, b=50))
    return fig


def sweep_widget(runs: list[dict]):
    """A slider over the shipped β values: the sweep's figure with that β highlighted and a few of its samples."""
    import html

    import ipywidgets as widgets
    import plotly.graph_objects as go

    betas = sorted({r["beta"] for r in runs})
    slider = widgets.SelectionSlider(options=betas, value=betas[len(betas) // 2], description="β:",
                                     continuous_update=False)
    fig = go.FigureWidget(sweep_figure(runs, slider.value))
    out = widgets.HTML()

    def show(_=None):
        plots.replace_figure(fig, sweep_figure(runs, slider.value))
        r = next(r for r in runs if r["beta"] == slider.value)
        rows = "".join(f"<li><code>{html.escape(t)}</code></li>" for t in r["samples"][:4])
        out.value = (f"<div class='beta-samples'>β = {slider.value}, seed {r['seed']}: true score {r['true_score']:.2f}, "
                     f"KL {r['kl']:.1f} nats, distinct words {r['distinct']:.0%}, most frequent kind word "
                     f"'{html.escape(r['top_word'])}' ({r['top_word_share']:.0%} of kind words)<ul>{rows}</ul></div>")

    slider.observe(show, "value")
    show()
    return widgets.VBox([slider, fig, out])


def pg_figure(curves: list[dict]):
    """Shipped policy-gradient runs: the true score (left) and the reward model's score (right) over steps."""
    from plotly.subplots import make_subplots
    import plotly.graph_objects as go

    fig = make_subplots(rows=1, cols=2, subplot_titles=("true score (the lexicon)", "reward model's score (the proxy)"))
    for i, c in enumerate(curves):
        h = [r for r in c["history"] if "true_score" in r]
        dash = "solid" if c["reward"] == "lexicon" else "dash"
        for col, key in ((1, "true_score"), (2, "reward_model")):
            fig.add_trace(go.Scatter(x=[r["step"] for r in h], y=[r[key] for r in h], mode="lines+markers",
                                     name=f"reward = {c['reward']} (seed {c['seed']})", legendgroup=str(i),
                                     showlegend=col == 1, line=dict(color=plots.PALETTE[i % 10], dash=dash)),
                          row=1, col=col)
    fig.update_layout(title="Policy gradient (shipped runs): the batch's mean scores over steps", height=420,
                      margin=dict(l=60, r=20, t=70, b=50))
    fig.update_xaxes(title_text="step")
    return fig


# ------------------------------------------------------------------ exercises
def check_bt_loss(fn) -> None:
    """The student's ``fn(chosen_rewards, rejected_rewards)`` against the formula."""
    for c, r in (([1.0, 2.0], [0.0, 2.0]), ([-3.0], [4.0]), ([0.5, 0.1, 9.0], [0.2, 0.3, -1.0])):
        c, r = torch.tensor(c), torch.tensor(r)
        got = float(fn(c, r))
        want = bradley_terry_loss(c, r).item()
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), \
            f"rewards {c.tolist()} vs {r.tolist()}: want {want:.5f}, got {got:.5f}"


def check_dpo_loss(fn) -> None:
    """The student's ``fn(pc, pr, rc, rr, beta)`` against :func:`course_utils.preference.dpo_loss`."""
    g = torch.Generator().manual_seed(0)
    cases = [(torch.full((3,), -40.0),) * 4 + (0.1,)]
    cases += [tuple(-50 * torch.rand(4, generator=g) for _ in range(4)) + (b,) for b in (0.1, 0.5, 2.0)]
    for case in cases:
        got, want = float(fn(*case)), dpo_loss(*case).item()
        assert math.isclose(got, want, rel_tol=1e-5, abs_tol=1e-6), \
            f"beta={case[4]}: want {want:.5f}, got {got:.5f}" + (" (policy = reference should give ln 2)"
                                                                  if case is cases[0] else "")


def check_best_of_n_kl(fn) -> None:
    """The student's ``fn(n)`` against log n - (n - 1) / n."""
    from .preference_tuning import best_of_n_kl
    for n in (1, 2, 4, 16, 64, 1000):
        got, want = float(fn(n)), best_of_n_kl(n)
        assert math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), f"n={n}: want {want:.5f}, got {got:.5f}"


# ------------------------------------------------------------------ shipped sweeps
def load_results(name: str) -> dict:
    """A results file shipped with the course: ``"beta_sweep"`` or ``"pg_curve"``."""
    return json.loads((DATA / f"preference_{name}.json").read_text(encoding="utf-8"))


def beta_sweep(seeds=(0, 1), betas=(0.03, 0.1, 0.3, 1.0), steps: int = 24, save=None) -> list[dict]:
    runs = []
    for seed in seeds:
        d = build_data(seed)
        ref_eval = None
        for beta in betas:
            res = dpo(d["base"], d["train_pairs"], d["test_pairs"], beta, steps=steps, seed=seed, progress=False)
            ev = evaluate_policy(res["model"], res["reference"], d["tok"], d["test"].prompts, seed=seed + 7)
            if ref_eval is None:
                ref_eval = evaluate_policy(res["reference"], res["reference"], d["tok"], d["test"].prompts, seed=seed + 7)
            runs.append({"seed": seed, "beta": beta, "steps": steps, "accuracy": res["history"][-1]["accuracy"],
                         "reference_true_score": ref_eval["true_score"], "reference_distinct": ref_eval["distinct"],
                         **{k: v for k, v in ev.items() if k != "texts"}, "samples": ev["texts"][:8],
                         "seconds": res["seconds"]})
            print({k: v for k, v in runs[-1].items() if k != "samples"}, flush=True)
            if save is not None:
                save(runs)
    return runs


def pg_curves(seeds=(0, 1), steps: int = 40, save=None) -> list[dict]:
    curves = []
    for seed in seeds:
        d = build_data(seed)
        feats = features(d["base"], d["train"].flat_responses())
        head = train_reward_model(feats, d["train_pairs"], features(d["base"], d["test"].flat_responses()),
                                  d["test_pairs"], d["base"].config, seed=seed, progress=False)["head"]
        for reward in ("reward model", "lexicon"):
            res = policy_gradient(d["base"], d["tok"], d["train"].prompts, reward, head, steps=steps, seed=seed,
                                  eval_interval=5, progress=False)
            ev = evaluate_policy(res["model"], res["reference"], d["tok"], d["test"].prompts, seed=seed + 7)
            curves.append({"seed": seed, "reward": reward, "steps": steps, "history": res["history"],
                           "held_out": {k: v for k, v in ev.items() if k != "texts"}, "samples": ev["texts"][:8],
                           "seconds": res["seconds"]})
            print(seed, reward, curves[-1]["held_out"], flush=True)
            if save is not None:
                save(curves)
    return curves


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(prog="python -m course_utils.lessons.preference_tuning")
    p.add_argument("what", choices=["beta", "pg"], help="beta: the DPO beta sweep; pg: policy-gradient curves")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = "python -m course_utils.lessons.preference_tuning " + " ".join(
        shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    key = "runs" if args.what == "beta" else "curves"

    def save(rows):
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump({"command": command, key: rows}, f, indent=1, ensure_ascii=False)
    kw = {} if args.steps is None else {"steps": args.steps}
    rows = beta_sweep(tuple(args.seeds), save=save, **kw) if args.what == "beta" else pg_curves(tuple(args.seeds), save=save, **kw)
    return {"command": command, key: rows}
