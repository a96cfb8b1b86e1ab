"""course_utils.arithmetic: formats, parsing, carries, chunking (against tiktoken) and the SmolLM2 measurement."""
import random

import pytest
import torch

from course_utils import arithmetic as ar
from course_utils.model import GPT, GPTConfig


def test_formats_of_one_problem():
    p = ar.Problem(128, 395)
    assert ar.prompt(p) == "128+395="
    assert ar.target(p, "plain") == "523."
    assert ar.target(p, "reversed") == "325."
    assert ar.target(p, "scratchpad") == "[8+5+0=13,2+9+1=12,1+3+1=5]523."
    assert ar.prompt(p, width=4) == "0128+0395="
    assert ar.target(p, "reversed", width=3) == "3250."
    with pytest.raises(ValueError, match="unknown format"):
        ar.target(p, "roman")
    with pytest.raises(ValueError, match="more than 2 digits"):
        ar.prompt(p, width=2)


def test_carries_against_column_addition():
    assert ar.carries(128, 395) == [1, 1, 0]
    assert ar.carries(999, 1) == [1, 1, 1]
    rng = random.Random(0)
    for _ in range(300):
        a, b = rng.randrange(10 ** 5), rng.randrange(10 ** 5)
        # a carry out of position i happens exactly when the low i+1 digits overflow
        want = [int(a % 10 ** (i + 1) + b % 10 ** (i + 1) >= 10 ** (i + 1))
                for i in range(max(len(str(a)), len(str(b))))]
        assert ar.carries(a, b) == want


@pytest.mark.parametrize("fmt", ar.FORMATS)
@pytest.mark.parametrize("width", [None, 4])
def test_parse_inverts_target(fmt, width):
    tok = ar.make_tokenizer(fmt)
    for p in ar.make_problems(200, 1, seed=3, max_digits=4):
        text = ar.target(p, fmt, width)
        assert ar.parse_answer(text, fmt) == p.answer
        assert ar.exact_match(text, p, fmt)
        assert tok.decode(tok.encode(ar.prompt(p, width) + text)) == ar.prompt(p, width) + text
    assert ar.parse_answer("12", fmt) is None              # no end marker
    assert ar.parse_answer("1a2.", fmt) is None


def test_scratchpad_steps_are_right():
    rng = random.Random(1)
    for _ in range(100):
        a, b = rng.randrange(10 ** 4), rng.randrange(10 ** 4)
        steps = ar.scratchpad(a, b)[1:-1].split(",")
        digits = "".join(str(int(s.split("=")[1]) % 10) for s in steps)[::-1]
        last_carry = int(steps[-1].split("=")[1]) // 10
        assert int(str(last_carry) + digits) == a + b


def test_chunks_match_gpt4_tokenizer():
    from course_utils.assets import get_encoding
    enc = get_encoding("cl100k_base")
    tok = ar.ChunkTokenizer()
    rng = random.Random(2)
    for _ in range(100):
        s = str(rng.randrange(10 ** rng.randint(1, 9)))
        assert ar.chunk_digits(s) == [enc.decode([t]) for t in enc.encode(s)], s
    assert tok.split("1234+56=") == ["123", "4", "+", "56", "="]
    assert tok.vocab_size == 1110 + 6


def test_make_problems_is_seeded_and_has_the_digits():
    a = ar.make_problems(50, 3, seed=7)
    assert a == ar.make_problems(50, 3, seed=7) and a != ar.make_problems(50, 3, seed=8)
    assert all(len(str(p.a)) == len(str(p.b)) == 3 for p in a)
    mixed = ar.make_problems(400, 1, seed=0, max_digits=3)
    assert {len(str(p.a)) for p in mixed} == {1, 2, 3}
    for bad in (0, 31, 1.5):
        with pytest.raises(ValueError, match="n_digits"):
            ar.make_problems(5, bad)


def test_training_batch_masks_the_prompt():
    tok = ar.make_tokenizer("plain")
    x, y = ar.training_batch([ar.Problem(12, 7), ar.Problem(5, 5)], "plain", tok)
    # "12+7=" is 5 tokens: the first target is the answer's first digit, predicted after "="
    assert (y[0, :4] == -1).all() and tok.decode(y[0, 4:7]) == "19."
    assert (y[1, :3] == -1).all() and tok.decode(y[1, 3:6]) == "10." and (y[1, 6:] == -1).all()
    assert tok.decode(x[0, :7]) == "12+7=19"


def test_generate_answers_batches_like_one_by_one():
    tok = ar.make_tokenizer("plain")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=24, n_layer=1, n_head=2, n_embd=16))
    probs = ar.make_problems(12, 1, seed=0, max_digits=3)
    together = ar.generate_answers(model, tok, probs, "plain", max_new_tokens=6)
    alone = [ar.generate_answers(model, tok, [p], "plain", max_new_tokens=6)[0] for p in probs]
    assert together == alone


def test_wrong_digits_and_parse_number():
    assert ar.wrong_digits(579, 579) == []
    assert ar.wrong_digits(569, 579) == [1]
    assert ar.wrong_digits(79, 579) == [2]
    assert ar.parse_number("The answer is 1,234.") == 1234
    assert ar.parse_number("579") == 579 and ar.parse_number("no idea") is None


@pytest.mark.slow
def test_smollm2_batched_answers_equal_unbatched():
    from course_utils.assets import load_smollm2
    from course_utils.lm import HFModel
    lm = HFModel(*load_smollm2(verbose=False))
    qs = [ar.QUESTION.format(a=3, b=4), ar.QUESTION.format(a=12345, b=67890)]
    batched = ar.chat_answers(lm, qs, max_new_tokens=8)
    alone = [lm.chat(q, max_new_tokens=8, system=ar.SYSTEM) for q in qs]
    assert batched == alone                     # left padding changes nothing
    assert ar.chat_answers(lm, qs[:1], 3, prefixes=["3 + 4 = "]) == ["7"]
    acc, details = ar.addition_accuracy(lm, 1, n_problems=10, return_details=True)
    assert len(details) == 10 and acc >= 0.7, f"SmolLM2 should add one-digit numbers, got {acc:.0%}"
