"""The MoE layer routes each token to its top-k experts and mixes them with renormalised weights."""
import pytest
import torch

from course_utils.model import GPTConfig
from course_utils.moe import MoE, active_parameters, aux_loss, dense_equivalent, moe_gpt


@pytest.mark.parametrize("top_k", [1, 2])
def test_moe_output_equals_a_token_by_token_computation(top_k):
    torch.manual_seed(0)
    layer = MoE(8, n_experts=4, top_k=top_k, hidden=16)
    x = torch.randn(2, 5, 8)
    out = layer(x)
    for n, token in enumerate(x.reshape(-1, 8)):
        p = layer.router(token).softmax(-1)
        w, chosen = p.topk(top_k)
        want = sum(wi / w.sum() * layer.experts[int(e)](token) for wi, e in zip(w, chosen))
        torch.testing.assert_close(out.reshape(-1, 8)[n], want, atol=1e-6, rtol=1e-5)
        assert set(layer.last_choice[n].tolist()) == set(chosen.tolist())


def test_balancing_loss_is_one_when_uniform_and_larger_when_collapsed():
    layer = MoE(4, n_experts=4, top_k=1, hidden=8)
    with torch.no_grad():
        layer.router.weight.zero_()
    layer(torch.randn(64, 4))                    # uniform router probabilities
    assert float(layer.aux_loss) == pytest.approx(1.0)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[0, 0] = 50.0
    layer(torch.rand(64, 4) + 0.5)               # everything goes to expert 0
    assert float(layer.aux_loss) > 3.5


def test_parameter_counts_and_dense_equivalent():
    cfg = GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16)
    moe = moe_gpt(cfg, n_experts=4, top_k=1, hidden=32)
    dense = dense_equivalent(cfg, top_k=1, hidden=32)
    router = 2 * 16 * 4
    assert active_parameters(moe) == dense.num_parameters() + router
    assert moe.num_parameters() - active_parameters(moe) == 2 * 3 * (16 * 32 + 32 + 32 * 16 + 16)
    out = moe(torch.randint(20, (3, 16)), torch.randint(20, (3, 16)))
    assert out.loss.isfinite() and float(aux_loss(moe)) >= 1.0 - 1e-6
    with pytest.raises(ValueError, match="top_k must be in"):
        MoE(8, n_experts=2, top_k=3)
