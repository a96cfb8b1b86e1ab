"""Tests for course_utils.attention: hand-made attention, capture, the mask proof, head reading,
heatmaps, the induction task and the exercise checkers."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_utils.lessons import attention as lab
from course_utils.model import attention, causal_mask
from course_utils.checkpoints import load_checkpoint
from course_utils.model import GPT, GPTConfig
from course_utils.tokenizers import CharTokenizer


@pytest.fixture(scope="module")
def char_model():
    return load_checkpoint("shakespeare-char")


def tiny_model(seed=0, mlp=True):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, mlp=mlp)).eval()


def test_toy_attention_scale_and_mask():
    res = lab.toy_attention(lab.TOY_Q, lab.TOY_K, lab.TOY_V, scale=1.0, causal=True)
    assert np.isneginf(res.scores[0, 1:]).all() and res.weights[0, 0] == pytest.approx(1.0)
    assert np.allclose(res.weights.sum(1), 1)
    # a larger scale sharpens every row (lower entropy)
    ent = lambda w: -(w * np.log(w + 1e-12)).sum(1)
    soft = lab.toy_attention(lab.TOY_Q, lab.TOY_K, lab.TOY_V, scale=0.2)
    sharp = lab.toy_attention(lab.TOY_Q, lab.TOY_K, lab.TOY_V, scale=5.0)
    assert (ent(sharp.weights) < ent(soft.weights)).all()
    with pytest.raises(ValueError, match="scale must be in"):
        lab.toy_attention(lab.TOY_Q, lab.TOY_K, lab.TOY_V, scale=0)
    with pytest.raises(ValueError, match="one row per token"):
        lab.toy_attention(lab.TOY_Q[:2], lab.TOY_K, lab.TOY_V)


def test_handmade_widget_builds():
    box = lab.handmade_widget()
    assert box.children


# ----------------------------------------------------------------- capture
def test_char_attention_rows_and_errors(char_model):
    model, tok, _ = char_model
    att = lab.char_attention(model, tok, "ROMEO:\nO, she doth teach")
    L, H = model.config.n_layer, model.config.n_head
    assert att.weights.shape == (L, H, 24, 24)
    assert torch.allclose(att.weights.sum(-1), torch.ones(L, H, 24), atol=1e-5)
    assert (att.weights.triu(1) == 0).all()
    with pytest.raises(ValueError, match="empty"):
        lab.char_attention(model, tok, "")
    with pytest.raises(ValueError, match="context is 1..256"):
        lab.char_attention(model, tok, "a" * 257)
    with pytest.raises(ValueError, match="not in this model's vocabulary"):
        lab.char_attention(model, tok, "tiger 🐯")
    with pytest.raises(ValueError, match="layer must be an integer in 0..5"):
        att.head(6, 0)


def test_hf_attention_matches_a_manual_softmax():
    """Against transformers: eager weights must equal softmax(q kᵀ/√d) recomputed from the layer."""
    transformers = pytest.importorskip("transformers")
    from transformers import LlamaConfig, LlamaForCausalLM

    class Tok:
        def __call__(self, text, return_tensors=None):
            return type("E", (), {"input_ids": torch.tensor([[ord(c) % 50 for c in text]])})()

        def decode(self, ids):
            return chr(ids[0] + 50)

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg._attn_implementation = "eager"
    model = LlamaForCausalLM(cfg).eval()
    att = lab.hf_attention(model, Tok(), "hello there")
    assert att.weights.shape == (2, 4, 11, 11)
    assert torch.allclose(att.weights.sum(-1), torch.ones(2, 4, 11), atol=1e-5)
    assert (att.weights.triu(1) == 0).all()
    with pytest.raises(ValueError, match="allowed 1..5 tokens"):
        lab.hf_attention(model, Tok(), "hello there", max_tokens=5)


# ----------------------------------------------------------------- the mask
def test_forward_with_mask_switch_equals_model():
    for mlp in (True, False):
        model = tiny_model(mlp=mlp)
        idx = torch.randint(20, (2, 12), generator=torch.Generator().manual_seed(1))
        assert torch.allclose(lab.forward_with_mask_switch(model, idx), model(idx).logits, atol=1e-5)


def test_mask_identity(char_model):
    model, tok, _ = char_model
    res = lab.mask_identity(model, tok, "To be, or not to be", ": that is", "? said he")
    assert res.max_diff_model == 0.0
    assert res.max_diff_unmasked > 1e-3
    with pytest.raises(ValueError, match="identical"):
        lab.mask_identity(model, tok, "To be", "ab", "ab")


# ----------------------------------------------------------------- reading heads
def test_word_groups_and_aggregate():
    groups, labels = lab.word_groups("The cat sat")
    assert labels == ["The", " cat", " sat"] and groups[1] == [3, 4, 5, 6]
    w = np.tril(np.ones((11, 11)))
    w /= w.sum(1, keepdims=True)
    agg = lab.aggregate(w, groups)
    assert agg.shape == (3, 3) and np.allclose(agg.sum(1), 1)
    # the first word's characters only see the first word
    assert agg[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cover every position"):
        lab.aggregate(w, groups[:2])


def test_pattern_scores_find_a_planted_previous_token_head():
    T = 10
    w = torch.zeros(2, 3, T, T)
    w[..., 0, 0] = 1
    for i in range(1, T):
        w[:, :, i, :i + 1] = 1 / (i + 1)       # uniform heads
        w[1, 2, i] = 0
        w[1, 2, i, i - 1] = 1                   # one previous-token head
    att = lab.Attention(list("ab cd\nef g"), w)
    scores = lab.pattern_scores(att)
    best = {b["pattern"]: b for b in lab.best_heads(scores)}
    assert (best["previous character"]["layer"], best["previous character"]["head"]) == (1, 2)
    assert best["previous character"]["score"] == pytest.approx(1.0)
    base = lab.uniform_baseline(att)
    assert base["previous character"] == pytest.approx(float(scores["previous character"][0, 0]))
    assert base["newline"] < 0.2


def test_rank_heads():
    w = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(0))
    w[2, 1, 4, 1] = 5
    att = lab.Attention(list("abcde"), w)
    top = lab.rank_heads(att, 4, 1, top=3)
    assert top[0][:2] == (2, 1) and top[0][2] == pytest.approx(5.0)
    assert [t[2] for t in top] == sorted((t[2] for t in top), reverse=True)
    with pytest.raises(ValueError, match="cannot look there"):
        lab.rank_heads(att, 1, 4)
    assert lab.find_token(["The", " tiger", " it"], "it") == 2
    with pytest.raises(ValueError, match="no token"):
        lab.find_token(["The"], "it")


# ----------------------------------------------------------------- heatmaps
def test_heatmaps_crop_and_grid(char_model):
    model, tok, _ = char_model
    text = "First Citizen:\nBefore we proceed any further, hear me speak.\n" * 2
    att = lab.char_attention(model, tok, text)
    fig = lab.attention_heatmap(att.head(0, 0), att.tokens, start=10, size=64)
    assert np.asarray(fig.data[0].z).shape == (64, 64)
    fig = lab.attention_heatmap(att.head(0, 0), att.tokens, start=len(text) - 5, size=64)
    assert np.asarray(fig.data[0].z).shape == (5, 5)
    with pytest.raises(ValueError, match="window start must be in"):
        lab.attention_heatmap(att.head(0, 0), att.tokens, start=len(text))
    grid = lab.head_grid(att, 2, size=32)
    assert len(grid.data) == model.config.n_head
    assert "query" in grid.data[0].hovertemplate


def test_pattern_figure_axis_labels_are_plain_text():
    scores = {"previous character": np.full((2, 3), 0.5)}
    fig = lab.pattern_figure(scores, "previous character")
    assert list(fig.layout.xaxis.ticktext) == ["head 0", "head 1", "head 2"]
    assert list(fig.layout.yaxis.ticktext) == ["layer 0", "layer 1"]


def test_layer_grid_widget_follows_the_slider():
    att = lab.Attention(list("abcd"), torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0)))
    box = lab.layer_grid_widget(att, layer=1, name="toy")
    slider, fig = box.children
    assert "all 2 heads of layer 1" in fig.layout.title.text
    slider.value = 2
    assert "layer 2" in fig.layout.title.text
    assert np.allclose(fig.data[1].z, att.weights[2, 1].numpy())
    with pytest.raises(ValueError, match="layer"):
        lab.layer_grid_widget(att, layer=3)


# ----------------------------------------------------------------- the 1/sqrt(d) scale
def test_scale_entropy_matches_torch_and_shows_saturation():
    dims = (4, 64, 1024)
    h = lab.scale_entropy(dims, n_keys=16, n_queries=64, seed=3)
    # reference: the same draws, entropy from torch.distributions
    g = torch.Generator().manual_seed(3)
    for j, d in enumerate(dims):
        q, k = torch.randn(64, d, generator=g), torch.randn(16, d, generator=g)
        ref = torch.distributions.Categorical(logits=q @ k.T).entropy().mean().item()
        ref_scaled = torch.distributions.Categorical(logits=q @ k.T / d ** 0.5).entropy().mean().item()
        assert h["without the scale"][j] == pytest.approx(ref, abs=1e-4)
        assert h["with 1/√d"][j] == pytest.approx(ref_scaled, abs=1e-4)
    assert h["without the scale"][-1] < 0.5 * h["without the scale"][0]
    assert max(h["with 1/√d"]) - min(h["with 1/√d"]) < 0.3
    assert all(x <= math.log(16) + 1e-6 for x in h["with 1/√d"])
    fig = lab.scale_entropy_figure(dims, h, n_keys=16)
    assert [t.name for t in fig.data] == ["without the scale", "with 1/√d"]
    with pytest.raises(ValueError, match="dims"):
        lab.scale_entropy((0, 4))
    with pytest.raises(ValueError, match="n_keys"):
        lab.scale_entropy(n_keys=1)


def test_explorer_bad_text_keeps_plot(char_model):
    model, tok, _ = char_model
    ex = lab.AttentionExplorer(model, tok, "ROMEO:\nBut soft!")
    before = np.asarray(ex.figure.data[0].z).copy()
    ex.text.value = "🐯"
    assert "not in this model" in ex.message.value and "vocabulary" in ex.message.value   # error_html escapes the apostrophe
    assert np.array_equal(np.asarray(ex.figure.data[0].z), before)
    ex.text.value = ""
    assert "empty" in ex.message.value
    ex.text.value = "JULIET:\nAy me!"
    assert ex.message.value == ""
    ex.words.value = True
    assert np.asarray(ex.figure.data[0].z).shape == (3, 3)


# ----------------------------------------------------------------- induction task
def test_repeat_batch_structure():
    task = lab.InductionTask()
    x, y, rep = lab.repeat_batch(200, task, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == rep.shape == (200, 64)
    assert torch.equal(x[:, 1:], y[:, :-1])
    lengths = set()
    for i in range(200):
        R = int(rep[i].sum()) + 1
        lengths.add(R)
        assert torch.equal(x[i, R:2 * R], x[i, :R])
        # every repeated target equals the token R positions earlier
        t = torch.nonzero(rep[i]).flatten()
        assert torch.equal(y[i, t], x[i, t + 1 - R])
    assert min(lengths) == 10 and max(lengths) == 31, "repeat length must vary per row"
    with pytest.raises(ValueError, match="does not fit twice"):
        lab.InductionTask(seq_len=40, max_repeat=31)


def test_induction_scores_on_planted_heads():
    R, T = 5, 12
    w = np.zeros((2, 1, T, T))
    for i in range(T):
        w[0, 0, i, max(i - 1, 0)] = 1
        w[1, 0, i, i - R + 1 if R <= i < 2 * R - 1 else i] = 1
    ind, prev = lab.induction_scores(torch.tensor(w), R)
    assert ind[1, 0] == pytest.approx(1.0) and ind[0, 0] == pytest.approx(0.0)
    assert prev[0, 0] == pytest.approx(1.0)


def test_check_attention_fn():
    lab.check_attention_fn(lambda q, k, v: attention(q, k, v)[0])
    with pytest.raises(AssertionError, match="√d"):
        lab.check_attention_fn(lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v)
    with pytest.raises(AssertionError):
        lab.check_attention_fn(lambda q, k, v: v)


def test_check_mask_fn():
    lab.check_mask_fn(lambda T: torch.ones(T, T).tril().bool())
    with pytest.raises(AssertionError, match="bool tensor"):
        lab.check_mask_fn(lambda T: torch.ones(T, T).tril())
    with pytest.raises(AssertionError, match="diagonal is missing"):
        lab.check_mask_fn(lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1))
    with pytest.raises(AssertionError):
        lab.check_mask_fn(lambda T: torch.ones(T, T, dtype=torch.bool))
    with pytest.raises(AssertionError, match="upside down"):
        lab.check_mask_fn(lambda T: torch.ones(T, T).triu().bool())
    with pytest.raises(AssertionError, match="inverted"):
        lab.check_mask_fn(lambda T: torch.ones(T, T).triu(1).bool())


def test_check_attention_row():
    q, K = lab.ROW_QUERY, lab.ROW_KEYS
    scores = [sum(a * b for a, b in zip(q, k)) / math.sqrt(2) for k in K]
    e = [math.exp(s) for s in scores]
    lab.check_attention_row([round(x / sum(e), 2) for x in e])
    with pytest.raises(AssertionError, match="√d"):
        lab.check_attention_row(lab.attention_row(scale=1.0))
    with pytest.raises(AssertionError, match="sum to 1"):
        lab.check_attention_row([0.5, 0.5, 0.5])


def test_train_induction_short_run_and_widgets():
    runs = {f"{n}-layer": lab.train_induction(n_layer=n, steps=20, eval_every=10, progress=False) for n in (2, 1)}
    run = runs["2-layer"]
    assert [r["step"] for r in run.history] == [0, 10, 20]
    assert sorted(run.snapshots) == [0, 10, 20]
    assert run.snapshots[20].shape == (2, 2, 64, 64)
    assert run.cpu_seconds > 0 and run.crossing(2.0) is None
    assert len(lab.induction_loss_figure(runs).data) == 4
    bars = lab.induction_score_figure(runs)
    assert [t.name for t in bars.data] == ["induction score", "previous-token score"]
    assert list(bars.data[0].x) == ["2-layer L0 H0", "2-layer L0 H1", "2-layer L1 H0", "2-layer L1 H1",
                                    "1-layer L0 H0", "1-layer L0 H1"]
    ind, _ = lab.induction_scores(run.snapshots[20], run.probe_repeat)
    assert bars.data[0].y[2] == pytest.approx(ind[1, 0])
    with pytest.raises(ValueError, match="no snapshot"):
        lab.induction_score_figure(runs, step=15)
    assert run.collapse_steps(3.5, 1.0) is None
    fake = lab.InductionRun(run.model, history=[{"step": s, "repeated": l} for s, l in ((0, 4), (50, 3), (100, 0.5))])
    assert fake.collapse_steps(3.5, 1.0) == 50
    box = lab.snapshot_widget(runs)
    fig = box.children[-1]
    assert "2-layer, layer 1," in fig.layout.title.text   # starts on the last layer of the first model
    box.children[0].children[0].value = "1-layer"
    assert "1-layer, layer 0," in fig.layout.title.text
    with pytest.raises(ValueError, match="steps must be in"):
        lab.train_induction(steps=0)
    with pytest.raises(ValueError, match="n_layer must be"):
        lab.induction_model(4)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_induction_result_holds_for_other_seeds(seed):
    """The notebook's claim with seed 0, re-checked with other seeds: 2 layers copy, 1 layer cannot."""
    two = lab.train_induction(n_layer=2, steps=1000, seed=seed, eval_every=100, progress=False)
    one = lab.train_induction(n_layer=1, steps=1000, seed=seed, eval_every=100, progress=False)
    assert two.crossing(2.0) is not None and two.history[-1]["repeated"] < 1.0
    assert one.crossing(2.0) is None and one.history[-1]["repeated"] > 2.5
    ind2, prev2 = lab.induction_scores(two.snapshots[1000], two.probe_repeat)
    ind1, _ = lab.induction_scores(one.snapshots[1000], one.probe_repeat)
    assert ind2[1].max() > 0.5 and ind1.max() < ind2[1].max() / 2
    # the notebook's "sudden drop" and "previous-token head in layer 0" (seed 0 there; seeds 0-2 in the pilot:
    # plateau 350-500 steps, 3.5 -> 1 nat in 200-250 steps, previous-token score 0.28-0.37)
    assert two.crossing(3.5) >= 200 and two.collapse_steps(3.5, 1.0) <= 400
    assert prev2[0].max() > 2.5 * np.mean(1 / np.arange(2, two.probe.shape[1] + 1))
