"""Companion of notebooks/10_preference_tuning.ipynb: teach the Shakespeare model what "people" prefer.

"People" here is a program: a transparent lexicon of kind and unkind words (:data:`KIND`, :data:`UNKIND`)
scores a continuation (kind words minus unkind words), so every preference has a ground truth the
student can read and edit (the DPO paper's controlled-sentiment setup, arXiv 2305.18290, with a
lexicon in place of its sentiment classifier). Preference pairs come from the model's own samples:
same prompt, the better-scored sample "chosen". This module holds the data, the reward model (a
linear head on the frozen model's features, trained on pairs only), best-of-n and the widgets; DPO,
the policy-gradient loop, the sweeps and the exercise checkers live in ``preference_tuning_train``
(re-exported here, so the notebook imports one module).

    python -m course_utils.lessons.preference_tuning beta --seeds 0 1 --out course_utils/data/preference_beta_sweep.json
    python -m course_utils.lessons.preference_tuning pg --seeds 0 1 --out course_utils/data/preference_pg_curve.json
"""
from __future__ import annotations

import html
import math
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torch.nn as nn

from .. import assets, finetune, plots, train
from ..checkpoints import load_checkpoint
from ..model import GPT
from ..preference import bradley_terry_loss
from ..tokenizers import CharTokenizer

PROMPT_CHARS, RESPONSE_CHARS = 24, 40     # fixed lengths: batches need no padding, sum = 40 x mean log-prob
TEMPERATURE = 1.0
# Words the shipped model writes often enough (counted in 2,000 of its samples), kind vs unkind.
KIND = ("good", "love", "loves", "loved", "sweet", "fair", "gentle", "kind", "dear", "joy", "happy",
        "peace", "grace", "gracious", "honour", "noble", "heaven", "bless", "blessed", "friend", "friends",
        "true", "merry", "best")
UNKIND = ("death", "dead", "die", "dies", "kill", "killed", "blood", "bloody", "hate", "fear", "hell",
          "shame", "false", "foul", "vile", "villain", "curse", "cursed", "woe", "grief", "murder", "slain",
          "traitor", "plague", "poison", "fool", "mad", "sin", "war")
WORD = re.compile(r"[A-Za-z']+")


def words(text: str) -> list[str]:
    return [w.lower() for w in WORD.findall(text)]


def true_score(text: str, kind=KIND, unkind=UNKIND) -> int:
    """The ground-truth preference: number of kind words minus number of unkind words."""
    kind, unkind = set(kind), set(unkind)
    ws = words(text)
    return sum(w in kind for w in ws) - sum(w in unkind for w in ws)


def policy_model() -> tuple[GPT, CharTokenizer]:
    """The shipped 2.7 M-parameter Shakespeare model, without dropout (a run depends on its seed only)."""
    model, tok, _ = load_checkpoint("shakespeare-char")
    return finetune.without_dropout(model).eval(), tok


