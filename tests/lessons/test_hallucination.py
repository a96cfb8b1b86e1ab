"""Companion of notebook 11: the world, the shipped checkpoint, confidence measures, retrieval, checkers."""
import copy

import numpy as np
import pytest
import torch

from course_utils.lessons import hallucination as lab


@pytest.fixture(scope="module")
def shipped():
    torch.set_num_threads(1)
    return lab.load_world_model()


def test_world_groups_are_disjoint_and_unknown_people_never_appear_in_training():
    world = lab.make_world()
    names = [p.full_name for p in world.people]
    assert len(names) == len(set(names))
    text = {" ".join(prompt) for prompt, _ in lab.training_examples(world, abstain=False)}
    for p in world.groups["heldout"] + world.groups["abstain"]:
        assert p.birth_year > lab.CUTOFF
        assert not any(p.full_name in t for t in text), f"{p.full_name} leaked into the training data"
    for p in world.groups["once"] + world.groups["five"]:
        assert p.birth_year <= lab.CUTOFF
    with_abstain = lab.training_examples(world, abstain=True)
    assert sum(a == lab.UNKNOWN for _, a in with_abstain) == 9 * len(world.groups["abstain"])
    counts = [sum(p.full_name in " ".join(q) for q, _ in lab.training_examples(world)) for p in
              (world.groups["once"][0], world.groups["five"][0])]
    assert counts == [3, 15], "three questions, once or five times"
    with pytest.raises(ValueError):
        lab.make_world(10)


def test_shipped_checkpoint_reevaluates_to_its_recorded_history(shipped):
    model, tok, world, meta = shipped
    last = meta["history"][-1]
    now = lab.eval_metrics(model, tok, world)
    for key in ("acc_once", "acc_five", "specific_unknown"):
        assert now[key] == pytest.approx(last[key], abs=1e-9), key
    assert now["acc_five"] >= 0.9 and now["specific_unknown"] >= 0.9
    assert now["acc_five"] - now["acc_once"] >= 0.15
    assert (lab.CHECKPOINT / "model.safetensors").stat().st_size < 2_000_000


def test_confabulation_and_retrieval_on_the_shipped_model(shipped):
    model, tok, world, _ = shipped
    rep = lab.group_report(model, tok, world, "city")
    assert rep["heldout"]["correct"].mean() <= 0.2 and rep["heldout"]["confidence"].mean() >= 0.4
    rag = lab.rag_report(model, tok, world, lab.DocumentStore(world))
    assert rag["recall_at_1"] >= 0.95 and rag["open_heldout"] >= 0.8 and rag["follows_wrong_doc"] >= 0.6
    years = lab.group_report(model, tok, world, "year")["heldout"]["answers"]
    assert all(a.isdigit() and int(a) <= lab.CUTOFF for a in years)


def test_auroc_matches_sklearn():
    from sklearn.metrics import roc_auc_score
    rng = np.random.default_rng(0)
    s, y = rng.normal(size=200).round(1), rng.integers(0, 2, 200).astype(bool)
    assert lab.auroc(s, y) == pytest.approx(roc_auc_score(y, s))
    assert lab.auroc([0.9, 0.8, 0.1], [1, 1, 0]) == 1.0
    with pytest.raises(ValueError):
        lab.auroc([0.5], [True])


def test_reliability_and_ece_by_hand():
    rel = lab.reliability([0.95, 0.9, 0.85, 0.3], [1, 1, 0, 0])
    # bins: 0.9 -> {0.95, 0.9}: conf 0.925, acc 1; 0.8 -> {0.85}: acc 0; 0.3 -> {0.3}: acc 0
    assert rel["count"] == [1, 1, 2]
    assert rel["ece"] == pytest.approx(0.5 * 0.075 + 0.25 * 0.85 + 0.25 * 0.3)
    with pytest.raises(ValueError):
        lab.reliability([1.2], [1])


def test_sample_agreement_estimates_top_probability():
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.2, 0.5, 0.3]])
    agree = lab.sample_agreement(probs, k=4000, seed=1)
    assert agree == pytest.approx([0.9, 0.5], abs=0.03)


