import torch
import pytest

from course_utils import assets
from course_utils.assets import AssetError
from course_utils.checkpoints import NAMES, checkpoint_dir, load_checkpoint
from course_utils.train import full_loss


@pytest.mark.parametrize("name", NAMES)
def test_shipped_checkpoint_is_small_and_documented(name):
    folder = checkpoint_dir(name)
    assert (folder / "model.safetensors").stat().st_size <= 20_000_000
    recipe = (folder / "RECIPE.md").read_text(encoding="utf-8")
    model, tok, meta = load_checkpoint(name)
    assert meta["command"] in recipe and meta["command"].startswith("python -m course_utils.train --corpus")
    assert meta["history"][0]["step"] == 0 and len(meta["history"]) > 10
    assert tok.vocab_size == model.config.vocab_size == len(assets.corpus_alphabet())


@pytest.mark.slow
def test_shipped_checkpoint_reaches_its_stated_validation_loss():
    """Re-evaluate on held-out text: the small corpus's validation split (part of the full one's)."""
    model, tok, meta = load_checkpoint("shakespeare-char")
    val = torch.tensor(tok.encode(assets.shakespeare("small", "val")))
    loss = full_loss(model, val, max_tokens=40_000)
    assert loss <= 1.50, f"validation loss {loss:.4f} is above the promised 1.50"
    assert abs(loss - meta["val_loss_full"]) < 0.1     # close to what its recipe reported


def test_overfitting_curve_is_recorded_for_the_small_corpus_model():
    _, _, meta = load_checkpoint("shakespeare-char-small")
    val = [r["val_loss"] for r in meta["history"]]
    train = [r["train_loss"] for r in meta["history"]]
    assert min(val) < 1.5 and val[-1] > min(val) + 1.0          # validation loss turns back up
    assert train[-1] < train[len(train) // 2]                   # while training loss keeps falling


def test_unknown_or_missing_checkpoint(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="shakespeare-char"):
        load_checkpoint("gpt-5")
    import course_utils.checkpoints as ck
    monkeypatch.setattr(ck, "FOLDER", tmp_path)
    with pytest.raises(AssetError, match="course.sh install"):
        load_checkpoint("shakespeare-char")
