"""Notebook 03's companion: compute arithmetic, the live-training display and the exercise checkers."""
import math

import pytest
import torch

from course_utils.lessons import training as lab
from course_utils.model import GPT
from course_utils.train import cpu_recipe, train


def test_compute_arithmetic():
    assert lab.training_flops(175e9, 300e9) == pytest.approx(3.15e23)     # GPT-3's well-known ~3.1e23
    assert lab.chinchilla_tokens(70e9) == pytest.approx(1.4e12)          # Chinchilla: 70 B params, 1.4 T tokens
    with pytest.raises(ValueError, match="tokens"):
        lab.training_flops(1e6, 0)
    assert lab.human_duration(90) == "1.5 minutes"
    assert lab.human_duration(2 * 365.25 * 86400) == "2.0 years"


def test_block_parameters_checker():
    lab.check_block_parameters(lambda d: 12 * d * d + 13 * d)            # the reference passes
    with pytest.raises(AssertionError, match="off by"):
        lab.check_block_parameters(lambda d: 12 * d * d)                 # forgets the biases and LayerNorms
    with pytest.raises(AssertionError, match="int"):
        lab.check_block_parameters(lambda d: float(12 * d * d + 13 * d))


@pytest.fixture(scope="module")
def shakespeare_data():
    from course_utils import assets
    from course_utils.tokenizers import CharTokenizer
    tok = CharTokenizer(assets.corpus_alphabet())
    return torch.tensor(tok.encode(assets.shakespeare("small", "train")[:200_000])), tok.vocab_size


@pytest.mark.slow
def test_learning_rate_checker(shakespeare_data):
    data, V = shakespeare_data
    lab.check_learning_rate(3e-3, data, V, target=2.8)
    for wrong, why in ((1e-5, "barely moved"), (1.0, "not below")):
        with pytest.raises(AssertionError, match=why):
            lab.check_learning_rate(wrong, data, V, target=2.8)
    with pytest.raises(AssertionError, match="lr must be"):
        lab.check_learning_rate(-1, data, V, target=2.8)


def test_live_training_records_samples(shakespeare_data):
    data, V = shakespeare_data
    from course_utils.tokenizers import CharTokenizer
    from course_utils import assets
    tok = CharTokenizer(assets.corpus_alphabet())
    model_cfg, cfg = cpu_recipe(V, steps=20, eval_interval=10, eval_batches=1)
    model = GPT(model_cfg)
    live = lab.LiveTraining(model, tok, sample_length=20)
    history = train(model, data, data, cfg, callback=live, progress=False)
    assert [s["step"] for s in live.samples] == [r["step"] for r in history] == [0, 10, 20]
    assert all(len(s["text"]) == 20 for s in live.samples)
    assert list(live.plot.widget.data[1].y) == [r["val_loss"] for r in history]
    lab.sample_browser(live.samples)
    with pytest.raises(ValueError, match="no samples"):
        lab.sample_browser([])




def test_training_flops_checker():
    lab.check_training_flops(lambda n, d: 6 * n * d)
    with pytest.raises(AssertionError, match="forward pass only"):
        lab.check_training_flops(lambda n, d: 2 * n * d)
    with pytest.raises(AssertionError, match="expected"):
        lab.check_training_flops(lambda n, d: n * d)


def test_tiny_run_does_not_touch_the_global_random_stream(shakespeare_data):
    data, V = shakespeare_data
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    lab.tiny_run(data, V, 3e-3, steps=3)
    assert torch.equal(torch.rand(3), expected)


def test_famous_models_years_follow_six_n_d():
    speed = 1e10                                                      # 10 GFLOP/s
    years = lab.laptop_years(lab.FAMOUS_MODELS, speed)
    assert years["GPT-3 (2020)"] == pytest.approx(3.15e23 / speed / lab.YEAR_SECONDS)
    assert 100 <= years["GPT-2 XL (2019)"] < 1000                     # 8.1e19 FLOPs: centuries at 10 GFLOP/s
    assert all(y > 1e5 for name, y in years.items() if "2019" not in name)
    table = lab.famous_models_table(lab.FAMOUS_MODELS, speed)
    assert table.count("\n") == len(lab.FAMOUS_MODELS) + 1 and "OpenWebText" in table
    with pytest.raises(ValueError, match="positive"):
        lab.laptop_years(lab.FAMOUS_MODELS, 0)


def test_widgets_and_describe():
    from course_utils.checkpoints import load_checkpoint
    box = lab.perplexity_widget(4.4, 83)
    slider, out = box.children
    slider.value = math.log(10)
    assert "<b>10.0</b>" in out.value
    p, _tokens, out = lab.compute_widget(1e10).children
    before = out.value
    p.value = 1e9
    assert out.value != before and "FLOPs" in out.value
    model, _, meta = load_checkpoint("shakespeare-char")
    text = lab.describe(model, meta)
    assert f"{model.num_parameters():,} parameters" in text and "full corpus on a GPU" in text