def prompts(tok: CharTokenizer, split: str, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` prompts of :data:`PROMPT_CHARS` characters (n, P): the start of a spoken line of a corpus
    split, cut at a word boundary (the last character is a space). Train and val splits never overlap."""
    import random

    text = assets.shakespeare("small", split)
    P = PROMPT_CHARS
    starts = [i + 1 for i in range(len(text) - P - 1) if text[i] == "\n" and text[i + 1].isupper()
              and "\n" not in text[i + 1:i + 1 + P] and text[i + P] == " " and ":" not in text[i + 1:i + 1 + P]]
    picked = random.Random(seed).sample(starts, n)
    return torch.tensor([tok.encode(text[s:s + P]) for s in picked])


@dataclass
class Samples:
    """``k`` sampled continuations of each of ``B`` prompts, with their true scores."""
    prompts: torch.Tensor      # (B, P)
    responses: torch.Tensor    # (B, k, L)
    scores: torch.Tensor       # (B, k) true scores
    texts: list[list[str]]

    def flat_responses(self) -> torch.Tensor:
        return self.responses.reshape(-1, self.responses.size(-1))


@torch.no_grad()
def sample(model: GPT, tok: CharTokenizer, prompt_ids: torch.Tensor, k: int, seed: int = 0,
           kind=KIND, unkind=UNKIND, batch: int = 256) -> Samples:
    """``k`` continuations of :data:`RESPONSE_CHARS` characters per prompt at temperature 1, scored."""
    B, P = prompt_ids.shape
    g = torch.Generator().manual_seed(seed)
    rows = prompt_ids.repeat_interleave(k, 0)
    out = torch.cat([model.generate(rows[i:i + batch], RESPONSE_CHARS, temperature=TEMPERATURE, generator=g)[:, P:]
                     for i in range(0, len(rows), batch)])
    texts = [tok.decode(r.tolist()) for r in out]
    scores = torch.tensor([true_score(t, kind, unkind) for t in texts], dtype=torch.float).view(B, k)
    return Samples(prompt_ids, out.view(B, k, -1), scores, [texts[i * k:(i + 1) * k] for i in range(B)])


@dataclass
class Pairs:
    """Preference pairs: the same prompt, a chosen and a rejected continuation (chosen scored higher)."""
    prompts: torch.Tensor      # (N, P)
    chosen: torch.Tensor       # (N, L)
    rejected: torch.Tensor     # (N, L)
    chosen_score: torch.Tensor
    rejected_score: torch.Tensor
    index: torch.Tensor        # (N, 2) flat sample index (prompt * k + sample) of chosen and rejected

    def __len__(self) -> int:
        return len(self.prompts)


def make_pairs(s: Samples, per_prompt: int = 1, seed: int = 0) -> Pairs:
    """Pairs from each prompt's samples: first the best vs the worst, then random pairs of samples
    whose scores differ (``per_prompt`` at most). Prompts whose samples all score the same give none."""
    import random

    rng = random.Random(seed)
    rows = []
    for b in range(len(s.prompts)):
        sc = s.scores[b].tolist()
        if max(sc) == min(sc):
            continue
        found = [(sc.index(max(sc)), sc.index(min(sc)))]
        others = [(i, j) for i in range(len(sc)) for j in range(len(sc)) if sc[i] > sc[j] and (i, j) != found[0]]
        found += rng.sample(others, min(per_prompt - 1, len(others)))
        rows += [(b, i, j) for i, j in found]
    b, i, j = (torch.tensor(c) for c in zip(*rows))
    k = s.scores.size(1)
    return Pairs(s.prompts[b], s.responses[b, i], s.responses[b, j], s.scores[b, i], s.scores[b, j],
                 torch.stack([b * k + i, b * k + j], 1))


# ------------------------------------------------------------------ reward model
@torch.no_grad()
def features(model: GPT, responses: torch.Tensor, batch: int = 256) -> torch.Tensor:
    """The frozen model's view of each character of a continuation: its last hidden state (after the final
    LayerNorm), reading the continuation alone. (N, L, n_embd)."""
    out = []
    for rows in responses.split(batch):
        x = model.tok_emb(rows) + model.positions(0, rows.size(1), rows.device)
        for i, block in enumerate(model.blocks):
            x, _ = block(x, None, i, False)
        out.append(model.ln_f(x))
    return torch.cat(out)


class RewardHead(nn.Module):
    """A reward model on the frozen model's :func:`features`: a small MLP scores every position, the
    reward is the sum over the continuation (features standardised with the training set's mean and
    spread). ``config`` is the backbone's, so ``train.train`` can drive it."""

    def __init__(self, config, mean: torch.Tensor, std: torch.Tensor, hidden: int = 32, seed: int = 0):
        super().__init__()
        self.config = config
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        from ..runtime import seeded
        with seeded(seed):
            self.mlp = nn.Sequential(nn.Linear(len(mean), hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp((feats - self.mean) / self.std)[..., 0].sum(-1)


def pair_accuracy(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> float:
    """Share of pairs ranked right (a tie counts half)."""
    right = (chosen_rewards > rejected_rewards).float() + 0.5 * (chosen_rewards == rejected_rewards).float()
    return right.mean().item()


def train_reward_model(train_feats: torch.Tensor, train_pairs: "Pairs", test_feats: torch.Tensor,
                       test_pairs: "Pairs", config, steps: int = 300, lr: float = 3e-3, batch_size: int = 32,
                       seed: int = 0, callback=None, progress: bool = True) -> dict:
    """Fit a :class:`RewardHead` with the Bradley-Terry loss on training pairs (features of the samples
    only: it never sees the lexicon), through ``train.train``; records held-out pair accuracy and loss."""
    flat = train_feats.reshape(-1, train_feats.size(-1))
    head = RewardHead(config, flat.mean(0), flat.std(0) + 1e-6, seed=seed)
    ci, ri = train_pairs.index[:, 0], train_pairs.index[:, 1]

    def batch_fn(g):
        idx = torch.randint(len(ci), (batch_size,), generator=g)
        return train_feats[ci[idx]], train_feats[ri[idx]]

    def loss_fn(m, batch):
        return bradley_terry_loss(m(batch[0]), m(batch[1]))

    def eval_fn(m):
        r = m(test_feats)
        rc, rr = r[test_pairs.index[:, 0]], r[test_pairs.index[:, 1]]
        return {"val_loss": bradley_terry_loss(rc, rr).item(), "accuracy": pair_accuracy(rc, rr)}

    cfg = train.TrainConfig(steps=steps, batch_size=batch_size, lr=lr, min_lr=lr / 10, warmup_steps=10,
                            weight_decay=0.0, eval_interval=max(1, steps // 10), seed=seed)
    history = train.train(head, None, None, cfg, batch_fn=batch_fn, loss_fn=loss_fn, eval_fn=eval_fn,
                          callback=callback, progress=progress, desc="reward model")
    return {"head": head.eval(), "history": history, "stopped": train.stopped_early(history)}


@torch.no_grad()
def reward_scores(head: RewardHead, feats: torch.Tensor, shape) -> torch.Tensor:
    """The reward model's score of every sample, reshaped to ``shape`` (prompts, samples)."""
    return head(feats).view(*shape)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two flattened tensors."""
    return torch.corrcoef(torch.stack([a.flatten().float(), b.flatten().float()]))[0, 1].item()


# ------------------------------------------------------------------ best-of-n
def best_of_n_kl(n: int) -> float:
    """The analytic KL(best-of-n || base) = log n - (n - 1) / n (Stiennon et al. 2020; Gao, Schulman &
    Hilton 2023): exact for distinct samples, an upper bound in general (Beirami et al. 2024, arXiv 2401.01879)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a whole number >= 1, got {n!r}")
    return math.log(n) - (n - 1) / n


def best_of_n(proxy: torch.Tensor, truth: torch.Tensor, n: int) -> dict:
    """Split each prompt's ``k`` samples into ``k // n`` groups of ``n`` and keep, in each group, the sample
    the reward model (``proxy``) scores highest: mean proxy and true score of the kept samples."""
    B, k = proxy.shape
    if not 1 <= n <= k:
        raise ValueError(f"n must be between 1 and the {k} samples per prompt, got {n}")
    g = k // n
    p, t = proxy[:, :g * n].reshape(B, g, n), truth[:, :g * n].reshape(B, g, n)
    pick = p.argmax(-1, keepdim=True)
    kept_t = t.gather(-1, pick)[..., 0]
    return {"n": n, "proxy": p.gather(-1, pick).mean().item(), "truth": kept_t.mean().item(),
            "kl_bound": best_of_n_kl(n), "kept_truth": kept_t.flatten().tolist()}


def best_of_n_curve(proxy: torch.Tensor, truth: torch.Tensor, ns=(1, 2, 4, 8, 16, 32, 64)) -> list[dict]:
    """:func:`best_of_n` for each n, with proxy and truth also in units of their spread over all samples
    (gain over n = 1), so the two can share an axis."""
    rows = [best_of_n(proxy, truth, n) for n in ns if n <= proxy.size(1)]
    sp, st = proxy.std().item(), truth.std().item()
    for r in rows:
        r["proxy_gain"] = (r["proxy"] - rows[0]["proxy"]) / sp
        r["truth_gain"] = (r["truth"] - rows[0]["truth"]) / st
    return rows


def best_of_n_figure(curve: list[dict], title: str = "Best-of-n: the reward model's score and the true score"):
    import plotly.graph_objects as go

    fig = go.Figure()
    x = [r["kl_bound"] for r in curve]
    labels = [f"n={r['n']}" for r in curve]
    for key, name, color in (("proxy_gain", "reward model's score (the proxy)", plots.PALETTE[0]),
                             ("truth_gain", "true score (the lexicon)", plots.PALETTE[2])):
        fig.add_trace(go.Scatter(x=x, y=[r[key] for r in curve], mode="lines+markers+text", name=name,
                                 text=labels if key == "proxy_gain" else None, textposition="top left",
                                 line=dict(color=color)))
    fig.update_layout(title=title, xaxis_title="KL(best-of-n || base) = log n - (n-1)/n  (nats)",
                      yaxis_title="gain over n = 1 (in standard deviations)", height=400,
                      margin=dict(l=60, r=20, t=50, b=50))
    return fig


def best_of_n_widget(proxy: torch.Tensor, truth: torch.Tensor, texts: list[list[str]], prompt_texts: list[str]):
    """A slider for n: the true scores of the kept samples against plain sampling (n = 1), and the sample
    best-of-n keeps for the first prompt."""
    import ipywidgets as widgets
    import plotly.graph_objects as go

    k = proxy.size(1)
    slider = widgets.SelectionSlider(options=[n for n in (1, 2, 4, 8, 16, 32, 64) if n <= k], value=8,
                                     description="best-of n:", continuous_update=False)
    fig = go.FigureWidget()
    example = widgets.HTML()
    lo, hi = int(truth.min()), int(truth.max())
    bins = list(range(lo, hi + 1))

    def hist(values):
        c = Counter(int(v) for v in values)
        return [c.get(b, 0) / len(values) for b in bins]

    def show(_=None):
        n = slider.value
        r, base = best_of_n(proxy, truth, n), best_of_n(proxy, truth, 1)
        new = go.Figure([go.Bar(name="plain sampling (n = 1)", x=bins, y=hist(base["kept_truth"]),
                                marker_color=plots.PALETTE[9]),
                         go.Bar(name=f"best-of-{n} by the reward model", x=bins, y=hist(r["kept_truth"]),
                                marker_color=plots.PALETTE[2])])
        new.update_layout(title=f"True score of the kept samples, best-of-{n}: mean {r['truth']:.2f} "
                                f"(plain sampling {base['truth']:.2f})",
                          xaxis_title="true score (kind words - unkind words)", yaxis_title="share of kept samples",
                          barmode="group", height=380, margin=dict(l=60, r=20, t=50, b=50))
        plots.replace_figure(fig, new)
        i = int(proxy[0, :n].argmax())
        example.value = (f"<div class='best-of-n-example'>prompt 1, best of its first {n} samples: "
                         f"<code>{html.escape(prompt_texts[0])}</code><b><code>{html.escape(texts[0][i])}</code></b> "
                         f"(reward model {proxy[0, i]:.2f}, true score {int(truth[0, i])})</div>")

    slider.observe(show, "value")
    show()
    return widgets.VBox([slider, fig, example])


def pair_html(tok: CharTokenizer, pairs: Pairs, rc: torch.Tensor, rr: torch.Tensor, rows=range(3)) -> str:
    """A few pairs with both continuations, their true scores and the reward model's scores."""
    out = ["<table class='pairs'><tr><th>prompt</th><th>chosen</th><th>rejected</th></tr>"]
    for i in rows:
        cell = lambda ids, s, r: (f"<code>{html.escape(tok.decode(ids.tolist()))}</code><br>"  # noqa: E731
                                  f"true {int(s)} | reward model {r:.2f}")
        out.append(f"<tr><td><code>{html.escape(tok.decode(pairs.prompts[i].tolist()))}</code></td>"
                   f"<td>{cell(pairs.chosen[i], pairs.chosen_score[i], rc[i])}</td>"
                   f"<td>{cell(pairs.rejected[i], pairs.rejected_score[i], rr[i])}</td></tr>")
    return "".join(out) + "</table>"


@torch.no_grad()
def logprob_token_by_token(model: GPT, prompt_ids, response_ids) -> float:
    """log pi(response | prompt) the slow way: one forward pass per response token, adding the log-probability
    of the token that actually comes next (what ``preference.sequence_logprob`` does in one pass)."""
    prompt, response = list(map(int, prompt_ids)), list(map(int, response_ids))
    total = 0.0
    for t, token in enumerate(response):
        context = torch.tensor([prompt + response[:t]])
        total += torch.log_softmax(model(context).logits[0, -1], -1)[token].item()
    return total


def word_counts(texts: list[str], lexicon=KIND) -> Counter:
    """How often each lexicon word appears in ``texts``."""
    lex = set(lexicon)
    return Counter(w for t in texts for w in words(t) if w in lex)


from .preference_tuning_train import *  # noqa: E402,F401,F403


if __name__ == "__main__":
    main()  # noqa: F405
