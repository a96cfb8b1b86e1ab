"""BM25 against a hand computation of Robertson & Zaragoza's formula (k1 = 1.5, b = 0.75)."""
import math

import numpy as np
import pytest

from course_utils.retrieval import BM25, idf, recall_at_k, tokenize

DOCS = ["a b b c", "a c", "b d d d e", "e"]          # lengths 4, 2, 5, 1: avgdl = 3


def test_tokenize():
    assert tokenize("Where does Hilvor live? In Pelquinax.") == ["where", "does", "hilvor", "live", "in", "pelquinax"]
    assert tokenize(["Hilvor", "lives", "."]) == ["hilvor", "lives"]
    assert tokenize("Hilvor", lowercase=False) == ["Hilvor"]
    with pytest.raises(TypeError):
        tokenize(3)


def test_idf_formula():
    assert idf(4, np.array([2]))[0] == pytest.approx(math.log(2))        # ln(1 + 2.5 / 2.5)
    assert idf(4, np.array([1]))[0] == pytest.approx(math.log(1 + 3.5 / 1.5))
    assert (idf(10, np.arange(11)) > 0).all(), "the +1 variant never gives a negative weight"


def test_bm25_matches_hand_computation():
    store = BM25(DOCS, k1=1.5, b=0.75)
    assert store.avgdl == 3
    # "b" in doc 0: tf 2, |D| 4 -> idf ln 2 * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 4 / 3)) = ln2 * 5 / 3.875
    assert store.scores("b")[0] == pytest.approx(math.log(2) * 5 / 3.875)
    # "b" in doc 2: tf 1, |D| 5 -> ln2 * 2.5 / (1 + 2.25); "b" is absent from docs 1 and 3
    s = store.scores("b")
    assert s[2] == pytest.approx(math.log(2) * 2.5 / 3.25) and s[1] == s[3] == 0
    # "b e": doc 2 has both (2 * 0.5332), doc 3 only "e" but is short (ln2 * 2.5 / 1.75), then doc 0
    top = store.top("b e", k=3)
    assert [i for i, _ in top] == [2, 3, 0]
    assert top[0][1] == pytest.approx(2 * math.log(2) * 2.5 / 3.25)
    assert top[1][1] == pytest.approx(math.log(2) * 2.5 / 1.75)


def test_bm25_parameters_behave():
    assert (BM25(DOCS, b=0).scores("b")[[0, 2]] > 0).all()
    no_len = BM25(DOCS, k1=1.5, b=0.0)
    assert no_len.scores("e")[2] == pytest.approx(no_len.scores("e")[3]), "b = 0 ignores document length"
    sat = BM25(["x", "x x x x x x x x"], k1=0.0, b=0.0)
    assert sat.scores("x")[0] == pytest.approx(sat.scores("x")[1]), "k1 = 0 ignores repeats"
    assert BM25(DOCS).scores("zzz").sum() == 0
    for bad in (dict(k1=-1), dict(b=1.5)):
        with pytest.raises(ValueError):
            BM25(DOCS, **bad)
    with pytest.raises(ValueError):
        BM25([])
    with pytest.raises(ValueError, match="k must be"):
        BM25(DOCS).top("a", k=9)


def test_recall_at_k():
    assert recall_at_k([[1, 2], [0, 1], [2, 0]], [1, 1, 1], k=1) == pytest.approx(1 / 3)
    assert recall_at_k([[1, 2], [0, 1], [2, 0]], [1, 1, 1], k=2) == pytest.approx(2 / 3)