def test_parse_question_accepts_three_forms_and_rejects_bad_input(shipped):
    _, tok, world, _ = shipped
    p = world.groups["five"][0]
    for attr in lab.QUESTIONS:
        words, got = lab.parse_question(" ".join(lab.question(p, attr)).replace(" ?", "?"), tok)
        assert got == attr and words == lab.question(p, attr)
    for bad, msg in (("", "empty"), ("who is the king ?", "unknown question format"),
                     ("where does Zzyzx Qqq live ?", "never seen")):
        with pytest.raises(ValueError, match=msg):
            lab.parse_question(bad, tok)


def test_ask_widget_shows_errors_and_retrieval(shipped):
    model, tok, world, _ = shipped
    w = lab.AskWidget(model, tok, world, lab.DocumentStore(world))
    w.person.value = w.person.options[-1][1]            # an unknown person
    w.update()
    closed = w.note.value
    assert "closed book" in closed
    w.retrieval.value = True
    assert "retrieved document" in w.note.value and w.note.value != closed
    person = world.by_name(w.person.value)
    assert list(w.fig.data[0].x)[0] == person.city, "with its document the model reads the right city"
    w.text.value = "tell me a story"
    assert "unknown question format" in w.note.value


def test_exercise_checkers_accept_the_solution_and_reject_a_wrong_answer():
    import math
    lab.check_ece(lambda c, y, n: lab.reliability(c, y, n)["ece"])
    with pytest.raises(AssertionError):
        lab.check_ece(lambda c, y, n: abs(np.mean(c) - np.mean(y)))          # one global gap, no bins

    def bm25(tf, df, n, dl, avgdl, k1=1.5, b=0.75):
        return math.log(1 + (n - df + 0.5) / (df + 0.5)) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
    lab.check_bm25_term(bm25)
    with pytest.raises(AssertionError):
        lab.check_bm25_term(lambda tf, df, n, dl, avgdl, k1=1.5, b=0.75: bm25(tf, df, n, avgdl, avgdl, k1, b))

    lab.check_abstain(lab.abstain)
    with pytest.raises(AssertionError):
        lab.check_abstain(lambda a, c, t: [x if y > t else "unknown" for x, y in zip(a, c)])


def test_countries_are_offline_and_invented_ones_are_not_real():
    real = lab.real_countries(40)
    assert len(real) == 40 and ("France", "Paris") in real and all(cap for _, cap in real)
    fake = lab.invented_countries(40, seed=0)
    assert len(set(fake)) == 40 and not set(fake) & {c for c, _ in lab.real_countries(150)}
    assert lab.gives_a_name("Paris.") and not lab.gives_a_name("not a place,") and not lab.gives_a_name("a fictional")


@pytest.mark.slow
@pytest.mark.parametrize("train_seed", [1, 2])
def test_r_tuning_learns_to_abstain_on_trained_names_and_keeps_knowledge(shipped, train_seed):
    model, tok, world, _ = shipped
    tuned, _, _, hist = lab.train_world_model(lab.Recipe(lr=1e-3), abstain=True, model=copy.deepcopy(model),
                                              steps=200, progress=False, train_seed=train_seed)
    rep = lab.group_report(tuned, tok, world, "city")
    assert rep["abstain"]["abstained"].mean() >= 0.5          # pilot: 0.81, 0.65, 0.71 for seeds 0, 1, 2
    assert rep["five"]["correct"].mean() >= 0.9
    assert rep["heldout"]["abstained"].mean() < rep["abstain"]["abstained"].mean()


@pytest.mark.slow
def test_smollm2_countries_and_rag():
    from course_utils.assets import load_smollm2
    from course_utils.lm import HFModel
    torch.set_num_threads(1)
    smol = HFModel(*load_smollm2(verbose=False))
    res = lab.country_experiment(smol, n=10)
    assert res["accuracy_real"] >= 0.5 and res["auroc_real_vs_invented"] >= 0.8
    rag = lab.smol_rag(smol, lab.make_world(), n=6)
    assert rag["open"] - rag["closed"] >= 0.4
