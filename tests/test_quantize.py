"""course_utils.quantize: the schemes, model quantization, the outlier channel and Q4_1."""
import math

import pytest
import torch

from course_utils import assets, checkpoints, lm, train
from course_utils import quantize as Q


@pytest.fixture(scope="module")
def course():
    model, tok, _ = checkpoints.load_checkpoint("shakespeare-char")
    ids = torch.tensor(tok.encode(assets.shakespeare("small", "val")))[:4097]
    return model, ids


def loss(model, ids, window=256):
    """The course GPT's loss over ``ids`` through the one adapter (lm.wrap)."""
    return lm.wrap(model, checkpoints.load_checkpoint("shakespeare-char")[1]).loss(ids, window)


def tiny_llama(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True)
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():   # non-trivial norm gains, as in a trained model
        for m in model.modules():
            if type(m).__name__ == "LlamaRMSNorm":
                m.weight.uniform_(0.5, 1.5)
    return model


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_absmax_error_is_at_most_half_a_step(bits):
    x = torch.randn(5, 64, generator=torch.Generator().manual_seed(bits))
    q, scale = Q.absmax_quantize(x, bits)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) == qmax
    assert torch.allclose(scale.squeeze(1), x.abs().amax(1) / qmax)
    err = (Q.absmax_dequantize(q, scale) - x).abs()
    assert (err <= scale / 2 + 1e-6).all()


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_zeropoint_uses_all_levels_and_keeps_zero_exact(bits):
    x = torch.rand(4, 64, generator=torch.Generator().manual_seed(0)) * 3 - 1   # mostly positive
    x[:, 0] = 0.0
    q, scale, zero = Q.zeropoint_quantize(x, bits)
    assert int(q.min()) == 0 and int(q.max()) == 2 ** bits - 1
    deq = Q.zeropoint_dequantize(q, scale, zero)
    assert (deq[:, 0] == 0).all()
    assert ((deq - x).abs() <= scale / 2 + 1e-6).all()
    # asymmetric beats symmetric on skewed data
    sym = Q.fake_quantize(x, bits, "absmax", "row")
    assert ((deq - x) ** 2).mean() < ((sym - x) ** 2).mean()


def test_nf4_levels_are_the_qlora_table_and_rounding_is_nearest():
    lv = Q.NF4_LEVELS
    assert len(lv) == 16 and lv[0] == -1 and lv[-1] == 1 and (lv == 0).sum() == 1
    assert (lv[1:] > lv[:-1]).all()
    assert math.isclose(lv[8].item(), 0.07958029955625534) and math.isclose(lv[1].item(), -0.6961928009986877)
    x = torch.randn(3, 64, generator=torch.Generator().manual_seed(1))
    idx, scale = Q.nf4_quantize(x)
    brute = ((x / scale)[..., None] - lv).abs().argmin(-1)
    assert torch.equal(idx.long(), brute)
    # on normal data NF4 beats int4 absmax with the same block
    nf4 = Q.fake_quantize(x, 4, "nf4", "row")
    int4 = Q.fake_quantize(x, 4, "absmax", "row")
    assert ((nf4 - x) ** 2).mean() < ((int4 - x) ** 2).mean()


def test_granularities_and_scale_counts():
    w = torch.randn(6, 64, generator=torch.Generator().manual_seed(2))
    assert Q.n_scales((6, 64), "tensor") == 1 and Q.n_scales((6, 64), "row") == 6
    assert Q.n_scales((6, 64), "group", 16) == 24 and Q.n_scales((6, 64), "column") == 64
    errs = {g: ((Q.fake_quantize(w, 4, "absmax", g, 16) - w) ** 2).mean() for g in ("tensor", "row", "group")}
    assert errs["group"] < errs["row"] < errs["tensor"]
    g = Q.fake_quantize(w, 3, "absmax", "group", 16)
    for block in g.reshape(-1, 16):
        assert len(torch.unique(block)) <= 2 ** 3
    col = Q.fake_quantize(w, 4, "absmax", "column")
    for j in range(64):
        assert len(torch.unique(col[:, j])) <= 15


