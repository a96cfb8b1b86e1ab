"""Notebook 01's companion: digit patterns, language counts, widgets and the exercise checkers."""
from __future__ import annotations

import collections

import pytest

from course_utils.lessons import tokenization as lab
from course_utils.tokenizers import BPETokenizer, CharTokenizer, merge_pair



def test_digit_patterns(pairs):
    cl100k = pairs["cl100k_base"][1]
    gpt2 = pairs["gpt2"][1]
    assert lab.digit_pattern_counts(cl100k, 7, 300, seed=1) == collections.Counter({"3-3-1": 300})
    assert len(lab.digit_pattern_counts(gpt2, 7, 300, seed=1)) >= 5, "GPT-2 cuts 7-digit numbers many ways"
    assert lab.digit_pattern_counts(cl100k, 7, 100, commas=True) == collections.Counter({"1-3-3": 100})
    with pytest.raises(ValueError, match="1 to 30"):
        lab.digit_pattern_counts(cl100k, 0)


def test_language_counts_and_figures(pairs):
    counts = lab.language_counts({"cl100k": pairs["cl100k_base"][1], "o200k": pairs["o200k_base"][1]})
    assert counts["o200k"]["Hindi"] < counts["cl100k"]["Hindi"]
    fig = lab.language_figure(counts)
    assert len(fig.data) == 2 and fig.data[0].y[0] == 1.0
    with pytest.raises(ValueError, match="relative_to"):
        lab.language_figure(counts, relative_to="Klingon")


def test_exercise_checkers_accept_solutions_and_reject_wrong_answers(pairs):
    cl100k = pairs["cl100k_base"][1]

    def merge_wrong(ids, pair, new):   # merges overlapping pairs twice
        out = []
        for i, x in enumerate(ids):
            if i + 1 < len(ids) and (x, ids[i + 1]) == pair:
                out.append(new)
            elif not (i > 0 and (ids[i - 1], x) == pair):
                out.append(x)
        return out
    lab.check_merge(merge_pair)
    with pytest.raises(AssertionError):
        lab.check_merge(merge_wrong)

    def mfp(ids):
        return collections.Counter(zip(ids, ids[1:])).most_common(1)[0][0]
    lab.check_most_frequent_pair(mfp)
    with pytest.raises(AssertionError):
        lab.check_most_frequent_pair(lambda ids: (ids[0], ids[1]))

    lab.check_digit_groups(lambda s: [s[i:i + 3] for i in range(0, len(s), 3)], cl100k)
    with pytest.raises(AssertionError):   # right-to-left grouping is not what cl100k does
        lab.check_digit_groups(lambda s: [s[max(0, i - 3):i] for i in range(len(s), 0, -3)][::-1], cl100k)

    lab.check_token_predictions({" strawberry": 1, "1234567": 3}, cl100k)
    with pytest.raises(AssertionError, match="you said 1"):
        lab.check_token_predictions({"strawberry": 1}, cl100k)
    with pytest.raises(NotImplementedError):
        lab.check_token_predictions({"strawberry": None}, cl100k)


def test_widgets_react_to_their_controls(pairs, corpus):
    """What a student does with the notebook-01 widgets changes what they show."""
    cl100k = pairs["cl100k_base"][1]
    trained = BPETokenizer.train(corpus, 400)
    xray = lab.TokenXRay({"cl100k": cl100k, "trained": trained}, text="hello")
    before = xray.out.value
    xray.preset.value = "numbers"
    assert xray.text.value == lab.PRESETS["numbers"] and xray.out.value != before
    assert xray.counts()["cl100k"] == len(cl100k.encode_ordinary(lab.PRESETS["numbers"]))
    xray.text.value = "x" * 5000
    assert "first 2000 characters" in xray.out.value

    box = lab.merge_explorer(trained, "To be, or not to be")
    slider, out = box.children
    assert (slider.min, slider.max) == (256, 400)
    slider.value = 256
    n_bytes_only = out.value
    slider.value = 400
    assert out.value != n_bytes_only and "19 tokens" in n_bytes_only

    explorer = lab.digit_explorer({"cl100k": cl100k}, n_samples=50)
    (length, commas), fig = explorer.children[0].children, explorer.children[1]
    assert list(fig.data[0].x) == ["3-3-1"]
    commas.value = True
    assert list(fig.data[0].x) == ["1-3-3"]
    length.value = 4
    assert list(fig.data[0].x) == ["1-3"]
    with pytest.raises(ValueError, match="at least one tokenizer"):
        lab.TokenXRay({})


def test_next_token_helpers_reject_bad_input(pairs):
    cl100k = pairs["cl100k_base"][1]
    with pytest.raises(ValueError, match="1 to 100"):
        lab.next_token_top(None, cl100k, "hi", k=0)
    with pytest.raises(ValueError, match="single-token"):
        lab.token_probability(None, cl100k, "hi", "strawberry")
    assert "SolidGold" in lab.chunks_html(["a", " SolidGold"])


def test_digit_pattern_and_chips(pairs):
    from transformers import AutoTokenizer

    from course_utils.assets import smollm2_dir
    smol = AutoTokenizer.from_pretrained(str(smollm2_dir(verbose=False)))
    assert lab.digit_pattern(smol, "1234567") == "1-1-1-1-1-1-1"
    assert "id " in lab.chips_html(lab.token_pieces(pairs["gpt2"][1], "😀"))


