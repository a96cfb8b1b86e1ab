"""course_utils.lessons.quantization (notebook 05): exercise checkers, widgets, figures and drivers."""

import pytest
import torch

from course_utils import assets, checkpoints, formats, lm
from course_utils import quantize as Q
from course_utils.lessons import quantization as lab


@pytest.fixture(scope="module")
def course():
    model, tok, _ = checkpoints.load_checkpoint("shakespeare-char")
    ids = torch.tensor(tok.encode(assets.shakespeare("small", "val")))[:4097]
    return model, tok, ids


def test_exercise_checkers_accept_the_solution_and_reject_wrong_answers():
    def right(x):
        scale = x.abs().max() / 127
        return torch.round(x / scale).to(torch.int8), scale

    lab.check_absmax_int8(right)
    for wrong in (lambda x: ((x / (x.abs().max() / 127)).to(torch.int8), x.abs().max() / 127),   # truncates
                  lambda x: (torch.round(x / (x.abs().max() / 127)), x.abs().max() / 127),       # float codes
                  lambda x: (torch.round(x / (x.abs().max() / 255)).clamp(-128, 127).to(torch.int8),
                             x.abs().max() / 255)):
        with pytest.raises(AssertionError):
            lab.check_absmax_int8(wrong)
    lab.check_int4_size_gb(7e9 * 4.25 / 8 / 1e9)
    for wrong in (3.5, 28.0, 14.0, 4.0):
        with pytest.raises(AssertionError):
            lab.check_int4_size_gb(wrong)



def test_widgets_only_offer_valid_settings(course):
    v = lab.vector_quantizer()
    (outlier, bits), fig = v.children[0].children, v.children[2]
    outlier.value = 15.0
    assert fig.data[0].y[-1] == 15.0 and fig.data[4].visible
    bits.value = 3
    assert not fig.data[4].visible and "only at 4 bits" in v.children[1].value
    with pytest.raises(ValueError, match="must divide"):
        lab.vector_quantizer(n=16, group_size=5)
    model, tok, ids = course
    w = lab.model_quantizer(model, tok, ids[:1025])
    (bits, scheme, gran), result = w.children[0].children, w.children[3]
    assert "validation loss" in result.value
    scheme.value = "nf4"
    assert bits.value == 4 and bits.disabled
    scheme.value = "absmax"
    assert not bits.disabled


def test_bf16_epsilon_checker():
    lab.check_bf16_epsilon(2 ** -7)
    for wrong in (2 ** -10, 2 ** -8, 0.01):
        with pytest.raises(AssertionError):
            lab.check_bf16_epsilon(wrong)


def test_bit_explorer_flips_bits_and_updates_every_format():
    w = lab.bit_explorer(1.0)
    number, rows = w.children[0].children[0], {fmt: w.children[2 + i] for i, fmt in enumerate(formats.FORMATS)}
    bf16_bits = rows["bf16"].children[0].children[1:]
    assert "".join(b.description for b in bf16_bits) == formats.to_bits(1.0, "bf16")
    assert bf16_bits[0].style.button_color != bf16_bits[1].style.button_color   # sign and exponent colours
    bf16_bits[-1].click()                                      # flip the last mantissa bit: 1 + 2^-7
    assert float(number.value) == 1.0 + 2 ** -7
    fp32_bits = rows["fp32"].children[0].children[1:]
    assert "".join(b.description for b in fp32_bits) == formats.to_bits(1.0 + 2 ** -7, "fp32")
    number.value = "70000"
    assert "inf" in rows["fp16"].children[1].children[0].value
    e4m3 = rows["fp8_e4m3"].children[0].children[1:]
    for b in e4m3[1:]:                                        # S.1111.111 is the NaN pattern of E4M3
        if b.description == "0":
            b.click()
    assert "NaN" in rows["fp8_e4m3"].children[1].children[0].value
    assert len(lab.spacing_figure().data) == len(formats.FORMATS)


