"""course_utils.preference: the DPO and Bradley-Terry losses against the formulas computed by hand, and
sequence_logprob against a token-by-token computation."""
import math

import pytest
import torch

from course_utils import preference
from course_utils.model import GPT, GPTConfig
from course_utils.runtime import seeded


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_bradley_terry_loss_is_the_formula():
    c, r = [1.0, -2.0, 0.5], [0.0, 3.0, 0.5]
    want = sum(-math.log(_sigmoid(a - b)) for a, b in zip(c, r)) / 3
    assert preference.bradley_terry_loss(torch.tensor(c), torch.tensor(r)).item() == pytest.approx(want, rel=1e-6)
    # equal rewards: a coin flip, ln 2; the loss falls as the chosen reward pulls ahead
    assert preference.bradley_terry_loss(torch.zeros(5), torch.zeros(5)).item() == pytest.approx(math.log(2))
    assert (preference.bradley_terry_loss(torch.tensor([3.0]), torch.tensor([0.0]))
            < preference.bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0])))
    with pytest.raises(ValueError, match="same shape"):
        preference.bradley_terry_loss(torch.zeros(2), torch.zeros(3))


def test_dpo_loss_is_the_formula_on_random_inputs():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (-60 * torch.rand(7, generator=g) for _ in range(4))
    for beta in (0.01, 0.1, 1.0, 5.0):
        want = sum(-math.log(_sigmoid(beta * ((a - b) - (c - d))))
                   for a, c, b, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())) / 7
        got = preference.dpo_loss(pc, pr, rc, rr, beta).item()
        assert got == pytest.approx(want, rel=1e-5)


def test_dpo_loss_is_ln2_when_policy_equals_reference():
    lp = torch.tensor([-35.2, -80.0, -12.5])
    other = torch.tensor([-40.0, -70.0, -13.0])
    assert preference.dpo_loss(lp, other, lp, other, 0.1).item() == pytest.approx(math.log(2), abs=1e-7)
    # a policy that raised the chosen and lowered the rejected answer has a lower loss; the reverse a higher one
    assert preference.dpo_loss(lp + 1, other - 1, lp, other, 0.1).item() < math.log(2)
    assert preference.dpo_loss(lp - 1, other + 1, lp, other, 0.1).item() > math.log(2)


def test_dpo_gradient_pushes_chosen_up_and_rejected_down():
    pc, pr = torch.tensor([-10.0], requires_grad=True), torch.tensor([-10.0], requires_grad=True)
    preference.dpo_loss(pc, pr, torch.tensor([-10.0]), torch.tensor([-10.0]), 0.5).backward()
    assert pc.grad.item() == pytest.approx(-0.25) and pr.grad.item() == pytest.approx(0.25)   # beta * sigma(0)


@pytest.mark.parametrize("beta", [0, -0.1, float("nan"), float("inf"), True, "0.1"])
def test_bad_beta_is_a_clear_error(beta):
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="beta") as err:
        preference.dpo_loss(z, z, z, z, beta)
    assert repr(beta) in str(err.value)


def _tiny(seed=0):
    with seeded(seed):
        return GPT(GPTConfig(vocab_size=7, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).eval()


def test_sequence_logprob_matches_token_by_token():
    model = _tiny()
    prompt, response = [1, 2, 3], [4, 0, 6, 5]
    want = 0.0
    with torch.no_grad():
        for t in range(len(response)):
            context = torch.tensor([prompt + response[:t]])
            want += torch.log_softmax(model(context).logits[0, -1], -1)[response[t]].item()
        got = preference.sequence_logprob(model, prompt, response)
    assert got.dim() == 0 and got.item() == pytest.approx(want, abs=1e-5)
    # a batch gives one value per row, the same as one pair at a time
    batch = preference.sequence_logprob(model, torch.tensor([prompt, [3, 3, 3]]), torch.tensor([response, [1, 1, 1, 1]]))
    assert batch.shape == (2,) and batch[0].item() == pytest.approx(want, abs=1e-5)
    assert batch[1].item() == pytest.approx(preference.sequence_logprob(model, [3, 3, 3], [1, 1, 1, 1]).item(), abs=1e-5)


def test_sequence_logprob_carries_gradients_and_checks_shapes():
    model = _tiny()
    preference.sequence_logprob(model, [1, 2], [3]).backward()
    assert model.tok_emb.weight.grad is not None
    with pytest.raises(ValueError, match="prompts"):
        preference.sequence_logprob(model, torch.tensor([[1, 2]]), torch.tensor([[3], [4]]))
    with pytest.raises(ValueError, match="at least one token"):
        preference.sequence_logprob(model, [1, 2], [])
