"""course_utils.decode on a tiny stand-in model (the SmolLM2 paths are tested with notebook 14's companion)."""
import torch

from course_utils import decode


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.up = torch.nn.Linear(16, 32)
        self.down_proj = torch.nn.Linear(32, 16)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)

    def forward(self, x):
        return self.down_proj(torch.relu(self.up(x)))


def test_int8_copy_gives_each_token_its_own_activation_scale():
    model = Tiny()
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(1))
    x[0, 0] *= 100                                     # one extreme token, as a prompt's first position
    q = decode.with_weights(model, "int8")
    assert sum(isinstance(m, decode.PerTokenInt8) for m in q.modules()) == 2
    whole = q(x)
    for b in range(2):
        for t in range(5):
            assert torch.equal(whole[b, t], q(x[b, t][None, None])[0, 0])   # same as one token per call
    exact = model(x)
    err = (whole - exact)[1].abs().max() / exact[1].abs().max()
    # one scale per call would let the extreme token set every token's rounding step
    with torch.no_grad():
        shared = q.down_proj.inner(torch.relu(q.up.inner(x.reshape(-1, 16)))).reshape(2, 5, 16)
    assert err < 0.05 < ((shared - exact)[1].abs().max() / exact[1].abs().max())
    assert model.up.weight.dtype == torch.float32 and isinstance(model.up, torch.nn.Linear)   # original untouched


def test_int8_mixed_keeps_sensitive_layers_in_bf16():
    q = decode.with_weights(Tiny(), "int8-mixed")
    assert isinstance(q.down_proj, decode.BF16Linear) and isinstance(q.up, decode.PerTokenInt8)
    assert decode.weight_bytes(q) == 16 * 32 * 1 + 32 * 4 + (32 * 16 + 16) * 2