def test_table_formats_columns():
    md = lab.table([{"a": 1.23456, "b": "x"}], ["a", "b"], {"a": "{:.2f}"}).data
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1.23 | x |"]


def test_ordinary_mse_shows_the_outlier_damage():
    calm, wild = lab.ordinary_mse(1.0), lab.ordinary_mse(15.0)
    assert wild["absmax"] > 10 * calm["absmax"] and wild["group"] < wild["absmax"] / 2
    assert set(lab.ordinary_mse(1.0, bits=3)) == {"absmax", "zeropoint", "group"}      # NF4 only at 4 bits


def test_sweep_rows_match_a_direct_evaluation(course):
    model, tok, ids = course
    base = lm.wrap(model, tok).loss(ids)
    rows = lab.sweep(model, tok, ids, [(4, "absmax", "group", 32), (8, "absmax", "row", 32)], base)
    direct = lm.wrap(Q.quantize_model(model, 4, "absmax", "group", 32), tok).loss(ids)
    assert lab.cost(rows, 4, "absmax", "group-32") == pytest.approx(direct - base)
    assert lab.cost(rows, 8, "absmax", "row", key="bytes") == Q.model_bytes(model, 8, "absmax", "row")
    out = lab.outlier_sweep(Q.inject_outlier(model, 20.0), tok, ids, [(4, "absmax", "row", 32)], base,
                            lab.sweep(model, tok, ids, [(4, "absmax", "row", 32)], base))
    assert out[0]["cost with outlier"] > 4 * out[0]["cost without outlier"]
    fig = lab.outlier_figure(out, 20.0)
    assert [t.name for t in fig.data] == ["no outlier", "outlier channel (α = 20)"]
    assert lab.loss_vs_bits_figure(rows, base, "t").layout.title.text == "t"
    assert len(lab.levels_figure().data) == 3
    assert lab.course_sample(model, tok, 20) == lab.course_sample(model, tok, 20)   # seeded


def test_q4_1_block_reads_the_fields_the_gguf_reference_decodes():
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(str(assets.smollm2_gguf_path()))
    t = next(t for t in reader.tensors if t.tensor_type.name == "Q4_1")
    raw = np.asarray(t.data)[:2]                             # two rows of real SmolLM2 blocks
    weights = torch.from_numpy(gguf.dequantize(raw, gguf.GGMLQuantizationType.Q4_1).copy()).reshape(-1).float()
    blocks = raw.tobytes()
    for index in (0, 1, 7):
        blk = lab.q4_1_block(weights, index)
        ref = blocks[index * Q.Q4_1_BYTES:(index + 1) * Q.Q4_1_BYTES]
        d, m = np.frombuffer(ref[:4], dtype=np.float16).astype(float)
        codes = [b & 15 for b in ref[4:]] + [b >> 4 for b in ref[4:]]
        assert (blk["d"], blk["m"], blk["codes"]) == (d, m, codes)
        assert blk["exact"] and torch.equal(blk["decoded"], Q.q4_1_dequantize(ref))
    rows = weights.view(-1, 64)
    lin = torch.nn.Linear(64, len(rows), bias=False)
    with torch.no_grad():
        lin.weight.copy_(rows)
    assert lab.q4_1_reencodes_exactly([lin])


def test_q4_1_block_rejects_bad_indices_and_sees_off_grid_weights():
    x = torch.randn(2, 32, generator=torch.Generator().manual_seed(0))
    blk = lab.q4_1_block(x, 1)
    assert all(0 <= c <= 15 for c in blk["codes"]) and not blk["exact"], "random floats are not on a Q4_1 grid"
    assert (blk["decoded"] - x[1]).abs().max() <= (x[1].max() - x[1].min()) / 15 / 2 + 2e-3
    lin = torch.nn.Linear(32, 2, bias=False)
    assert not lab.q4_1_reencodes_exactly([lin])
    for bad in (2, -1, True, 0.5):
        with pytest.raises(ValueError, match="from 0 to 1"):
            lab.q4_1_block(x, bad)
