"""Notebook 03's helpers (course_utils.pretraining), the trainer's time limit and the CPU recipe."""
import importlib.util
import math
import pathlib

import pytest
import torch

from course_utils import pretraining as pt
from course_utils.model import GPT
from course_utils.train import CPU_RECIPE, TrainConfig, cpu_recipe, train

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_uniform_loss_and_perplexity():
    assert pt.uniform_loss(65) == pytest.approx(4.1744, abs=1e-4)
    assert pt.perplexity(pt.uniform_loss(83)) == pytest.approx(83)
    assert pt.perplexity(0) == 1
    for bad in (-0.1, float("nan"), float("inf"), 51, "2"):
        with pytest.raises(ValueError, match="loss"):
            pt.perplexity(bad)
    with pytest.raises(ValueError, match="vocab_size"):
        pt.uniform_loss(0)


def test_compute_arithmetic():
    assert pt.training_flops(175e9, 300e9) == pytest.approx(3.15e23)     # GPT-3's well-known ~3.1e23
    assert pt.chinchilla_tokens(70e9) == pytest.approx(1.4e12)          # Chinchilla: 70 B params, 1.4 T tokens
    with pytest.raises(ValueError, match="tokens"):
        pt.training_flops(1e6, 0)
    assert pt.human_duration(90) == "1.5 minutes"
    assert pt.human_duration(2 * 365.25 * 86400) == "2.0 years"


def test_block_parameters_checker():
    pt.check_block_parameters(lambda d: 12 * d * d + 13 * d)            # the reference passes
    with pytest.raises(AssertionError, match="off by"):
        pt.check_block_parameters(lambda d: 12 * d * d)                 # forgets the biases and LayerNorms
    with pytest.raises(AssertionError, match="int"):
        pt.check_block_parameters(lambda d: float(12 * d * d + 13 * d))


def test_causal_mask_checker():
    pt.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril())
    with pytest.raises(AssertionError, match="future"):
        pt.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool))          # no mask at all
    with pytest.raises(AssertionError, match="itself"):
        pt.check_causal_mask(lambda T: torch.ones(T, T, dtype=torch.bool).tril(-1))  # forgets the diagonal
    with pytest.raises(AssertionError, match="dtype"):
        pt.check_causal_mask(lambda T: torch.ones(T, T).tril())


@pytest.fixture(scope="module")
def shakespeare_data():
    from course_utils import assets
    from course_utils.tokenizers import CharTokenizer
    tok = CharTokenizer(assets.corpus_alphabet())
    return torch.tensor(tok.encode(assets.shakespeare("small", "train")[:200_000])), tok.vocab_size


@pytest.mark.slow
def test_learning_rate_checker(shakespeare_data):
    data, V = shakespeare_data
    pt.check_learning_rate(3e-3, data, V, target=2.8)
    for wrong, why in ((1e-5, "barely moved"), (1.0, "not below")):
        with pytest.raises(AssertionError, match=why):
            pt.check_learning_rate(wrong, data, V, target=2.8)
    with pytest.raises(AssertionError, match="lr must be"):
        pt.check_learning_rate(-1, data, V, target=2.8)


def test_cpu_recipe_and_overrides():
    model_cfg, cfg = cpu_recipe(65, steps=10, seed=3)
    assert (model_cfg.n_layer, model_cfg.n_embd, model_cfg.block_size) == (
        CPU_RECIPE["model"]["n_layer"], CPU_RECIPE["model"]["n_embd"], CPU_RECIPE["model"]["block_size"])
    assert cfg.steps == 10 and cfg.seed == 3 and cfg.lr == CPU_RECIPE["train"]["lr"]
    with pytest.raises(ValueError, match="unknown recipe setting"):
        cpu_recipe(65, learning_rate=1)
    with pytest.raises(ValueError, match="time_limit"):
        TrainConfig(time_limit=0)


def test_time_limit_stops_and_marks_history():
    torch.manual_seed(0)
    model_cfg, cfg = cpu_recipe(20, steps=100_000, eval_batches=1, eval_interval=10**6, time_limit=0.5)
    data = torch.randint(20, (5000,))
    history = train(GPT(model_cfg), data, data, cfg, progress=False)
    assert history[-1].get("stopped") is True
    assert 0 < history[-1]["step"] < 100_000


def test_live_training_records_samples(shakespeare_data):
    data, V = shakespeare_data
    from course_utils.tokenizers import CharTokenizer
    from course_utils import assets
    tok = CharTokenizer(assets.corpus_alphabet())
    model_cfg, cfg = cpu_recipe(V, steps=20, eval_interval=10, eval_batches=1)
    model = GPT(model_cfg)
    live = pt.LiveTraining(model, tok, sample_length=20)
    history = train(model, data, data, cfg, callback=live, progress=False)
    assert [s["step"] for s in live.samples] == [r["step"] for r in history] == [0, 10, 20]
    assert all(len(s["text"]) == 20 for s in live.samples)
    assert list(live.plot.widget.data[1].y) == [r["val_loss"] for r in history]
    pt.sample_browser(live.samples)
    with pytest.raises(ValueError, match="no samples"):
        pt.sample_browser([])


def test_benchmark_reports_json(tmp_path, capsys):
    """The benchmark script runs end to end on a tiny text and prints one JSON object last."""
    import json
    spec = importlib.util.spec_from_file_location("train_speed", ROOT / "benchmarks" / "train_speed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    text = ("ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 200)
    f = tmp_path / "t.txt"
    f.write_text(text, encoding="utf-8")
    result = bench.main(["--data", str(f), "--target-val-loss", "10", "--steps", "5", "--threads", "1",
                         "--no-progress"])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert json.loads(last) == result
    assert result["reached"] is True and math.isfinite(result["val_loss"])
    assert {"wall_seconds", "tokens_per_second", "val_loss", "reached"} <= set(result)
    assert bench.split_text("abcdefghij") == ("abcdefghi", "j")
