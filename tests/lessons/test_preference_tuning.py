"""Companion of notebook 10: the lexicon, prompts and pairs, the reward head, best-of-n against brute
force, DPO and the policy-gradient loop on the real model, the widgets, the checkers and the shipped sweeps."""
from __future__ import annotations

import math

import pytest
import torch

from course_utils.lessons import preference_tuning as lab


@pytest.fixture(scope="module")
def model_tok():
    return lab.policy_model()


def test_true_score_counts_kind_minus_unkind_words():
    assert lab.true_score("My gentle friend, good night.") == 3
    assert lab.true_score("Thou villain, thy death!") == -2
    assert lab.true_score("Good, GOOD; goodly") == 2              # whole words only, any case
    assert lab.true_score("sweet death", kind=("sweet",), unkind=()) == 1   # the lexicon is editable
    assert not set(lab.KIND) & set(lab.UNKIND)


def test_prompts_are_fixed_length_word_boundaries_and_held_out(model_tok):
    _, tok = model_tok
    tr, va = lab.prompts(tok, "train", 50, seed=0), lab.prompts(tok, "val", 50, seed=0)
    assert tr.shape == va.shape == (50, lab.PROMPT_CHARS)
    texts = [tok.decode(p.tolist()) for p in tr]
    assert all(t.endswith(" ") and "\n" not in t and t[0].isupper() for t in texts)
    assert not set(texts) & {tok.decode(p.tolist()) for p in va}
    assert torch.equal(tr, lab.prompts(tok, "train", 50, seed=0))


def _samples(scores):
    scores = torch.tensor(scores, dtype=torch.float)
    B, k = scores.shape
    responses = torch.arange(B * k * 3).view(B, k, 3)
    return lab.Samples(torch.zeros(B, 2, dtype=torch.long), responses, scores, [[""] * k for _ in range(B)])


def test_make_pairs_chosen_beats_rejected_and_indexes_the_samples():
    s = _samples([[0, 1, -1, 0], [0, 0, 0, 0], [2, 0, 0, 1]])
    pairs = lab.make_pairs(s, per_prompt=3, seed=0)
    assert len(pairs) == 6                                    # the all-equal prompt gives none
    assert (pairs.chosen_score > pairs.rejected_score).all()
    assert pairs.chosen_score[0] == 1 and pairs.rejected_score[0] == -1   # first pair: best vs worst
    flat = s.flat_responses()
    assert torch.equal(flat[pairs.index[:, 0]], pairs.chosen) and torch.equal(flat[pairs.index[:, 1]], pairs.rejected)


def test_best_of_n_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    proxy, truth = torch.randn(5, 16, generator=g), torch.randint(-2, 3, (5, 16), generator=g).float()
    assert lab.best_of_n(proxy, truth, 1)["truth"] == pytest.approx(truth.mean().item())
    full = lab.best_of_n(proxy, truth, 16)
    assert full["truth"] == pytest.approx(truth.gather(1, proxy.argmax(1, keepdim=True)).mean().item())
    four = lab.best_of_n(proxy, truth, 4)
    want = [truth[b, 4 * j + int(proxy[b, 4 * j:4 * j + 4].argmax())].item() for b in range(5) for j in range(4)]
    assert four["kept_truth"] == want
    # a perfect proxy: the truth rises monotonically with n
    curve = lab.best_of_n_curve(truth + 1e-3 * proxy, truth, ns=(1, 2, 4, 8, 16))
    assert all(a["truth"] <= b["truth"] for a, b in zip(curve, curve[1:]))
    with pytest.raises(ValueError, match="between 1 and the 16"):
        lab.best_of_n(proxy, truth, 32)


def test_best_of_n_kl_formula_and_errors():
    assert lab.best_of_n_kl(1) == 0.0
    assert lab.best_of_n_kl(64) == pytest.approx(math.log(64) - 63 / 64)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="n must"):
            lab.best_of_n_kl(bad)


