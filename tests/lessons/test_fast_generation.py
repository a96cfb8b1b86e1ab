"""Companion of notebook 14: cache-size formula against real tensors, prefix reuse, exercise checkers,
the shipped draft, and the lean SmolLM2 paths (greedy text equals Hugging Face generate)."""
import pytest
import torch

from course_utils import decode, speculative
from course_utils.checkpoints import load_checkpoint
from course_utils.lessons import fast_generation as lab
from course_utils.model import KVCache


def test_kv_formula_equals_the_course_cache_tensors():
    model, tok, _ = load_checkpoint("shakespeare-char")
    cache = KVCache(model.config.n_layer)
    model(torch.tensor([tok.encode("ROMEO: hello")]), cache=cache)
    c = model.config
    assert lab.cache_tensor_bytes(cache) == lab.kv_cache_bytes(c.n_layer, c.n_head, c.n_embd // c.n_head) * 12
    assert lab.kv_cache_bytes(30, 3, 64) == 46_080          # SmolLM2 fp32 (curriculum notes)


def test_checkers_accept_the_reference_and_reject_wrong_answers():
    lab.check_kv_bytes(lab.kv_cache_bytes)
    lab.check_accept(speculative.accept)
    lab.check_tokens_per_pass(speculative.expected_tokens_per_pass)
    with pytest.raises(AssertionError, match="expected"):
        lab.check_kv_bytes(lambda L, h, d, b: L * h * d * b)          # forgot the values
    with pytest.raises(AssertionError, match="should be"):
        lab.check_accept(lambda p, q, u: u < q / p)                    # ratio upside down
    with pytest.raises(AssertionError, match="expected"):
        lab.check_tokens_per_pass(lambda a, g: 1 + a * g)


def test_shipped_draft_is_what_the_recipe_trained():
    draft, meta = lab.load_draft()
    _, tok, _ = load_checkpoint("shakespeare-char")
    assert draft.num_parameters() < 500_000 and meta["recipe"] == lab.DRAFT_RECIPE
    assert lab.validation_loss(draft, tok) == pytest.approx(lab.load_distill_results()["distilled"]["val_loss"],
                                                            abs=0.02)


def test_lookup_draft_copies_what_followed_the_last_ngram():
    assert decode.lookup_draft([5, 6, 7, 8, 9, 6, 7], ngram=2, max_draft=3) == [8, 9, 6]
    assert decode.lookup_draft([1, 2, 3], ngram=2) == []


@pytest.mark.slow
def test_smollm2_lean_paths_keep_the_greedy_text_and_prefix_reuse_keeps_logits():
    from course_utils.assets import load_smollm2
    model, tok = load_smollm2(verbose=False)
    ids = tok.encode("Repeat: the cat sat on the mat. The cat sat on")
    want = model.generate(torch.tensor([ids]), max_new_tokens=12, min_new_tokens=12, do_sample=False,
                          pad_token_id=tok.eos_token_id)[0, len(ids):].tolist()
    assert decode.greedy(model, ids, 12)[0] == want
    assert decode.prompt_lookup(model, ids, 12)[0] == want
    assert decode.speculative_greedy(model, decode.with_weights(model, "int8-mixed"), ids, 12)[0] == want
    r = lab.prefix_reuse(model, tok, "You are a helpful assistant. Question:", [" Why?", " How?"])
    assert r["max_logit_diff"] < 1e-3
    assert decode.weight_bytes(model) == pytest.approx(538e6, rel=0.01)
    scales = lab.activation_scales(model, tok, "The capital of France is", " Paris")
    assert scales["fp32"] > 0.5                                   # SmolLM2 knows it in fp32
    # one scale for the whole prompt loses most of it; one per token keeps it close (measured 0.77 / 0.12 / 0.61)
    assert scales["int8-mixed, one scale per call"] < 0.5 * scales["fp32"] < scales["int8-mixed, one scale per token"]
    with pytest.raises(ValueError, match="one token"):
        lab.activation_scales(model, tok, "The capital of France is", " Paris, France")


def test_step_time_and_acceptance_figures_plot_what_they_get():
    fig = lab.step_time_figure([0.002, 0.004], [0.001, 0.001])
    assert [t.name for t in fig.data] == ["no cache", "KV cache"] and list(fig.data[0].y) == [2.0, 4.0]
    grid = {2: {0.0: {"alpha": 0.9}, 1.2: {"alpha": 0.5}}, 4: {0.0: {"alpha": 0.8}, 1.2: {"alpha": 0.4}}}
    fig = lab.acceptance_figure(grid)
    assert [t.name for t in fig.data] == ["γ = 2", "γ = 4"]
    assert list(fig.data[1].x) == [0.0, 1.2] and list(fig.data[1].y) == [0.8, 0.4]
