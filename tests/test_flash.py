"""Tiled online-softmax attention equals the course's attention and torch's fused kernel."""
import pytest
import torch
import torch.nn.functional as F

from course_utils.flash import score_bytes, tiled_attention
from course_utils.model import attention, causal_mask


@pytest.mark.parametrize("T,S,tile", [(37, 37, 8), (64, 64, 64), (5, 40, 7), (1, 30, 4), (50, 50, 1)])
@pytest.mark.parametrize("causal", [True, False])
def test_tiled_attention_equals_materialised_and_torch_sdpa(T, S, tile, causal):
    g = torch.Generator().manual_seed(T + S)
    q, k, v = (torch.randn(2, 3, n, 16, generator=g) * 2 for n in (T, S, S))
    mask = causal_mask(T, S) if causal else None
    ours = tiled_attention(q, k, v, causal=causal, tile=tile)
    course, _ = attention(q, k, v, mask, return_weights=True)
    torch.testing.assert_close(ours, course, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5, rtol=1e-5)


def test_tiling_is_needed_to_notice_a_wrong_rescale():
    """A tiled softmax that forgets the exp(m - m') correction is wrong: the test above can fail."""
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, 1, 20, 8, generator=g) * 3 for _ in range(3))
    s = (q @ k.transpose(-2, -1)) / 8 ** 0.5
    naive = sum(torch.exp(s[..., i:i + 5] - s[..., i:i + 5].amax(-1, keepdim=True)) @ v[..., i:i + 5, :]
                for i in range(0, 20, 5))
    assert not torch.allclose(naive / naive.norm(), tiled_attention(q, k, v, causal=False, tile=5) /
                              tiled_attention(q, k, v, causal=False, tile=5).norm(), atol=1e-3)


def test_score_memory_and_errors():
    assert score_bytes(1024) == 1024 * 1024 * 4
    assert score_bytes(1024, tile=64) == 1024 * 64 * 4 and score_bytes(32, tile=64) == 32 * 32 * 4
    with pytest.raises(ValueError, match="tile must be an integer >= 1"):
        tiled_attention(torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4), tile=0)
