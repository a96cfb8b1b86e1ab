"""Notebook 06's companion: the query helper, the exercise checkers and the live accuracy plot."""

import pytest
import torch
import torch.nn.functional as F

from course_utils import reversal as rv
from course_utils.lessons import reversal_curse as lab
from course_utils.model import GPT, GPTConfig


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


# ----------------------------------------------------------------------------- tables and widgets
def _fake_result(world, value=0.5):
    keys = ["same_direction_accuracy", "reverse_accuracy", "reverse_rank_percentile"]
    res = {k + sfx: value for k in keys for sfx in ("", "_n2d", "_d2n")}
    res["history"] = [{"step": s, **{key: value * s / 100 for key, *_ in lab.ACC_KEYS}} for s in (0, 100)]
    return res


def test_results_and_recipe_tables_show_the_numbers():
    res = _fake_result(None, 0.25)
    html = lab.results_table(res).data
    assert html.count("25%") == 6 and "N2D facts" in html and "0.2" in html
    runs = [{"recipe": "a", "seed": s, "x": float(s), "history": []} for s in (1, 3)] + [{"recipe": "b", "seed": 0, "x": 9.0, "history": []}]
    mean = lab.mean_over_seeds(runs, "a")
    assert mean["x"] == 2.0 and mean["seeds"] == [1, 3]
    with pytest.raises(ValueError, match="no run of recipe 'c'"):
        lab.mean_over_seeds(runs, "c")
    table = lab.recipes_table({"plain": res, "other": {**res, "seeds": [4, 5]}}, plain_seed=0).data
    assert "<td>4, 5</td>" in table and "<td>0</td>" in table


def test_world_table_lists_facts_of_each_subset():
    world = rv.make_world(30, 0)
    html = lab.world_table(world, per_subset=2).data
    assert html.count("<tr>") == 1 + 2 * 3 and "2 of 10 per subset" in html and str(world[0]) in html


def test_query_box_redraws_and_reports_unknown_words(random_world_model):
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    box = lab.query_box(random_world_model(tok), tok, world)
    pick, text, note, fig = box.children
    assert len(fig.data[0].x) == 5 and "Right answer" in note.value
    before = list(fig.data[0].y)
    pick.value = pick.options[-1][1]
    assert list(fig.data[0].y) != before and pick.value.subset in ("both", "d2n", "n2d")
    text.value = "the composer of Zorglub is called"
    assert "Zorglub" in note.value and "color" in note.value


def test_recipe_curves_switch_history():
    world = rv.make_world(30, 0)
    box = lab.recipe_curves({"plain": _fake_result(world, 0.0), "fix": _fake_result(world, 1.0)})
    pick, fig = box.children
    assert list(fig.data[0].y) == [0.0, 0.0]
    pick.value = "fix"
    assert list(fig.data[0].y) == [0.0, 100.0]


def test_in_context_reversal_shapes_and_context_limit(random_world_model):
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    out = lab.in_context_reversal(random_world_model(tok), tok, world, n_distractors=5)
    assert out["questions"] == 10
    for key in ("with_fact", "without_fact"):
        assert 0 <= out[key + "_accuracy"] <= 1 and 0 <= out[key + "_rank_percentile"] <= 100
    short = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=8, n_layer=1, n_head=2, n_embd=32)).eval()
    with pytest.raises(ValueError, match="context"):
        lab.in_context_reversal(short, tok, world)


def test_in_context_reversal_finds_a_copied_answer():
    """A 'model' that always copies the first two prompt words (the name, when the fact is in the prompt)."""
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)

    class Copier(torch.nn.Module):
        config = GPTConfig(vocab_size=tok.vocab_size, block_size=18)

        def forward(self, idx):
            T = idx.size(1)
            logits = torch.full((idx.size(0), T, tok.vocab_size), -20.0)
            for t in range(T):   # after the prompt "NAME is ... called", predict idx[0], then idx[1]
                logits[:, t].scatter_(1, idx[:, min(max(t - 16, 0), 1)][:, None], 20.0)
            return type("Out", (), {"logits": logits})()

        def generate(self, idx, n, temperature=0.0):
            for _ in range(n):
                idx = torch.cat([idx, self(idx).logits[:, -1].argmax(-1, keepdim=True)], 1)
            return idx

    out = lab.in_context_reversal(Copier(), tok, world, n_distractors=5)
    assert out["with_fact_accuracy"] == 1.0 and out["with_fact_rank_percentile"] == 0.0


@pytest.mark.slow
def test_smollm2_reads_the_fact_in_its_prompt():
    from course_utils import lm
    from course_utils.assets import load_smollm2

    smol = lm.wrap(*load_smollm2(verbose=False))
    prompt, names = smol.chat_ids("Who is it?"), [smol.encode(" Gowyn Zaeka"), smol.encode(" Bob")]
    assert lab._continuation_scores(smol.model, prompt, names) == pytest.approx(
        smol.continuation_logprobs(prompt, names), abs=1e-3)   # the KV-cache shortcut = the plain sum
    out = lab.smollm2_in_context(smol, rv.make_world(150, 0), n_facts=6, n_wrong=3)
    assert out["with_fact"] >= 0.8 and out["with_fact"] > out["without_fact"]
    with pytest.raises(ValueError, match="n_facts"):
        lab.smollm2_in_context(smol, rv.make_world(150, 0), n_facts=0)
