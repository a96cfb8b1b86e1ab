"""Tests for course_utils.reversal: the world, the recipes, the metrics, the exercise checkers,
and the reversal curse itself on seeds and world sizes the notebook does not use."""
import math

import pytest
import torch
import torch.nn.functional as F

from course_utils import reversal as rv

# Small enough to train in well under a minute of CPU, big enough to learn every forward fact.
TINY = rv.ExperimentConfig(n_layer=2, n_head=4, n_embd=96, steps=600, batch_size=48, lr=3e-3, eval_interval=500)


# ----------------------------------------------------------------------------- the world
@pytest.mark.parametrize("seed,n", [(0, 150), (1, 60), (7, 300)])
def test_world_is_unique_balanced_and_disjoint(seed, n):
    world = rv.make_world(n, seed)
    assert len(world) == n
    assert len({f.name for f in world}) == n and len({f.title for f in world}) == n
    assert [sum(f.subset == s for f in world) for s in rv.SUBSETS] == [n // 3] * 3
    rv.check_disjoint(world)
    template_words = {w for t in rv.N2D_TEMPLATES + rv.D2N_TEMPLATES for w in t.split()}
    entity_words = {w for f in world for w in f.name + f.title}
    assert not entity_words & template_words


def test_world_depends_on_seed_and_rejects_bad_sizes():
    assert rv.make_world(60, 0) != rv.make_world(60, 1)
    assert rv.make_world(60, 3) == rv.make_world(60, 3)
    for bad in (0, 10, 100, 3003, 30.0):
        with pytest.raises(ValueError, match="n_people"):
            rv.make_world(bad, 0)


def test_check_disjoint_catches_shared_words():
    world = rv.make_world(30, 0)
    leak = rv.Fact(("Pel", world[0].title[0]), "author", ("Zz", "Yy"), "n2d")
    with pytest.raises(ValueError, match="overlap"):
        rv.check_disjoint(world + [leak])


# ----------------------------------------------------------------------------- recipes
def _direction(sentence, fact):
    """'n2d' if the name comes before the title in the sentence, else 'd2n'."""
    return "n2d" if sentence.index(fact.name[0]) < sentence.index(fact.title[0]) else "d2n"


def test_plain_recipe_states_each_fact_in_one_direction_only():
    world = rv.make_world(60, 2)
    sentences = rv.training_sentences(world, "plain")
    for f in world:
        mine = [s for s in sentences if f.name[0] in s and f.name[1] in s and f.title[0] in s and f.title[1] in s]
        dirs = {_direction(s, f) for s in mine}
        if f.subset == "both":
            assert dirs == {"n2d", "d2n"} and len(mine) == 10
        else:
            assert dirs == {f.subset} and len(mine) == 4, (f, mine)
            assert all("famously" not in s for s in mine), "the held-out paraphrase leaked into training"


def test_other_recipes():
    world = rv.make_world(60, 2)
    plain = rv.training_sentences(world, "plain")
    both = rv.training_sentences(world, "both_directions")
    rev = rv.training_sentences(world, "reverse_training")
    assert len(both) == len(plain) + 40 * 4
    assert len(rev) == 2 * len(plain) and sum(s[0] == rv.REV for s in rev) == len(plain)
    f = next(f for f in world if f.subset == "n2d")
    assert [f.title[0], f.title[1], "of"] == rv.reverse_units(rv.fill("{n} is {d} .", f))[1:4]
    assert any(_direction(s, f) == "d2n" for s in both if f.name[0] in s and f.title[0] in s and f.title[1] in s)
    with pytest.raises(ValueError, match="recipe"):
        rv.training_sentences(world, "augment")


def test_reverse_units_keeps_entities_whole():
    units = [("Hilvor", "Mornelka"), "is", "the", "composer", "of", ("Ithquinic", "Pelfenum"), "."]
    assert rv.reverse_units(units) == [".", "Ithquinic", "Pelfenum", "of", "composer", "the", "is", "Hilvor", "Mornelka"]


def test_queries_and_tokenizer():
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    same, rev = rv.make_queries(world, "same"), rv.make_queries(world, "reverse")
    assert len(same) == len(rev) == 20
    for q in same + rev:
        tok.encode(q.prompt + list(q.answer))          # every word is known
        asks_name = q.answer == q.fact.name
        assert asks_name == ((q.fact.subset == "d2n") == (q.direction == "same"))
    for q in rv.make_queries(world, "reverse", reversed_language=True):
        assert q.prompt[:2] == [rv.SEP, rv.REV]
    with pytest.raises(ValueError, match="Zorglub"):
        tok.encode("the composer of Zorglub is called")
    with pytest.raises(ValueError, match="direction"):
        rv.make_queries(world, "sideways")


# ----------------------------------------------------------------------------- metrics
def test_rank_percentile():
    assert rv.rank_percentile(0.0, [-1.0, -2.0]) == 0.0
    assert rv.rank_percentile(-3.0, [-1.0, -2.0]) == 100.0
    assert rv.rank_percentile(-2.0, [-1.0, -2.0, -3.0, -4.0]) == 37.5
    with pytest.raises(ValueError):
        rv.rank_percentile(0.0, [])


def test_sequence_logprobs_matches_token_by_token_chain_rule(random_world_model):
    world = rv.make_world(30, 0)
    tok = rv.make_tokenizer(world)
    model = random_world_model(tok)
    q = rv.make_queries(world, "reverse")[0]
    got = rv.sequence_logprobs(model, tok, [q.prompt], [q.answer])[0].item()
    ids, want = tok.encode(q.prompt), 0.0
    for word in q.answer:
        logits = model(torch.tensor([ids])).logits[0, -1]
        want += F.log_softmax(logits, -1)[tok.stoi[word]].item()
        ids.append(tok.stoi[word])
    assert math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-4)


