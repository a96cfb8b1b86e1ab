"""course_utils.finetune: LoRA against the base model and its own merge, SFT targets against a
hand-computed response-only loss, and new token rows (old ids keep their embeddings)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from course_utils import finetune as ft
from course_utils.model import GPT, GPTConfig
from course_utils.tokenizers import CharTokenizer, WordTokenizer


def small_gpt(seed: int = 0, **kw) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, **kw)).eval()


def test_lora_at_init_is_bit_identical_and_trains_only_adapters():
    base = small_gpt()
    x = torch.randint(0, 20, (3, 10))
    ref = base(x).logits
    lora = ft.add_lora(copy.deepcopy(base), rank=4, alpha=8)
    assert torch.equal(lora(x).logits, ref)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all(n.endswith((".A", ".B")) for n in trainable)
    # exactly sum of r (in + out): qkv 16->48, attn.proj 16->16, fc 16->64, mlp.proj 64->16, two blocks
    expected = 2 * 4 * ((16 + 48) + (16 + 16) + (16 + 64) + (64 + 16))
    assert lora.num_parameters(trainable_only=True) == expected == ft.lora_parameter_count(base, 4)
    assert ft.lora_parameter_count(base, 2, ["attn.qkv"]) == 2 * 2 * (16 + 48)


def test_lora_forward_is_the_formula_and_merge_agrees():
    base = small_gpt(1)
    lora = ft.add_lora(copy.deepcopy(base), rank=3, alpha=6, seed=5)
    layer = ft.lora_layers(lora)[0]
    with torch.no_grad():
        for m in ft.lora_layers(lora):
            m.B.normal_()
    h = torch.randn(2, 5, 16)
    W, b = layer.base.weight, layer.base.bias
    assert torch.allclose(layer(h), h @ W.T + b + (6 / 3) * h @ (layer.B @ layer.A).T, atol=1e-5)
    x = torch.randint(0, 20, (2, 12))
    before = lora(x).logits
    assert not torch.allclose(before, base(x).logits, atol=1e-3)
    merged = ft.merge_lora(lora)
    assert not ft.lora_layers(merged)
    assert torch.allclose(merged(x).logits, before, atol=1e-5)
    assert merged.num_parameters(trainable_only=True) == base.num_parameters()


def test_lora_bad_input():
    m = small_gpt()
    with pytest.raises(ValueError, match="rank"):
        ft.add_lora(copy.deepcopy(m), rank=0)
    with pytest.raises(ValueError, match="larger than"):
        ft.add_lora(copy.deepcopy(m), rank=17)
    with pytest.raises(ValueError, match="unknown LoRA target"):
        ft.add_lora(copy.deepcopy(m), rank=2, targets=["q_proj"])
    with pytest.raises(ValueError, match="no layer"):
        ft.add_lora(small_gpt(mlp=False), rank=2, targets=["mlp.fc"])
    twice = ft.add_lora(copy.deepcopy(m), rank=2)
    with pytest.raises(ValueError, match="already"):
        ft.add_lora(twice, rank=2)


def test_adam_state_is_two_moments_per_trainable_parameter():
    m = ft.add_lora(small_gpt(), rank=2)
    assert ft.adam_state_bytes(m) == 2 * 4 * m.num_parameters(trainable_only=True)


def test_sft_targets_mask_the_prompt():
    x, y = ft.sft_targets([1, 2, 3], [4, 5])
    assert x.tolist() == [1, 2, 3, 4] and y.tolist() == [-1, -1, 4, 5]
    assert ft.sft_targets([1, 2, 3], [4, 5], mask_prompt=False)[1].tolist() == [2, 3, 4, 5]
    with pytest.raises(ValueError, match="response is empty"):
        ft.sft_targets([1, 2], [])
    with pytest.raises(ValueError, match="prompt is empty"):
        ft.sft_targets([], [3])


def test_masked_loss_ignores_the_prompt_targets():
    model = small_gpt(2)
    prompt, response = [3, 7, 1, 9, 2], [5, 6, 8]
    x, y = ft.sft_targets(prompt, response)
    logits = model(x[None]).logits[0]
    # reference: cross-entropy over the response positions only
    n = len(prompt) - 1
    ref = F.cross_entropy(logits[n:], torch.tensor(response))
    assert torch.allclose(model(x[None], y[None]).loss, ref)
    # change what the prompt positions would predict: the unmasked loss moves, the masked one does not
    _, full = ft.sft_targets(prompt, response, mask_prompt=False)
    other = full.clone()
    other[:n] = (other[:n] + 1) % 20
    assert not torch.allclose(model(x[None], full[None]).loss, model(x[None], other[None]).loss)
    masked_a, masked_b = full.clone(), other.clone()
    masked_a[:n] = masked_b[:n] = -1
    assert torch.equal(model(x[None], masked_a[None]).loss, model(x[None], masked_b[None]).loss)


def test_sft_batch_pads_without_changing_the_loss():
    model = small_gpt(3)
    pairs = [([1, 2], [3, 4, 5]), ([6, 7, 8, 9], [10])]
    x, y = ft.sft_batch(pairs, pad_id=0)
    assert x.shape == (2, 4) and y[1].tolist() == [-1, -1, -1, 10]
    # causal attention: the padded row's real positions see the same logits as the row alone
    alone = model(ft.sft_targets(*pairs[1])[0][None]).logits
    assert torch.allclose(model(x).logits[1:, :4], alone, atol=1e-6)
    with pytest.raises(ValueError, match="context"):
        ft.sft_batch(pairs, pad_id=0, max_len=3)


@pytest.mark.parametrize("tied", [True, False])
def test_grow_embeddings_keeps_old_rows(tied):
    model = small_gpt(4, tie_weights=tied)
    old_emb, old_head = model.tok_emb.weight.detach().clone(), model.head.weight.detach().clone()
    x = torch.randint(0, 20, (2, 8))
    hidden_old = model(x).logits
    new = ft.grow_embeddings(model, 3)
    assert new == [20, 21, 22] and model.config.vocab_size == 23
    assert torch.equal(model.tok_emb.weight[:20], old_emb) and torch.equal(model.head.weight[:20], old_head)
    assert (model.head.weight is model.tok_emb.weight) == tied
    logits = model(x).logits
    assert logits.shape[-1] == 23 and torch.allclose(logits[..., :20], hidden_old, atol=1e-6)
    assert model(torch.tensor([[22, 1]])).logits.isfinite().all()
    with pytest.raises(ValueError, match="n_new"):
        ft.grow_embeddings(model, 0)


def test_special_tokens_append_after_old_ids():
    tok = CharTokenizer("abc ")
    before = tok.encode("a cab")
    ids = tok.add_special_tokens(["<|user|>", "<|end|>"])
    assert ids == [4, 5] and tok.vocab_size == 6
    assert tok.encode("a cab") == before
    assert tok.encode("<|user|>ab<|end|>") == [4, tok.stoi["a"], tok.stoi["b"], 5]
    assert tok.decode(tok.encode("<|user|>ab<|end|>")) == "<|user|>ab<|end|>"
    assert CharTokenizer.from_dict(tok.to_dict()).encode("c<|end|>") == tok.encode("c<|end|>")
    with pytest.raises(ValueError, match="new, distinct"):
        tok.add_special_tokens(["a"])
    with pytest.raises(ValueError, match="not in this model"):
        tok.encode("<|user|>z")
    words = WordTokenizer(["hello", "world"])
    words.add_special_tokens(["<end>"])
    assert words.encode("hello world <end>") == [0, 1, 2]


def test_without_dropout_makes_training_forward_deterministic():
    model = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8, dropout=0.5)).train()
    x = torch.randint(11, (2, 8), generator=torch.Generator().manual_seed(0))
    assert not torch.equal(model(x).logits, model(x).logits)      # dropout draws from the global generator
    ft.without_dropout(model)
    assert model.config.dropout == 0.0
    assert torch.equal(model(x).logits, model(x).logits)


def test_greedy_matches_agrees_with_greedy_generation():
    """The teacher-forced check against the model's own greedy decoding, token by token."""
    model = small_gpt(5).train()
    g = torch.Generator().manual_seed(0)
    pairs, want = [], []
    for n_prompt, n_answer in ((3, 4), (6, 1), (2, 7), (5, 3)):
        prompt = torch.randint(20, (n_prompt,), generator=g).tolist()
        seq = torch.tensor([prompt])
        with torch.no_grad():
            for _ in range(n_answer):             # greedy decoding, one token at a time
                seq = torch.cat([seq, model.eval()(seq).logits[:, -1:].argmax(-1)], 1)
        own = seq[0, n_prompt:].tolist()
        wrong_last = own[:-1] + [(own[-1] + 1) % 20]
        wrong_first = [(own[0] + 1) % 20] + own[1:]
        pairs += [(prompt, own), (prompt, wrong_last), (prompt, wrong_first)]
        want += [True, False, False]
    model.train()
    assert ft.greedy_matches(model, pairs, pad_id=0).tolist() == want
    assert model.training                         # the model is left in the mode it was in
