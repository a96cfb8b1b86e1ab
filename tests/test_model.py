import math

import pytest
import torch

from course_utils.model import GPT, GPTConfig, KVCache, sinusoidal_positions


def tiny(**kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=17, block_size=16, n_layer=2, n_head=2, n_embd=16)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def test_shapes_and_initial_loss_near_uniform():
    model = tiny()
    idx = torch.randint(17, (3, 10))
    out = model(idx, idx)
    assert out.logits.shape == (3, 10, 17)
    assert abs(out.loss.item() - math.log(17)) < 0.3   # an untrained model guesses (almost) uniformly


def test_causal_mask_future_tokens_leave_earlier_logits_bit_identical():
    model = tiny()
    a = torch.randint(17, (1, 16))
    b = a.clone()
    b[0, 9:] = (b[0, 9:] + 1) % 17            # same prefix of 9 tokens, different future
    la, lb = model(a).logits, model(b).logits
    assert torch.equal(la[:, :9], lb[:, :9])
    assert not torch.equal(la[:, 9:], lb[:, 9:])


def test_attention_weights_are_causal_distributions_and_match_fast_path():
    model = tiny()
    idx = torch.randint(17, (2, 12))
    out = model(idx, return_attn=True)
    assert len(out.attentions) == 2 and out.attentions[0].shape == (2, 2, 12, 12)
    for w in out.attentions:
        assert torch.allclose(w.sum(-1), torch.ones(2, 2, 12), atol=1e-6)
        assert torch.all(w.triu(diagonal=1) == 0)
    assert torch.allclose(out.logits, model(idx).logits, atol=1e-5)


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_kv_cache_matches_full_recompute(pos):
    model = tiny(pos_encoding=pos)
    prompt = torch.randint(17, (2, 5))
    cache = KVCache(model.config.n_layer)
    step_logits = [model(prompt, cache=cache).logits[:, -1]]
    seq = prompt
    for _ in range(8):
        nxt = step_logits[-1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
        step_logits.append(model(nxt, cache=cache).logits[:, -1])
    full = model(seq).logits
    for i, logits in enumerate(step_logits):
        assert torch.allclose(logits, full[:, 4 + i], atol=1e-5)


def test_generate_with_and_without_cache_agree_beyond_the_context():
    model = tiny()
    prompt = torch.randint(17, (1, 4))
    a = model.generate(prompt, 30, temperature=0)          # 34 tokens > block_size 16: window slides
    b = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert a.shape == (1, 34)
    assert torch.equal(a[:, :16], b[:, :16])                # identical while the context is not full


def test_sampling_is_reproducible_with_a_generator():
    model = tiny()
    prompt = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3))
    b = model.generate(prompt, 20, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_save_load_round_trip(tmp_path):
    model = tiny(tie_weights=False, pos_encoding="sinusoidal")
    model.save(tmp_path / "m", note="hello")
    loaded, meta = GPT.load(tmp_path / "m")
    assert meta["note"] == "hello" and meta["model"]["pos_encoding"] == "sinusoidal"
    idx = torch.randint(17, (2, 9))
    assert torch.equal(model(idx).logits, loaded(idx).logits)
    with pytest.raises(FileNotFoundError, match="config.json"):
        GPT.load(tmp_path / "nothing")


def test_parameter_count_and_breakdown():
    model = tiny()
    d, L, V, T = 16, 2, 17, 16
    per_block = (3 * d * d + 3 * d) + (d * d + d) + (4 * d * d + 4 * d) + (4 * d * d + d) + 2 * 2 * d
    expected = V * d + T * d + L * per_block + 2 * d          # tied head adds nothing
    assert model.num_parameters() == expected
    assert sum(model.parameter_breakdown().values()) == expected
    untied = tiny(tie_weights=False)
    assert untied.num_parameters() == expected + V * d
    attn_only = tiny(mlp=False)
    assert attn_only.parameter_breakdown()["MLP"] == 0


def test_sinusoidal_table():
    table = sinusoidal_positions(8, 6)
    assert table.shape == (8, 6)
    assert torch.allclose(table[0], torch.tensor([0.0, 1.0] * 3))
    assert torch.allclose(table[3, 0], torch.sin(torch.tensor(3.0)))


@pytest.mark.parametrize("kw, match", [
    (dict(n_embd=10, n_head=3), "divisible"),
    (dict(vocab_size=0), "vocab_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(pos_encoding="alibi"), "pos_encoding"),
])
def test_bad_config_is_rejected(kw, match):
    cfg = dict(vocab_size=17, block_size=16, n_layer=1, n_head=2, n_embd=16)
    cfg.update(kw)
    with pytest.raises(ValueError, match=match):
        GPTConfig(**cfg)


def test_too_long_input_is_rejected():
    with pytest.raises(ValueError, match="block_size=16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="max_new_tokens"):
        tiny().generate(torch.zeros(1, 1, dtype=torch.long), -1)


# ----------------------------------------------------------------- the one attention function
def test_attention_matches_torch_and_returns_weights():
    import torch.nn.functional as F
    from course_utils.model import attention, causal_mask
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, 7, 8, generator=g) for _ in range(3))
    out, w = attention(q, k, v, causal_mask(7), return_weights=True)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    assert torch.allclose(out, ref, atol=1e-5)
    fused, none = attention(q, k, v, causal_mask(7))
    assert none is None and torch.allclose(fused, ref, atol=1e-6)
    assert torch.allclose(w.sum(-1), torch.ones(2, 3, 7))
    assert (w[..., 0, 1:] == 0).all()
    half, _ = attention(q, k, v, return_weights=True, scale=0.5)
    assert torch.allclose(half, F.scaled_dot_product_attention(q, k, v, scale=0.5), atol=1e-5)
    with pytest.raises(ValueError, match="queries have dimension 8 but keys 4"):
        attention(q, k[..., :4], v)


def test_causal_mask_shape_cache_offset_and_errors():
    from course_utils.model import causal_mask
    assert torch.equal(causal_mask(3), torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]], dtype=torch.bool))
    # two new queries after three cached keys see the cache plus themselves, not the future
    assert torch.equal(causal_mask(2, 5), torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1]], dtype=torch.bool))
    with pytest.raises(ValueError, match="T must be an integer from 1"):
        causal_mask(0)