def test_reward_head_sums_a_per_position_score():
    feats = torch.randn(3, 5, 8)
    head = lab.RewardHead(None, torch.zeros(8), torch.ones(8), hidden=4, seed=0)
    per_pos = head.mlp(feats)[..., 0]
    assert torch.allclose(head(feats), per_pos.sum(-1))
    assert torch.equal(lab.RewardHead(None, torch.zeros(8), torch.ones(8), 4, seed=0).mlp[0].weight, head.mlp[0].weight)
    assert lab.pair_accuracy(torch.tensor([1.0, 0.0, 2.0]), torch.tensor([0.0, 0.0, 3.0])) == pytest.approx(0.5)


def test_repetition_measures():
    r = lab.repetition(["good good good", "a fair day"])
    assert r["top_word"] == "good" and r["top_word_share"] == pytest.approx(0.75)
    assert r["repeats"] == 0.5 and r["distinct"] == pytest.approx(4 / 6)


def test_checkers_accept_the_solution_and_reject_a_wrong_answer():
    F = torch.nn.functional
    lab.check_bt_loss(lambda c, r: -F.logsigmoid(c - r).mean())
    with pytest.raises(AssertionError):
        lab.check_bt_loss(lambda c, r: -F.logsigmoid(r - c).mean())
    lab.check_dpo_loss(lambda pc, pr, rc, rr, b: -F.logsigmoid(b * ((pc - rc) - (pr - rr))).mean())
    with pytest.raises(AssertionError):   # forgot beta
        lab.check_dpo_loss(lambda pc, pr, rc, rr, b: -F.logsigmoid((pc - rc) - (pr - rr)).mean())
    lab.check_best_of_n_kl(lambda n: math.log(n) - (n - 1) / n)
    with pytest.raises(AssertionError):
        lab.check_best_of_n_kl(lambda n: math.log(n))


def test_best_of_n_widget_redraws_on_the_slider():
    g = torch.Generator().manual_seed(0)
    proxy, truth = torch.randn(2, 64, generator=g), torch.randint(-1, 2, (2, 64), generator=g).float()
    box = lab.best_of_n_widget(proxy, truth, [[f"s{i}" for i in range(64)]] * 2, ["p0 ", "p1 "])
    slider, fig, example = box.children
    before = (fig.layout.title.text, fig.data[1].y, example.value)
    slider.value = 64
    assert (fig.layout.title.text, fig.data[1].y, example.value) != before
    assert "best-of-64" in fig.layout.title.text


def test_shipped_beta_sweep_shows_the_leash():
    sweep = lab.load_results("beta_sweep")
    assert sweep["command"].startswith("python -m course_utils.lessons.preference_tuning beta")
    runs = sweep["runs"]
    seeds, betas = sorted({r["seed"] for r in runs}), sorted({r["beta"] for r in runs})
    assert len(seeds) >= 2 and len(betas) >= 3
    for seed in seeds:
        by = {r["beta"]: r for r in runs if r["seed"] == seed}
        assert by[betas[0]]["kl"] > by[betas[-1]]["kl"], f"seed {seed}: smaller beta must drift further"
        assert by[0.1]["true_score"] > by[0.1]["reference_true_score"] + 0.15, f"seed {seed}: DPO makes samples kinder"
        assert by[0.1]["accuracy"] >= 0.6
    box = lab.sweep_widget(runs)
    slider, fig, out = box.children
    before = ([t.marker.size for t in fig.data], out.value)
    slider.value = betas[0] if slider.value != betas[0] else betas[-1]
    assert ([t.marker.size for t in fig.data], out.value) != before


def test_shipped_pg_curves():
    pg = lab.load_results("pg_curve")
    assert pg["command"].startswith("python -m course_utils.lessons.preference_tuning pg")
    assert {c["reward"] for c in pg["curves"]} == {"reward model", "lexicon"}
    assert len({c["seed"] for c in pg["curves"]}) >= 2
    ref_distinct = {r["seed"]: r["reference_distinct"] for r in lab.load_results("beta_sweep")["runs"]}
    for c in pg["curves"]:       # the notebook's claims, on every shipped run
        h = [r for r in c["history"] if "true_score" in r]
        assert c["held_out"]["distinct"] < 0.75 * ref_distinct[c["seed"]]
        if c["reward"] == "lexicon":
            assert sum(r["true_score"] for r in h[-3:]) / 3 > sum(r["true_score"] for r in h[:2]) / 2 + 1.0
        else:
            assert h[-1]["reward_model"] > h[0]["reward_model"] + 5
    fig = lab.pg_figure(pg["curves"])
    assert len(fig.data) == 2 * len(pg["curves"])      # true score and reward-model score per run


