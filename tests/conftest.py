"""Fixtures shared by the core tests and the companions' tests."""
import pytest
import torch

from course_utils.assets import get_encoding, shakespeare
from course_utils.model import GPT, GPTConfig
from course_utils.tokenizers import BPETokenizer

TIKTOKEN_TESTED = ("gpt2", "cl100k_base", "o200k_base")


@pytest.fixture(scope="module")
def pairs():
    """(course BPETokenizer, tiktoken Encoding) for three real vocabularies."""
    return {name: (BPETokenizer.from_tiktoken(name), get_encoding(name)) for name in TIKTOKEN_TESTED}


@pytest.fixture(scope="module")
def corpus() -> str:
    return shakespeare("small", "val")[:30_000]


@pytest.fixture
def random_world_model():
    """A small untrained GPT for a word vocabulary: random_world_model(tok, seed=0)."""
    def make(tok, seed: int = 0) -> GPT:
        torch.manual_seed(seed)
        return GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=18, n_layer=1, n_head=2, n_embd=32)).eval()
    return make
