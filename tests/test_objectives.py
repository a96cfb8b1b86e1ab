"""The BERT masked-token objective (course_utils.objectives)."""
import pytest
import torch

from course_utils import train
from course_utils.model import GPT, GPTConfig
from course_utils.objectives import mask_tokens, masked_batch_fn, masked_lm_loss


def test_mask_tokens_follows_bert_15_80_10_10():
    V, mask_id = 50, 50
    x = torch.randint(V, (400, 100), generator=torch.Generator().manual_seed(0))
    inputs, targets = mask_tokens(x, mask_id, V, torch.Generator().manual_seed(1))
    chosen = targets >= 0
    assert torch.equal(targets[chosen], x[chosen]) and (targets[~chosen] == -1).all()
    assert torch.equal(inputs[~chosen], x[~chosen])                   # unchosen positions untouched
    n = chosen.sum().item()
    assert n / x.numel() == pytest.approx(0.15, abs=0.005)
    masked = (inputs[chosen] == mask_id).sum().item() / n
    kept = (inputs[chosen] == x[chosen]).sum().item() / n            # includes random draws of the same token
    assert masked == pytest.approx(0.8, abs=0.01)
    assert kept == pytest.approx(0.1 + 0.1 / V, abs=0.01)
    assert inputs.max() <= mask_id and (inputs[chosen & (inputs != mask_id)] < V).all()


def test_every_window_gets_a_target_and_the_generator_fixes_the_result():
    x = torch.randint(10, (200, 3), generator=torch.Generator().manual_seed(0))
    a = mask_tokens(x, 10, 10, torch.Generator().manual_seed(5))
    b = mask_tokens(x, 10, 10, torch.Generator().manual_seed(5))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert ((a[1] >= 0).sum(dim=1) >= 1).all()


@pytest.mark.parametrize("kw", [dict(rate=0), dict(rate=1.5), dict(mask_share=0.9, random_share=0.2)])
def test_bad_rates_are_refused(kw):
    with pytest.raises(ValueError):
        mask_tokens(torch.zeros(2, 4, dtype=torch.long), 10, 10, **kw)


def test_masked_loss_is_cross_entropy_at_the_chosen_positions_only():
    net = GPT(GPTConfig(vocab_size=11, n_layer=1, n_head=2, n_embd=16, causal=False)).eval()
    data = torch.randint(10, (500,), generator=torch.Generator().manual_seed(0))
    inputs, targets = masked_batch_fn(data, 16, 4, mask_id=10, vocab_size=10)(torch.Generator().manual_seed(0))
    assert inputs.shape == targets.shape == (4, 16)
    logits = net(inputs).logits
    keep = targets >= 0
    want = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert masked_lm_loss(net, (inputs, targets)).item() == pytest.approx(want.item(), rel=1e-5)


@pytest.mark.slow
def test_train_with_the_masked_objective_lowers_the_loss():
    data = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8] * 200)
    net = GPT(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=32, causal=False))
    cfg = train.TrainConfig(steps=150, batch_size=16, lr=3e-3, warmup_steps=5, eval_interval=50)
    hist = train.train(net, None, None, cfg, progress=False, loss_fn=masked_lm_loss,
                       batch_fn=masked_batch_fn(data, 8, 16, mask_id=9, vocab_size=9))
    assert hist[-1]["train_loss"] < 0.5 * hist[1]["train_loss"]
