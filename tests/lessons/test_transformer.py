"""Companion of notebook 08 (course_utils.lessons.transformer): formulas against real models,
experiment claims across seeds, widgets, exercise checkers (reference passes, wrong answer fails)."""
import pytest
import torch

from course_utils.checkpoints import load_checkpoint
from course_utils.lessons import transformer as lab
from course_utils.model import GPT, GPTConfig, causal_mask, rope, sinusoidal_positions


@pytest.mark.parametrize("kw", [dict(), dict(mlp=False), dict(tie_weights=False), dict(bias=False),
                                dict(pos_encoding="rope"), dict(pos_encoding="sinusoidal", n_layer=3, n_embd=48)])
def test_gpt_params_formula_matches_the_course_gpt(kw):
    cfg = GPTConfig(**{"vocab_size": 37, "block_size": 24, "n_layer": 2, "n_head": 4, "n_embd": 32, **kw})
    want = GPT(cfg).parameter_breakdown()
    got = lab.gpt_params(37, cfg.n_embd, cfg.n_layer, 4, 24, mlp=cfg.mlp, tied=cfg.tie_weights, bias=cfg.bias,
                         pos=cfg.pos_encoding)
    assert got == want


def test_gpt_params_gives_gpt2_small_and_refuses_bad_shapes():
    assert sum(lab.gpt_params(**lab.PRESETS["GPT-2 small (124M)"]).values()) == 124_439_808
    with pytest.raises(ValueError, match="divisible"):
        lab.gpt_params(10, 30, 2, 4, 8)
    with pytest.raises(ValueError, match="depth"):
        lab.gpt_params(10, 32, 0, 4, 8)


