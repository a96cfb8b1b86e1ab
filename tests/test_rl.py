"""course_utils.rl: advantages, masks, the KL estimator and the policy-gradient loss against hand computations."""
import math

import pytest
import torch

from course_utils import rl
from course_utils.model import GPT, GPTConfig


def test_group_advantages():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    grpo = rl.group_advantages(r)
    assert torch.allclose(grpo[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-3)   # mean 0.5, std 0.5
    assert torch.equal(grpo[1], torch.zeros(4))            # all equal: nothing to learn
    assert torch.allclose(rl.group_advantages(r, normalize=False)[0], torch.tensor([0.5, -0.5, -0.5, 0.5]))
    with pytest.raises(ValueError, match="group size"):
        rl.group_advantages(torch.ones(4))


def test_completion_mask_stops_after_end():
    new = torch.tensor([[5, 2, 9, 2], [5, 5, 5, 5]])
    assert rl.completion_mask(new, 2).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]
    assert rl.completion_mask(new, None).sum() == 8


def test_kl_estimate_is_unbiased_and_non_negative():
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    g = torch.Generator().manual_seed(0)
    x = torch.multinomial(p, 200_000, replacement=True, generator=g)
    est = rl.kl_estimate(p.log()[x], q.log()[x])
    exact = torch.distributions.kl_divergence(torch.distributions.Categorical(p), torch.distributions.Categorical(q))
    assert (est >= 0).all()
    assert abs(est.mean().item() - exact.item()) < 0.01
    assert rl.kl_estimate(torch.tensor([-1.0]), torch.tensor([-1.0])).item() == 0.0


def _tiny(seed=0, vocab=4):
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, block_size=8, n_layer=1, n_head=1, n_embd=8))


def test_policy_loss_gradient_is_reinforce():
    model = _tiny()
    ids = torch.tensor([[0, 1, 2], [0, 3, 1]])
    batch = rl.Rollouts(ids, 1, torch.ones(2, 2), torch.tensor([1.0, 0.0]), torch.tensor([0.7, -0.7]))
    model.zero_grad()
    rl.policy_loss(model, batch).backward()
    got = [p.grad.clone() for p in model.parameters()]
    # by hand: -(1/4) sum_i A_i sum_t grad log p(y_t)
    model.zero_grad()
    logp = torch.log_softmax(model(ids[:, :-1]).logits, -1)
    total = sum(batch.advantages[i] * (logp[i, 0, ids[i, 1]] + logp[i, 1, ids[i, 2]]) for i in range(2))
    (-total / 4).backward()
    for a, p in zip(got, model.parameters()):
        assert torch.allclose(a, p.grad, atol=1e-6)


def test_kl_term_needs_a_reference_and_is_zero_at_start():
    model = _tiny()
    ref = rl.frozen_copy(model)
    g = torch.Generator().manual_seed(0)
    batch = rl.rollout(model, torch.zeros(2, 1, dtype=torch.long), lambda i, c: float(c[0] == 1), 4, 3,
                       generator=g, reference=ref)
    assert batch.ids.shape == (8, 4) and batch.rewards.shape == (8,)
    with_kl = rl.policy_loss(model, batch, kl_coef=0.5)
    assert torch.allclose(with_kl, rl.policy_loss(model, batch))     # same weights: KL estimate is 0
    batch.ref_logprobs = None
    with pytest.raises(ValueError, match="reference"):
        rl.policy_loss(model, batch, kl_coef=0.5)


def test_rl_raises_the_reward_of_a_toy_policy():
    """Reward 1 when the first sampled token is 1: a few steps of GRPO must make it likely."""
    from course_utils.train import TrainConfig, train
    model = _tiny(1)
    prompts = torch.zeros(8, 1, dtype=torch.long)
    reward = lambda i, c: float(c[0] == 1)    # noqa: E731

    def p_one(m):
        return {"p_one": torch.softmax(m(prompts[:1]).logits[0, -1], -1)[1].item()}

    before = p_one(model)["p_one"]
    cfg = TrainConfig(steps=30, lr=3e-2, min_lr=3e-2, warmup_steps=0, eval_interval=30, seed=0)
    hist = train(model, None, None, cfg, progress=False, eval_fn=p_one, loss_fn=rl.policy_loss,
                 batch_fn=lambda g: rl.rollout(model, prompts, reward, 4, 2, generator=g))
    assert before < 0.5 and hist[-1]["p_one"] > 0.9, (before, hist[-1]["p_one"])


def test_sample_pass_counts():
    model = _tiny()
    prompts = [torch.tensor([0]), torch.tensor([0, 1])]
    counts = rl.sample_pass_counts(model, prompts, lambda i, c: True, 5, 2, generator=torch.Generator().manual_seed(0))
    assert counts == [5, 5]
    assert rl.sample_pass_counts(model, prompts, lambda i, c: False, 5, 2) == [0, 0]
