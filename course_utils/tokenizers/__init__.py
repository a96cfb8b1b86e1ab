"""Tokenizers written for the course.

* :mod:`.vocab`: fixed vocabularies, ``CharTokenizer`` (one token per character, the Shakespeare
  models) and ``WordTokenizer`` (one per word), on one small ``Vocabulary`` base.
* :mod:`.bpe`: ``BPETokenizer``, byte-level BPE trained from scratch or loaded from tiktoken's
  GPT-2 / GPT-4 / GPT-4o vocabularies, token-for-token identical to tiktoken.
* :mod:`.pieces`: one interface over any tokenizer (tiktoken, course, Hugging Face):
  ``encode``, ``count_tokens``, ``token_pieces`` (id, bytes).
"""
from .bpe import GPT2_PATTERN, GPT4_PATTERN, TIKTOKEN_NAMES, BPETokenizer, merge_pair
from .pieces import count_tokens, encode, piece_label, token_pieces, token_strings
from .vocab import CharTokenizer, Vocabulary, WordTokenizer

__all__ = ["BPETokenizer", "CharTokenizer", "GPT2_PATTERN", "GPT4_PATTERN", "TIKTOKEN_NAMES", "Vocabulary",
           "WordTokenizer", "count_tokens", "encode", "merge_pair", "piece_label", "token_pieces",
           "token_strings"]
