"""Notebook 06's companion: the query helper, the exercise checkers and the live accuracy plot."""

import pytest
import torch
import torch.nn.functional as F

from course_utils import reversal as rv
from course_utils.lessons import reversal_curse as lab


def test_top_names_validates_input(random_world_model):
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    model = random_world_model(tok)
    top = lab.top_names(model, tok, world, "the composer of " + " ".join(world[0].title) + " is called", k=3)
    assert len(top) == 3 and all(0 < p <= 1 for _, p in top) and top[0][1] >= top[-1][1]
    with pytest.raises(ValueError, match="Zorglub"):
        lab.top_names(model, tok, world, "the composer of Zorglub is called")
    with pytest.raises(ValueError, match="k must"):
        lab.top_names(model, tok, world, "the", k=0)
    with pytest.raises(ValueError, match="empty"):
        lab.top_names(model, tok, world, "   ")


# ----------------------------------------------------------------------------- exercise checkers
def test_check_reverse_units():
    lab.check_reverse_units(rv.reverse_units)
    with pytest.raises(AssertionError, match="inside names"):
        lab.check_reverse_units(lambda units: rv.flatten(units)[::-1])
    with pytest.raises(AssertionError):
        lab.check_reverse_units(lambda units: rv.flatten(units))


def test_check_rank_percentile():
    lab.check_rank_percentile(rv.rank_percentile)
    with pytest.raises(AssertionError):   # forgets the ties
        lab.check_rank_percentile(lambda c, d: 100.0 * sum(x > c for x in d) / len(d))
    with pytest.raises(AssertionError):   # counts the wrong side
        lab.check_rank_percentile(lambda c, d: 100.0 * sum(x < c for x in d) / len(d))


def test_check_answer_logprob(random_world_model):
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    model = random_world_model(tok)

    def right(model, tok, prompt, answer):
        ids, total = tok.encode(prompt), 0.0
        for word in answer:
            total += F.log_softmax(model(torch.tensor([ids])).logits[0, -1], -1)[tok.stoi[word]].item()
            ids.append(tok.stoi[word])
        return total

    def first_token_only(model, tok, prompt, answer):
        return F.log_softmax(model(torch.tensor([tok.encode(prompt)])).logits[0, -1], -1)[tok.stoi[answer[0]]].item()

    lab.check_answer_logprob(right, model, tok, world)
    with pytest.raises(AssertionError):
        lab.check_answer_logprob(first_token_only, model, tok, world)


def test_live_accuracy_plot_draws_percentages():
    live = lab.LiveAccuracyPlot()
    live.update({"step": 0, **{key: 0.5 for key, *_ in lab.ACC_KEYS}})
    assert [list(t.y) for t in live.widget.data] == [[50.0]] * 4
    assert live.widget.data[1].line.dash == "dash"