def test_bad_inputs_raise_clear_errors():
    w = torch.randn(4, 48)
    for bits in (1, 9, 4.0, True):
        with pytest.raises(ValueError, match="bits must be a whole number from 2 to 8"):
            Q.fake_quantize(w, bits)
    with pytest.raises(ValueError, match="group_size=32 does not divide the dimension 48"):
        Q.fake_quantize(w, 4, "absmax", "group", 32)
    with pytest.raises(ValueError, match="unknown scheme 'int4'"):
        Q.fake_quantize(w, 4, "int4")
    with pytest.raises(ValueError, match="unknown granularity 'channel'"):
        Q.fake_quantize(w, 4, "absmax", "channel")
    with pytest.raises(ValueError, match="NF4 has 16 levels"):
        Q.fake_quantize(w, 3, "nf4")
    with pytest.raises(ValueError, match="alpha must be a positive"):
        Q.inject_outlier(tiny_llama(), alpha=0)
    with pytest.raises(ValueError, match=r"channel must be a whole number in 0\.\.31"):
        Q.inject_outlier(tiny_llama(), channel=32)


def test_language_model_loss_is_the_trainers_full_loss_and_counts_a_partial_window(course):
    model, ids = course
    for n in (2049, 2100):                          # 8 full windows; 8 full + one of 50 targets
        assert math.isclose(loss(model, ids[:n]), train.full_loss(model, ids[:n]), rel_tol=1e-5)
    with torch.no_grad():                           # by hand: each window separately, summed
        x = ids[:2099]
        manual = sum(torch.nn.functional.cross_entropy(model(x[s:s + 256][None]).logits[0], ids[s + 1:min(s + 257, 2100)],
                                                       reduction="sum").item() for s in range(0, 2099, 256))
    assert math.isclose(loss(model, ids[:2100]), manual / 2099, rel_tol=1e-5)
    smol_like = lm.HFModel(tiny_llama(), None)
    ids = torch.randint(0, 50, (40,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = smol_like.model(input_ids=ids[None, :-1]).logits[0]
    assert math.isclose(smol_like.loss(ids, window=39), torch.nn.functional.cross_entropy(logits, ids[1:]).item(),
                        rel_tol=1e-5)
    with pytest.raises(ValueError, match="window=300 is longer than the 256-token context"):
        loss(model, ids, window=300)
    with pytest.raises(ValueError, match="1-D tensor"):
        loss(model, ids[None])


def test_quantize_model_works_on_a_copy_and_sizes_add_up(course):
    model, ids = course
    before = {k: v.clone() for k, v in model.state_dict().items()}
    q = Q.quantize_model(model, 4, "absmax", "group", 32)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "original changed"
    assert torch.equal(q.tok_emb.weight, model.tok_emb.weight) and q.head.weight is q.tok_emb.weight
    linears = Q.quantizable_linears(q)
    assert len(linears) == 4 * model.config.n_layer and all("head" not in n for n, _ in linears)
    w = dict(linears)["blocks.0.mlp.fc"].weight
    assert max(len(torch.unique(b)) for b in w.reshape(-1, 32)) <= 16
    assert Q.model_bytes(model) == 4 * model.num_parameters()
    lin_params = sum(m.weight.numel() for _, m in linears)
    lin_rows = sum(m.weight.shape[0] for _, m in linears)
    expected = 4 * (model.num_parameters() - lin_params) + lin_params + 2 * lin_rows
    assert Q.model_bytes(model, 8, "absmax", "row") == expected


def test_quantized_context_restores_weights():
    model = tiny_llama()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with Q.quantized(model, 2, "absmax", "row"):
        assert not torch.equal(model.model.layers[0].mlp.up_proj.weight, before["model.layers.0.mlp.up_proj.weight"])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_outlier_injection_preserves_function(course, seed):
    llama = tiny_llama(seed)
    ids = torch.randint(0, 50, (2, 12), generator=torch.Generator().manual_seed(seed))
    out = Q.inject_outlier(llama, 20.0, channel=seed * 7)
    with torch.no_grad():
        assert torch.allclose(llama(input_ids=ids).logits, out(input_ids=ids).logits, atol=1e-4)
    assert out.model.layers[0].self_attn.q_proj.weight[:, seed * 7].abs().mean() > \
        10 * llama.model.layers[0].self_attn.q_proj.weight[:, seed * 7].abs().mean()
    model, tok_ids = course
    gout = Q.inject_outlier(model, 20.0, channel=seed)
    x = tok_ids[:200][None]
    with torch.no_grad():
        assert torch.allclose(model(x).logits, gout(x).logits, atol=1e-3)


@pytest.mark.parametrize("channel", [0, 57, 150])
def test_outlier_claims_hold_for_other_channels(course, channel):
    """int8 is nearly free; with the outlier, int4 per-row collapses while groups and per-column recover."""
    model, ids = course
    base = loss(model, ids)
    assert loss(Q.quantize_model(model, 8, "absmax", "row"), ids) - base < 0.01
    out = Q.inject_outlier(model, 20.0, channel=channel)
    cost = {g: loss(Q.quantize_model(out, 4, "absmax", g, 32), ids) - base for g in ("row", "group", "column")}
    assert cost["row"] > 0.5, cost
    assert cost["row"] > 4 * cost["group"] and cost["row"] > 4 * cost["column"], cost


def test_q4_1_matches_gguf_reference():
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(assets.smollm2_gguf_path()))
    t = next(t for t in reader.tensors if t.tensor_type.name == "Q4_1")
    raw = np.asarray(t.data)[:64]                      # first 64 rows of blocks
    ours = Q.q4_1_dequantize(raw.tobytes())
    ref = torch.from_numpy(gguf.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).copy()).reshape(-1).float()
    assert torch.equal(ours, ref)
    # encoding the decoded weights gives the very same bytes back
    assert Q.q4_1_quantize(ours) == raw.tobytes()
    assert Q.bits_per_weight(4, 32, 16, 16) == 5.0 == 8 * Q.Q4_1_BYTES / Q.Q4_1_BLOCK
    summary = {r["type"]: r for r in Q.gguf_summary(assets.smollm2_gguf_path())}
    assert summary["Q4_1"]["bits per weight"] == 5.0 and summary["Q8_0"]["bits per weight"] == 8.5


