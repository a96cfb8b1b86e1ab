import pytest
import torch

from course_utils import exercises, runtime


def test_threads_default_and_override(monkeypatch):
    monkeypatch.setenv("COURSE_THREADS", "1")
    assert runtime.set_threads() == 1 and torch.get_num_threads() == 1
    monkeypatch.setenv("COURSE_THREADS", "zero")
    with pytest.raises(ValueError, match="COURSE_THREADS='zero'"):
        runtime.default_threads()
    with pytest.raises(ValueError, match="threads"):
        runtime.set_threads(0)


def test_seed_repeats_numbers():
    runtime.seed_everything(7)
    a = torch.rand(3)
    runtime.seed_everything(7)
    assert torch.equal(a, torch.rand(3))
    with pytest.raises(ValueError, match="seed"):
        runtime.seed_everything(-1)


def test_device_is_cpu_by_default_and_checked():
    assert runtime.get_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        assert runtime.get_device().type == "cpu"
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            runtime.get_device("cuda")
    with pytest.raises(ValueError, match="device must be"):
        runtime.get_device("tpu")


def test_setup_makes_tiktoken_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path))
    info = runtime.setup(seed=1, threads=1, quiet=True)
    assert info["threads"] == 1 and info["tiktoken_cache"].startswith(str(tmp_path))


def test_exercise_check_reports_pass_fail_and_not_attempted(capsys):
    def todo():
        raise NotImplementedError

    def wrong():
        assert 1 + 1 == 3, "1 + 1 should be 2"

    def crash():
        return [][1]
    assert exercises.check("ok", lambda: None) is True
    assert exercises.check("todo", todo) is None
    assert exercises.check("wrong", wrong, hints=["think"]) is False
    assert exercises.check("crash", crash) is False
    out = capsys.readouterr().out
    assert "1 + 1 should be 2" in out and "IndexError" in out and "not attempted" in out


def test_seeded_builds_repeatable_weights_without_touching_the_global_stream():
    import torch

    from course_utils.runtime import seeded
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    with seeded(3):
        a = torch.randn(4)
    with seeded(3):
        b = torch.randn(4)
    assert torch.equal(a, b) and torch.equal(torch.rand(2), expected)
