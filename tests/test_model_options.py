"""The lesson options of the course GPT (notebook 08): positional encodings, bidirectional attention,
the residual/LayerNorm ablations, and that the defaults (and the shipped checkpoints) are unchanged."""
import math

import pytest
import torch

from course_utils.checkpoints import load_checkpoint
from course_utils.model import GPT, GPTConfig, KVCache, causal_mask, rope


def model(seed=0, **kw):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab_size=20, block_size=32, n_layer=2, n_head=2, n_embd=16, **kw)).eval()


def ids(T=12, seed=0):
    return torch.randint(20, (1, T), generator=torch.Generator().manual_seed(seed))


# Logits of the shipped checkpoints for "ROMEO:\nWhat light through yonder window breaks?", computed with
# model.py before the lesson options existed (main 3caae08; bit-identical with the new code on that machine).
REFERENCE = {"shakespeare-char": ([11.526895, 10.602164, 1.376623, -1.011335, -6.549005, -12.148535], -16112.898123),
             "shakespeare-char-small": ([12.850772, 10.687004, -0.33986, -7.701219, -6.130541, -7.067486], -8308.101952)}


@pytest.mark.parametrize("name", list(REFERENCE))
def test_shipped_checkpoints_give_the_same_logits(name):
    net, tok, _ = load_checkpoint(name)
    assert (net.config.pos_encoding, net.config.causal, net.config.residual, net.config.layernorm) == \
        ("learned", True, True, True)
    x = torch.tensor([tok.encode("ROMEO:\nWhat light through yonder window breaks?")])
    logits = net(x).logits
    first, total = REFERENCE[name]
    assert logits[0, -1, :6].tolist() == pytest.approx(first, abs=1e-4)
    assert logits.double().sum().item() == pytest.approx(total, rel=1e-6)
    assert torch.equal(net(x, return_attn=True).logits.argmax(-1), logits.argmax(-1))


def test_rope_is_a_rotation_whose_scores_depend_only_on_the_offset():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(1, 8, generator=g), torch.randn(1, 8, generator=g)
    score = lambda m, n: (rope(q, m) @ rope(k, n).T).item()
    for m, n in [(0, 0), (5, 2), (40, 37), (100, 97), (3, 9)]:
        assert score(m, n) == pytest.approx(score(m - n + 50, 50), abs=1e-4)
    assert abs(score(5, 2) - score(5, 4)) > 1e-3                      # the offset does matter
    x = torch.randn(3, 7, 8, generator=g)
    assert torch.allclose(rope(x, 11).norm(dim=-1), x.norm(dim=-1), atol=1e-5)
    assert torch.equal(rope(x, 0)[:, 0], x[:, 0])                     # position 0: angle 0


def test_rope_matches_the_complex_number_formula():
    """RoFormer's form: pair (a, b) as the complex number a + ib, multiplied by e^(i m theta_j)."""
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1))
    theta = 10000.0 ** (-torch.arange(0, 6, 2) / 6)
    z = torch.complex(x[:, 0::2], x[:, 1::2]) * torch.polar(torch.ones(5, 3), torch.arange(2, 7)[:, None] * theta)
    want = torch.stack((z.real, z.imag), dim=-1).flatten(-2)
    assert torch.allclose(rope(x, start=2), want, atol=1e-5)


def test_rope_model_with_cache_matches_full_forward():
    net = model(pos_encoding="rope")
    x = ids(10)
    full = net(x).logits
    cache = KVCache(2)
    parts = [net(x[:, :6], cache=cache).logits] + [net(x[:, i:i + 1], cache=cache).logits for i in range(6, 10)]
    assert torch.allclose(torch.cat(parts, dim=1), full, atol=1e-6)
    assert not any(n.startswith("pos_emb") for n, _ in net.named_parameters())


def test_without_positions_an_encoder_is_permutation_equivariant():
    net = model(pos_encoding="none", causal=False)
    x = ids(12)
    perm = torch.randperm(12, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(net(x[:, perm]).logits, net(x).logits[:, perm], atol=1e-5)
    learned = model(pos_encoding="learned", causal=False)
    assert not torch.allclose(learned(x[:, perm]).logits, learned(x).logits[:, perm], atol=1e-3)


def test_without_positions_a_one_layer_decoder_ignores_the_order_of_the_context():
    net = GPT(GPTConfig(vocab_size=20, n_layer=1, n_head=2, n_embd=16, pos_encoding="none")).eval()
    x = ids(12)
    shuffled = torch.cat([x[:, :-1][:, torch.randperm(11, generator=torch.Generator().manual_seed(0))], x[:, -1:]], 1)
    assert torch.allclose(net(shuffled).logits[:, -1], net(x).logits[:, -1], atol=1e-5)


def test_bidirectional_attention_sees_later_tokens_and_causal_does_not():
    x = ids(10)
    later = x.clone()
    later[0, 7] = (later[0, 7] + 1) % 20                         # change a late token
    for causal in (True, False):
        net = model(causal=causal)
        changed = (net(later).logits[0, :7] - net(x).logits[0, :7]).abs().max().item()
        assert (changed < 1e-6) if causal else (changed > 1e-4), (causal, changed)
        _, weights = net(x, return_attn=True).logits, net(x, return_attn=True).attentions[0]
        upper = weights[0, :, ~causal_mask(10)]
        assert (upper.abs().max() == 0) if causal else (upper.min() > 0)
        # the explicit path (return_attn) and the fused kernel agree
        assert torch.allclose(net(x).logits, net(x, return_attn=True).logits, atol=1e-5)


def test_ablations_remove_exactly_what_they_say():
    base, no_ln, no_res = model(), model(layernorm=False), model(residual=False)
    assert base.num_parameters() - no_ln.num_parameters() == (2 * 2 + 1) * 2 * 16       # 5 LayerNorms, gain + bias
    assert no_ln.parameter_breakdown()["LayerNorm"] == 0
    assert no_res.num_parameters() == base.num_parameters()
    assert {n for n, _ in no_res.named_parameters()} == {n for n, _ in base.named_parameters()}
    # without residuals the block's output is its MLP's output alone
    block, x = no_res.blocks[0], torch.randn(1, 4, 16, generator=torch.Generator().manual_seed(0))
    a, _ = block.attn(block.ln1(x))
    assert torch.allclose(block(x)[0], block.mlp(block.ln2(a)), atol=1e-6)
    for net in (no_ln, no_res):
        assert math.isfinite(net(ids(), ids(seed=1)).loss.item())


def test_new_options_round_trip_through_save_and_load(tmp_path):
    net = model(pos_encoding="rope", causal=False, residual=False, layernorm=False)
    net.save(tmp_path / "m")
    back, _ = GPT.load(tmp_path / "m")
    assert back.config == net.config and torch.equal(back(ids()).logits, net(ids()).logits)


@pytest.mark.parametrize("bad, message", [(dict(pos_encoding="alibi"), "pos_encoding"),
                                          (dict(pos_encoding="rope", n_embd=18, n_head=2), "even head size")])
def test_bad_options_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        GPTConfig(vocab_size=20, **{"n_embd": 16, "n_head": 2, **bad})
