"""Character-level Shakespeare models trained by the course's own trainer, shipped in the package.

``shakespeare-char``        6 layers, 2.7 M parameters, trained on the full 5 MB corpus.
``shakespeare-char-small``  the same model trained on the 1 MB corpus until it over-fits;
                            its config records the whole train/validation curve and the
                            weights are those of the best validation loss.

Each folder holds ``model.safetensors``, ``config.json`` (model config, tokenizer, training
recipe, history, the exact command) and ``RECIPE.md``.
"""
from __future__ import annotations

import pathlib

from .assets import AssetError
from .model import GPT
from .tokenizers import CharTokenizer

FOLDER = pathlib.Path(__file__).with_name("checkpoints")
NAMES = ("shakespeare-char", "shakespeare-char-small")


def checkpoint_dir(name: str = "shakespeare-char") -> pathlib.Path:
    if name not in NAMES:
        raise ValueError(f"unknown checkpoint {name!r}; the course ships {', '.join(NAMES)}")
    path = FOLDER / name
    if not (path / "model.safetensors").exists():
        raise AssetError(f"checkpoint {name}", f"{path / 'model.safetensors'} is missing",
                         "reinstall the course: ./course.sh install")
    return path


def load_checkpoint(name: str = "shakespeare-char", device: str = "cpu") -> tuple[GPT, CharTokenizer, dict]:
    """(model in eval mode, its character tokenizer, its config.json as a dict)."""
    try:
        model, meta = GPT.load(checkpoint_dir(name), device=device)
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, ValueError) and "unknown checkpoint" in str(exc):
            raise
        raise AssetError(f"checkpoint {name}", f"could not be loaded ({exc})",
                         "reinstall the course: ./course.sh install") from exc
    return model, CharTokenizer.from_dict(meta["tokenizer"]), meta
