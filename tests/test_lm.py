"""The language-model adapter: knobs, seeded generation, cached logits, scoring, chat template."""
import pytest
import torch

from course_utils import lm
from course_utils.checkpoints import load_checkpoint


@pytest.fixture(scope="module")
def char_lm():
    from course_utils.checkpoints import load_checkpoint
    model, tok, _ = load_checkpoint("shakespeare-char")
    return lm.CourseGPT(model, tok)


def test_knobs_validate():
    with pytest.raises(ValueError, match="top_p must be None or in"):
        lm.Knobs(top_p=1.5)
    with pytest.raises(ValueError, match="repetition_penalty"):
        lm.Knobs(repetition_penalty=0)
    assert lm.Knobs(0.0).label() == "greedy"


def test_generation_is_seeded_and_cached_logits_match(char_lm):
    knobs = lm.Knobs(temperature=1.0, top_p=0.9)
    a = char_lm.generate("ROMEO:\n", 40, knobs, seed=3, n=2)
    b = char_lm.generate("ROMEO:\n", 40, knobs, seed=3, n=2)
    c = char_lm.generate("ROMEO:\n", 40, knobs, seed=4, n=2)
    assert a.texts == b.texts and a.texts != c.texts
    assert a.logprobs.shape == a.margins.shape == (2, 40) and (a.logprobs <= 0).all()
    # the KV-cached generation agrees with the model's own generate() when greedy
    ids = torch.tensor([char_lm.encode("ROMEO:\n")])
    ref = char_lm.model.generate(ids, 40, temperature=0)[0, ids.size(1):].tolist()
    assert char_lm.generate("ROMEO:\n", 40, lm.GREEDY).new_ids[0] == ref
    # next_logits equals a plain forward pass
    _, logits = char_lm.next_logits("ROMEO:\n")
    torch.testing.assert_close(logits, char_lm.model(ids).logits[0, -1])


def test_generate_bad_inputs(char_lm):
    with pytest.raises(ValueError, match="not in this model's vocabulary"):
        char_lm.generate("€", 5)
    with pytest.raises(ValueError, match="prompt is empty"):
        char_lm.next_logits("")
    assert len(char_lm.generate("ab", 300).new_ids[0]) == 300        # the course GPT slides its window
    with pytest.raises(ValueError, match="max_new_tokens"):
        char_lm.generate("ab", 0)
    with pytest.raises(ValueError, match="equal token counts"):
        char_lm.generate(["ab", "abc"], 3)



def test_continuation_logprobs_equal_a_token_by_token_sum(char_lm):
    prompt, option = "ROMEO:\nI ", "love"
    got = char_lm.continuation_logprobs(prompt, [option])[0]
    ids = char_lm.encode(prompt + option)
    want = 0.0
    for t in range(len(char_lm.encode(prompt)), len(ids)):
        logits = char_lm.model(torch.tensor([ids[:t]])).logits[0, -1]
        want += logits.log_softmax(-1)[ids[t]].item()
    assert got == pytest.approx(want, abs=1e-4)
    likely, unlikely = char_lm.continuation_logprobs(prompt, ["love", "xqzj"])
    assert likely > unlikely
    with pytest.raises(ValueError, match="empty"):
        char_lm.continuation_logprobs(prompt, [""])


def test_wrap_knows_the_model_kind(char_lm):
    assert lm.wrap(char_lm.model, char_lm.tokenizer).__class__ is lm.CourseGPT
    assert lm.wrap(char_lm, None) is char_lm


@pytest.mark.slow
def test_smollm2_chat_template_and_scoring():
    smol = lm.load_models()["SmolLM2-135M"]
    assert isinstance(smol, lm.HFModel)
    text = smol.decode(smol.chat_ids("Hi"))
    assert text.startswith("<|im_start|>system\n") and text.endswith("<|im_start|>assistant\n")
    own = smol.decode(smol.chat_ids("Hi", system="Be brief."))
    assert "Be brief." in own and "SmolLM" not in own
    paris, rome = smol.continuation_logprobs("The capital of France is", [" Paris", " Rome"])
    assert paris > rome
    assert "Paris" in smol.chat("What is the capital of France?", max_new_tokens=12)
    with pytest.raises(ValueError, match="exceeds the 8,192-token context|exceeds the 8192-token context"):
        smol.generate("Hi", 9000)


def test_one_generation_path_for_the_course_gpt(char_lm):
    """GPT.generate and the adapter share one loop: same tokens, also past the context (the window slides)."""
    prompt = "ROMEO:\n"
    n = char_lm.max_context + 20
    via_adapter = char_lm.generate(prompt, n, lm.Knobs(temperature=0.9), seed=5).new_ids[0]
    ids = torch.tensor([char_lm.encode(prompt)])
    via_model = char_lm.model.generate(ids, n, temperature=0.9, generator=torch.Generator().manual_seed(5))
    assert via_model[0, ids.size(1):].tolist() == via_adapter
    no_cache = char_lm.model.generate(ids, 30, temperature=0, use_cache=False)
    assert torch.equal(no_cache, char_lm.model.generate(ids, 30, temperature=0))
