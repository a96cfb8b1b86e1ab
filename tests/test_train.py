import importlib.util
import json
import math
import pathlib

import pytest
import torch

from course_utils.model import GPT, GPTConfig
from course_utils.train import (CPU_RECIPE, TrainConfig, cpu_recipe, fixed_batches, full_loss, get_batch, lr_at, main,
                                stopped_early, train)

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_lr_schedule_warms_up_then_decays_to_min():
    cfg = TrainConfig(steps=1000, lr=1e-3, min_lr=1e-4, warmup_steps=100)
    assert lr_at(0, cfg) == pytest.approx(1e-5)
    assert lr_at(99, cfg) == pytest.approx(1e-3)
    assert lr_at(550, cfg) == pytest.approx(5.5e-4)
    assert lr_at(1000, cfg) == pytest.approx(1e-4)
    lrs = [lr_at(s, cfg) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_batches_are_shifted_windows():
    data = torch.arange(100)
    x, y = get_batch(data, 8, 4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 8)
    assert torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="block_size"):
        get_batch(torch.arange(5), 8, 1)


def test_fixed_batches_repeat():
    data = torch.arange(500)
    a, b = fixed_batches(data, 8, 2, 3), fixed_batches(data, 8, 2, 3)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(a, b))


def test_full_loss_counts_every_target_once():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=7, block_size=8, n_layer=1, n_head=1, n_embd=8)).eval()
    data = torch.randint(7, (30,))           # 29 targets: windows of 8, 8, 8 and a last one of 5
    manual, count = 0.0, 0
    for s in range(0, 29, 8):
        x, y = data[s:min(s + 8, 29)][None], data[s + 1:min(s + 9, 30)][None]
        manual += model(x, y).loss.item() * y.numel()
        count += y.numel()
    assert count == 29
    assert full_loss(model, data, batch_size=2) == pytest.approx(manual / count, rel=1e-6)


def test_training_learns_a_repeating_pattern_and_callback_can_stop():
    torch.manual_seed(0)
    data = torch.tensor([0, 1, 2, 3, 4, 5] * 200)
    model = GPT(GPTConfig(vocab_size=6, block_size=12, n_layer=1, n_head=2, n_embd=16))
    cfg = TrainConfig(steps=150, batch_size=8, lr=3e-3, warmup_steps=10, eval_interval=50, eval_batches=2)
    history = train(model, data, data, cfg, progress=False)
    assert [r["step"] for r in history] == [0, 50, 100, 150]
    assert history[0]["val_loss"] > math.log(6) - 0.2
    assert history[-1]["val_loss"] < 0.3             # the pattern is fully predictable
    seen = []
    model2 = GPT(GPTConfig(vocab_size=6, block_size=12, n_layer=1, n_head=2, n_embd=16))
    train(model2, data, data, cfg, progress=False, callback=lambda r: seen.append(r["step"]) or r["step"] >= 50)
    assert seen == [0, 50]


def test_bad_train_config():
    with pytest.raises(ValueError, match="min_lr"):
        TrainConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0)


def test_command_line_trains_on_any_text_file(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("héllo wörld, this is a tiny UTF-8 corpus. " * 80, encoding="utf-8")
    out = tmp_path / "model"
    result = main(["--data", str(text), "--out", str(out), "--steps", "30", "--n-layer", "1", "--n-embd", "16",
                   "--n-head", "2", "--block-size", "16", "--batch-size", "4", "--eval-interval", "15",
                   "--eval-batches", "2", "--no-progress", "--threads", "1"])
    meta = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert "ö" in meta["tokenizer"]["chars"]
    assert meta["command"].startswith("python -m course_utils.train --data")
    assert result["val_loss"] < math.log(len(meta["tokenizer"]["chars"]))
    model, _ = GPT.load(out)
    assert model.config.block_size == 16


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


def test_hooks_train_any_objective_and_record_any_metric():
    """batch_fn/loss_fn/eval_fn: a model learns to always predict token 3, without any token tensor."""
    model_cfg, cfg = cpu_recipe(8, steps=60, eval_interval=20, warmup_steps=0, seed=1)
    model = GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=2, n_embd=16))
    seen = []

    def batch_fn(g):
        x = torch.randint(8, (16, 4), generator=g)
        return x, torch.full_like(x, 3)

    def eval_fn(m):
        x = torch.randint(8, (32, 4), generator=torch.Generator().manual_seed(0))
        return {"accuracy": (m(x).logits.argmax(-1) == 3).float().mean().item()}

    history = train(model, None, None, cfg, callback=seen.append, progress=False, batch_fn=batch_fn,
                    eval_fn=eval_fn)
    assert [r["step"] for r in history] == [0, 20, 40, 60] and seen == history
    assert "val_loss" not in history[-1] and "train_loss" not in history[0]
    assert history[-1]["accuracy"] == 1.0 and history[0]["accuracy"] < 0.5
    assert history[-1]["train_loss"] < history[1]["train_loss"]
    assert not stopped_early(history)
    with pytest.raises(ValueError, match="batch_fn"):
        train(model, None, None, cfg, progress=False)


def test_loss_fn_replaces_the_objective():
    model = GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=2, n_embd=16))
    _, cfg = cpu_recipe(8, steps=5, eval_interval=5, seed=0)
    calls = []

    def loss_fn(m, batch):
        calls.append(batch.shape)
        return m(batch).logits.pow(2).mean()      # push every logit to zero

    history = train(model, None, None, cfg, progress=False, loss_fn=loss_fn,
                    batch_fn=lambda g: torch.randint(8, (2, 4), generator=g))
    assert len(calls) == 5 and history[-1]["train_loss"] >= 0


def test_command_line_defaults_are_the_cpu_recipe(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("to be or not to be, that is the question\n" * 300, encoding="utf-8")
    main(["--data", str(text), "--out", str(tmp_path / "m"), "--steps", "3", "--no-progress", "--threads", "1"])
    meta = json.loads((tmp_path / "m" / "config.json").read_text(encoding="utf-8"))
    for key, value in CPU_RECIPE["model"].items():
        assert meta["model"][key] == value, key
    for key in ("batch_size", "lr", "min_lr", "warmup_steps"):
        assert meta["train"][key] == CPU_RECIPE["train"][key], key
    assert meta["train"]["steps"] == 3