def test_ids_figure_labels_every_bar_with_the_real_ids(pairs):
    tiktoken_encs = {name: ref for name, (_, ref) in pairs.items()}
    fig = lab.ids_figure(tiktoken_encs, [" hello", "strawberry"])
    for trace, (name, ref) in zip(fig.data, tiktoken_encs.items()):
        assert trace.name == name
        assert list(trace.y) == [len(ref.encode_ordinary(" hello")), len(ref.encode_ordinary("strawberry"))]
        assert trace.text[1] == " ".join(map(str, ref.encode_ordinary("strawberry")))
    with pytest.raises(ValueError, match="at least one"):
        lab.ids_figure(tiktoken_encs, [])


def test_cross_decode_reads_ids_with_other_vocabularies(pairs):
    gpt2, cl100k = pairs["gpt2"][1], pairs["cl100k_base"][1]
    ids = cl100k.encode_ordinary("The quick brown fox")
    out = lab.cross_decode(ids, {"gpt2": gpt2, "cl100k": cl100k})
    assert out["cl100k"] == "The quick brown fox"                   # its own decoder gives the text back
    assert out["gpt2"] == gpt2.decode(ids) != "The quick brown fox"  # another one does not
    big = [100_000]                                                  # beyond GPT-2's 50,257 ids: skipped
    assert list(lab.cross_decode(big, {"gpt2": gpt2, "cl100k": cl100k})) == ["cl100k"]
    assert lab.vocab_size(gpt2) == 50257


@pytest.mark.slow
def test_digit_probability_after_a_trailing_space():
    from course_utils.assets import load_smollm2
    model, tok = load_smollm2(verbose=False)
    after_space = lab.digit_probability(model, tok, "The capital of France is ")
    plain = lab.digit_probability(model, tok, "The capital of France is")
    assert after_space > 0.5 > 100 * plain                            # pilot: 0.95 and 1.5e-5
    chips = lab.ids_html(tok, tok.encode("<|im_start|>user"))
    assert "im_start" in chips and "<sub" in chips
    with pytest.raises(ValueError, match="one token per digit"):
        lab.digit_probability(None, CharTokenizer("ab"), "x")           # no digit tokens at all


# ------------------------------------------------- SmolLM2's shipped addition measurement
def test_addition_results_are_complete_and_consistent():
    from course_utils import arithmetic as ar
    from course_utils.lessons.tokenization_addition import BATCH_SIZE

    res = lab.load_addition_results()
    for key in ("command", "date", "model", "seed", "n_problems", "torch", "transformers"):
        assert res[key] not in (None, ""), key
    assert res["command"].startswith("python -m course_utils.lessons.tokenization_addition")
    assert "SmolLM2-135M-Instruct" in res["model"] and res["batch_size"] == BATCH_SIZE
    assert sorted((r["n_digits"], r["separators"]) for r in res["runs"]) == \
        sorted((n, s) for n in range(1, 7) for s in (False, True))
    for run in res["runs"]:
        problems = ar.make_problems(res["n_problems"], run["n_digits"], res["seed"])
        assert [(p["a"], p["b"]) for p in run["problems"]] == [(p.a, p.b) for p in problems]
        for p in run["problems"]:
            assert p["parsed"] == ar.parse_number(p["reply"]) and p["correct"] == (p["parsed"] == p["a"] + p["b"])
        assert run["accuracy"] == sum(p["correct"] for p in run["problems"]) / res["n_problems"]
        assert 0 <= lab.digit_accuracy(run) <= 1
    # up to 3 digits the two ways of writing a number are the same question: same answers
    for n in (1, 2, 3):
        plain, sep = lab.addition_run(res, n, False), lab.addition_run(res, n, True)
        assert [p["parsed"] for p in plain["problems"]] == [p["parsed"] for p in sep["problems"]]
    with pytest.raises(ValueError, match="n_digits=9"):
        lab.addition_run(res, 9, False)


def test_digit_accuracy_counts_positions_from_the_units():
    run = {"problems": [{"a": 120, "b": 3, "parsed": 123}, {"a": 120, "b": 3, "parsed": 923},
                        {"a": 120, "b": 3, "parsed": 1123}, {"a": 120, "b": 3, "parsed": None}]}
    assert lab.digit_accuracy(run) == pytest.approx((1 + 2 / 3 + 3 / 4 + 0) / 4)


def test_addition_figure_and_live_check_arguments():
    res = lab.load_addition_results()
    fig = lab.addition_figure(res)
    assert len(fig.data) == 4 and "SmolLM2" in fig.layout.title.text
    exact = lab.addition_table(res)
    assert list(fig.data[0].y) == [100 * exact[False][n] for n in range(1, 7)]
    for bad in (0, 1.5, True):
        with pytest.raises(ValueError, match="batches"):
            lab.addition_live_check(None, res, batches=bad)


@pytest.mark.slow
def test_recorded_addition_replies_are_reproduced():
    """Re-ask the first batch of two recorded settings: greedy decoding must give the recorded replies."""
    from course_utils.assets import load_smollm2
    from course_utils.lm import HFModel

    smol = HFModel(*load_smollm2(verbose=False))
    res = lab.load_addition_results()
    for n, separators in ((2, False), (5, True)):
        live = lab.addition_live_check(smol, res, n_digits=n, separators=separators)
        assert live["n_problems"] == res["batch_size"]
        assert live["agree"] == live["n_problems"], live["mismatches"][:2]
        assert live["live_accuracy"] == live["recorded_accuracy"]