@pytest.mark.slow
def test_gpt2_small_count_matches_transformers_gpt2():
    """Hugging Face's GPT2Config() defaults are the openai-community/gpt2 architecture (its docstring)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    with torch.random.fork_rng():
        hf = GPT2LMHeadModel(GPT2Config())
    p = lab.PRESETS["GPT-2 small (124M)"]
    c = hf.config
    assert (c.vocab_size, c.n_embd, c.n_layer, c.n_head, c.n_positions) == \
        (p["vocab"], p["width"], p["depth"], p["heads"], p["context"])
    assert hf.num_parameters() == sum(lab.gpt_params(**p).values()) == 124_439_808


@pytest.mark.slow
def test_llama_formula_and_weights_file_match_the_loaded_smollm2():
    from course_utils import assets

    emb, tok, c, n = lab.smollm2_embeddings()
    hf, _ = assets.load_smollm2(verbose=False)
    assert n == sum(p.numel() for p in hf.parameters()) == 134_515_008
    parts = lab.llama_params(c["vocab_size"], c["hidden_size"], c["num_hidden_layers"], c["num_attention_heads"],
                             c["num_key_value_heads"], c["intermediate_size"], tied=c["tie_word_embeddings"])
    assert sum(parts.values()) == n and parts["token embedding"] == 28_311_552
    assert torch.equal(emb, hf.get_input_embeddings().weight)
    assert tok.encode(" king").ids == [4197] and len(lab.neighbours(emb, 4197, 5)) == 5


def test_memory_and_human_bytes():
    assert lab.memory(1000) == {"fp32": 4000, "bf16": 2000, "int4": 500}
    assert lab.human_bytes(538_060_032) == "538.1 MB" and lab.human_bytes(12) == "12 B"


def test_trained_embeddings_put_a_letters_cases_together_and_untrained_do_not():
    model, tok, _ = load_checkpoint("shakespeare-char")
    t = lab.case_pair_similarity(model.tok_emb.weight, tok)
    assert t["n_case_pairs"] == 26
    assert t["case_pairs"] > t["random_pairs"] + 0.2 and t["vowel_pairs"] > t["random_pairs"] + 0.05
    for seed in (0, 1, 2):
        u = lab.case_pair_similarity(lab.new_model(model.config, seed).tok_emb.weight, tok, seed=seed)
        assert abs(u["case_pairs"] - u["random_pairs"]) < 0.1


def test_neighbours_are_the_highest_cosines_without_the_token_itself():
    emb = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    assert [i for i, _ in lab.neighbours(emb, 0, 3)] == [1, 2, 3]
    assert lab.neighbours(emb, 0, 1)[0][1] == pytest.approx(0.9 / (0.82 ** 0.5))


def test_shuffle_and_rope_checks_of_the_notebook():
    ids = list(range(1, 15))
    net = lambda seed, **kw: lab.new_model(
        GPTConfig(**{"vocab_size": 20, "n_layer": 2, "n_head": 2, "n_embd": 16, **kw}), seed)
    for seed in (0, 1):
        assert lab.shuffle_test(net(seed, pos_encoding="none", causal=False), ids, seed) < 1e-5
        assert lab.shuffle_test(net(seed, pos_encoding="none", n_layer=1), ids, seed) < 1e-5
        assert lab.shuffle_test(net(seed, pos_encoding="none"), ids, seed) > 1e-5    # the causal mask leaks order
        assert lab.shuffle_test(net(seed, pos_encoding="learned", causal=False), ids, seed) > 1e-5
        scores = lab.rope_scores(net(seed, pos_encoding="rope"), ids, starts=(0, 7, 90))
        assert all(torch.allclose(s, scores[0], atol=1e-4) for s in scores.values())
    grid = lab.score_by_position(torch.randn(8), torch.randn(8), 6)
    assert torch.allclose(grid[1:, 1:], grid[:-1, :-1], atol=1e-5)            # constant along diagonals
    assert not torch.allclose(lab.score_by_position(torch.randn(8), torch.randn(8), 6, use_rope=False)[0], grid[0])


def test_grad_norms_have_one_value_per_block_and_variant():
    norms = lab.grad_norms_at_init(seed=0, batches=1)
    assert list(norms) == list(lab.ABLATIONS)
    assert all(len(v) == lab.DEPTH["n_layer"] and all(x > 0 for x in v) for v in norms.values())
    assert lab.grad_norm_figure(norms).data


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2])
def test_without_residuals_the_deep_model_trains_clearly_worse(seed):
    runs = {name: lab.train_variant(seed, progress=False, **lab.DEPTH, **kw)
            for name, kw in list(lab.ABLATIONS.items())[:2]}
    full, no_res = (r["val_loss"] for r in runs.values())
    assert no_res > full + 0.4, (seed, full, no_res)


@pytest.mark.slow
def test_decoder_predicts_the_next_character_better_than_the_encoder():
    runs = lab.enc_dec_runs(seed=1, progress=False)
    assert runs["decoder"]["next_char"] > runs["encoder"]["next_char"] + 0.1, runs
    text = lab.continue_text(runs["encoder"]["model"], "encoder", "ROMEO:\n", 10, runs["mask_id"])
    assert len(text) == 10 and "\x00" not in text


def test_probe_hides_the_right_token_for_each_kind():
    tok, _, va = lab.corpus()
    mask_id = tok.vocab_size
    windows = lab.probe_windows(va, T=8, n=4, seed=0)

    class Spy(torch.nn.Module):
        """Remembers its inputs; predicts token 0 everywhere."""
        def __init__(self):
            super().__init__()
            self.seen = []

        def forward(self, x):
            self.seen.append(x.clone())
            return type("Out", (), {"logits": torch.zeros(*x.shape, mask_id + 1)})()

    spy = Spy()
    lab.predict_at(spy, "encoder", windows, 4, mask_id)
    lab.predict_at(spy, "decoder", windows, 4, mask_id)
    enc, dec = spy.seen
    assert (enc[:, 4] == mask_id).all() and torch.equal(enc[:, 5:], windows[:, 5:])
    assert torch.equal(dec, windows[:, :4])
    with pytest.raises(ValueError, match="kind"):
        lab.predict_at(spy, "seq2seq", windows, 4, mask_id)


def test_shipped_results_hold_the_notebooks_claims():
    res = lab.load_results()
    assert res["command"] == "python -m course_utils.lessons.transformer" and len(res["seeds"]) >= 2
    pos = lab.mean_by(res["positions"], "pos_encoding")
    assert set(pos) == set(lab.POSITIONS)
    assert pos["none"] > min(pos["learned"], pos["rope"]) + 0.05
    mlp = lab.mean_by(res["mlp"], "blocks")
    assert mlp["attention + MLP"] < mlp["attention only"] - 0.02
    depth = lab.mean_by(res["depth_runs"], "variant")
    assert depth["no residual"] > depth["residual + LayerNorm"] + 0.4
    ed = {k: lab.mean_by([r for r in res["enc_dec_runs"] if r["kind"] == k], "kind", "fill_middle")[k]
          for k in ("decoder", "encoder")}
    assert ed["encoder"] > ed["decoder"] + 0.05


def test_parameter_calculator_follows_its_sliders_and_reports_bad_shapes():
    calc = lab.ParameterCalculator("CPU recipe (notebook 03)")
    before = list(calc.figure.data[0].y)
    assert sum(before) == 234_912 and "234,912" in calc.table.value
    calc.depth.value = 4
    assert list(calc.figure.data[0].y) != before and "fp32" in calc.table.value
    calc.heads.value = 5                                            # 96 is not divisible by 5
    assert "divisible" in calc.table.value and "&#10008;" in calc.table.value
    calc.preset.value = "GPT-2 small (124M)"
    assert "124,439,808" in calc.table.value


def test_neighbour_explorer_shows_neighbours_and_refuses_several_tokens():
    model, tok, _ = load_checkpoint("shakespeare-char")
    ex = lab.NeighbourExplorer({"char": (model.tok_emb.weight, tok.encode, lambda i: tok.decode([i]))})
    assert len(ex.figure.data[0].x) == 8
    first = list(ex.figure.data[0].x)
    ex.token.value = "A"
    assert list(ex.figure.data[0].x) != first and "a " in ex.figure.data[0].x
    ex.token.value = "ab"
    assert "2 tokens" in ex.note.value and "&#10008;" in ex.note.value


def test_figures_build():
    assert len(lab.masks_figure(6).data) == 2
    assert lab.encoder_decoder_diagram().layout.shapes
    model, tok, _ = load_checkpoint("shakespeare-char")
    assert len(lab.parameter_pie(model, "t").data[0].labels) == 5       # the tied output head (0) is left out
    assert lab.embedding_pca(model.tok_emb.weight, tok, "t").data


def test_exercise_checkers_accept_the_reference_and_refuse_wrong_answers():
    lab.check_rope(rope)
    lab.check_sinusoidal(sinusoidal_positions)
    lab.check_padding_mask(lambda lengths, T: (torch.arange(T)[None, :] < torch.tensor(lengths)[:, None])
                           [:, None, :].expand(len(lengths), T, T))
    wrong = [(lab.check_rope, lambda x, start=0: x),
             (lab.check_rope, lambda x, start=0: rope(x, start + 1)),
             (lab.check_sinusoidal, lambda T, d: sinusoidal_positions(T, d).flip(-1)),      # sin and cos swapped
             (lab.check_sinusoidal, lambda T, d: sinusoidal_positions(T, 2 * d)[:, :d]),    # wrong exponent
             (lab.check_padding_mask, lambda lengths, T: torch.ones(len(lengths), T, T, dtype=torch.bool)),
             (lab.check_padding_mask, lambda lengths, T: (torch.arange(T)[:, None] < torch.tensor(lengths)[:, None, None])
              .expand(len(lengths), T, T))]                                                 # masks queries, not keys
    for checker, fn in wrong:
        with pytest.raises(AssertionError):
            checker(fn)