@pytest.mark.slow
def test_dpo_starts_at_ln2_and_learns_on_the_real_model(model_tok):
    base, tok = model_tok
    s = lab.sample(base, tok, lab.prompts(tok, "train", 24, seed=3), 6, seed=3)
    pairs = lab.make_pairs(s, 2, seed=3)
    res = lab.dpo(base, pairs, pairs, beta=0.1, steps=6, seed=0, eval_interval=3, progress=False)
    h = res["history"]
    assert h[0]["val_loss"] == pytest.approx(math.log(2), abs=1e-5)
    assert h[0]["accuracy"] == 0.5                        # every margin is exactly 0: ties count half
    assert h[-1]["val_loss"] < h[0]["val_loss"] and h[-1]["accuracy"] > 0.5
    # the reference stays frozen, the base untouched
    assert all(not p.requires_grad for p in res["reference"].parameters())
    assert torch.equal(res["reference"].tok_emb.weight, base.tok_emb.weight)


@pytest.mark.slow
def test_policy_gradient_runs_with_a_kl_to_the_reference(model_tok):
    base, tok = model_tok
    prompt_ids = lab.prompts(tok, "train", 8, seed=0)
    res = lab.policy_gradient(base, tok, prompt_ids, "lexicon", steps=2, prompts_per_step=2, group_size=4,
                              seed=0, progress=False)
    h = [r for r in res["history"] if "kl" in r]
    assert len(h) == 2 and h[0]["kl"] == pytest.approx(0.0, abs=1e-4) and h[1]["kl"] != 0.0
    with pytest.raises(ValueError, match="reward"):
        lab.policy_gradient(base, tok, prompt_ids, "votes")
    with pytest.raises(ValueError, match="reward head"):
        lab.policy_gradient(base, tok, prompt_ids, "reward model")


@pytest.mark.slow
def test_reward_model_beats_chance_on_another_seed():
    """The notebook's claim (seed 0) on the pilot's second seed, with the notebook's thresholds."""
    d = lab.build_data(seed=1)
    tr, te = lab.features(d["base"], d["train"].flat_responses()), lab.features(d["base"], d["test"].flat_responses())
    rm = lab.train_reward_model(tr, d["train_pairs"], te, d["test_pairs"], d["base"].config, seed=1, progress=False)
    proxy = lab.reward_scores(rm["head"], te, d["test"].scores.shape)
    assert rm["history"][-1]["accuracy"] >= 0.58
    assert lab.correlation(proxy, d["test"].scores) > 0.05
    curve = lab.best_of_n_curve(proxy, d["test"].scores)
    assert curve[-1]["truth"] > curve[0]["truth"] + 0.1 and curve[-1]["proxy_gain"] > curve[-1]["truth_gain"]


def test_features_are_the_models_last_hidden_states(model_tok):
    base, tok = model_tok
    responses = torch.tensor([tok.encode("good night, sweet prince"), tok.encode("the villain, the villain!")[:24]])
    feats = lab.features(base, responses)
    with torch.no_grad():
        logits = base(responses).logits
    assert feats.shape == (2, 24, base.config.n_embd)
    assert torch.allclose(base.head(feats), logits, atol=1e-4)     # the output head reads exactly these


def test_token_by_token_logprob_agrees_with_sequence_logprob(model_tok):
    from course_utils.preference import sequence_logprob
    base, tok = model_tok
    p, r = tok.encode("My gentle lord, "), tok.encode("good night")
    assert lab.logprob_token_by_token(base, p, r) == pytest.approx(sequence_logprob(base, p, r).item(), abs=1e-3)