def test_untrained_model_is_at_chance_and_greedy_answers_have_answer_length(random_world_model):
    world = rv.make_world(60, 0)
    tok = rv.make_tokenizer(world)
    model = random_world_model(tok, 3)
    qs = rv.make_queries(world, "reverse")
    pct = rv.rank_percentiles(model, tok, qs, world)
    assert 35 < sum(pct) / len(pct) < 65
    assert [len(a) for a in rv.greedy_answers(model, tok, qs)] == [len(q.answer) for q in qs]


def test_run_experiment_rejects_bad_arguments():
    with pytest.raises(ValueError, match="recipe"):
        rv.run_experiment(0, 60, "augment")
    with pytest.raises(ValueError, match="seed"):
        rv.run_experiment(-1, 60)


# ----------------------------------------------------------------------------- the curse itself
@pytest.mark.slow
@pytest.mark.parametrize("seed,n_people", [(1, 60), (2, 90)])
def test_reversal_curse_holds_on_other_seeds_and_world_sizes(seed, n_people):
    res = rv.run_experiment(seed=seed, n_people=n_people, recipe="plain", config=TINY, progress=False)
    assert res["same_direction_accuracy"] >= 0.9, res["same_direction_accuracy"]
    assert res["reverse_accuracy"] <= 0.1, res["reverse_accuracy"]
    assert 30 <= res["reverse_rank_percentile"] <= 70, res["reverse_rank_percentile"]
    assert res["same_direction_rank_percentile"] <= 5
    assert set(rv.summary(res)) >= {"same_direction_accuracy", "reverse_accuracy", "reverse_rank_percentile"}
    assert "model" not in rv.summary(res)


@pytest.mark.slow
def test_stating_facts_both_ways_lifts_the_curse():
    cfg = rv.ExperimentConfig(**{**TINY.__dict__, "steps": 700})
    res = rv.run_experiment(seed=3, n_people=60, recipe="both_directions", config=cfg, progress=False)
    assert res["reverse_accuracy"] >= 0.8, res["reverse_accuracy"]
    assert res["reverse_rank_percentile"] <= 10, res["reverse_rank_percentile"]