def test_q4_1_round_trip_error_is_within_half_a_step():
    x = torch.randn(8 * 32, generator=torch.Generator().manual_seed(3))
    back = Q.q4_1_dequantize(Q.q4_1_quantize(x))
    step = (x.view(-1, 32).amax(1) - x.view(-1, 32).amin(1)) / 15
    assert ((back - x).view(-1, 32).abs() <= step[:, None] / 2 + 2e-3).all()
    with pytest.raises(ValueError, match="multiple of 20 bytes"):
        Q.q4_1_dequantize(b"\x00" * 21)


def test_dynamic_int8_is_smaller_and_close_on_a_tiny_model():
    model = tiny_llama()
    q = Q.dynamic_int8(model)
    assert Q.state_dict_bytes(q) < Q.state_dict_bytes(model)
    ids = torch.randint(0, 50, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(input_ids=ids).logits, q(input_ids=ids).logits
    assert (a - b).abs().max() < 0.1 * a.abs().max()


def test_timing_and_activation_outliers_take_the_adapter(course):
    model, ids = course
    adapter = lm.wrap(model, checkpoints.load_checkpoint("shakespeare-char")[1])
    t = Q.time_forward(adapter, ids[:64][None], repeats=1)
    assert t["cpu_s"] > 0 and t["wall_s"] > 0
    rows = Q.activation_outliers(adapter, ids[:64][None])
    assert len(rows) == len(Q.quantizable_linears(model))
    assert rows[0]["max / median"] >= rows[-1]["max / median"] and rows[0]["max |x|"] > rows[0]["median |x|"]
