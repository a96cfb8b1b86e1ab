"""Companion of notebook 09: data, template, measures against real generation, checkers, widget."""
from __future__ import annotations

import itertools

import pytest
import torch

from course_utils import finetune
from course_utils.lessons import instruction_tuning as lab
from course_utils.lessons import instruction_tuning_bios as bios
from course_utils.world import make_people


@pytest.fixture(scope="module")
def chat():
    return lab.chat_model()


def test_render_and_special_tokens(chat):
    model, tok = chat
    assert lab.render("Repeat: Ay", "Ay") == "<|user|>Repeat: Ay<|assistant|>Ay<|end|>"
    ids = tok.encode(lab.render("Ay", "Ay"))
    assert ids[0] == tok.stoi[lab.USER] == 83 and ids[-1] == tok.stoi[lab.END] == 85
    assert model.config.vocab_size == tok.vocab_size == 86
    assert model.head.weight is model.tok_emb.weight


def test_examples_are_held_out_and_answers_right():
    tr, te = lab.make_examples("train", 50, 0), lab.make_examples("val", 10, 1)
    assert {e.task for e in tr} == set(lab.TASKS) and len(te) == 40
    strip = lambda e: e.instruction.split(": ", 1)[1]
    assert not {strip(e) for e in tr} & {strip(e) for e in te}
    for e in tr:
        line = strip(e)
        if e.task == "repeat":
            assert e.answer == line
        elif e.task == "first word":
            assert line.startswith(e.answer)
        elif e.task == "last word":
            assert e.answer in line and e.answer.isascii()
        else:
            assert e.answer.isupper()
    assert lab.make_examples("val", 10, 1) == te


def test_writes_instruction():
    assert lab.writes_instruction("Repeat: Good night")
    assert not lab.writes_instruction("KING HENRY: Good night")


@pytest.mark.slow
def test_exact_match_agrees_with_greedy_generation(chat):
    model, tok = chat
    tr, te = lab.make_examples("train", 60, 0), lab.make_examples("val", 4, 7)
    tuned = lab.sft(model, tok, tr, te, steps=25, lr=1e-3, progress=False)["model"]
    positives = 0
    for e in te:
        em = lab.exact_match(tuned, tok, [e])[e.task]
        reply = lab.answer(tuned, tok, e.instruction)
        assert em == float(reply == e.answer + lab.END), (e, reply)
        if reply.endswith(lab.END) and len(reply) > len(lab.END):
            # the model's own greedy reply, taken as the reference answer, must count as an exact match
            own = lab.Example(e.task, e.instruction, reply[: -len(lab.END)])
            assert lab.exact_match(tuned, tok, [own])[e.task] == 1.0, (e, reply)
            positives += 1
    assert positives > 0        # the check is not vacuous: some replies stop and are matched exactly


@pytest.mark.slow
def test_lora_sft_trains_only_adapters_and_merges(chat):
    model, tok = chat
    tr, te = lab.make_examples("train", 20, 0), lab.make_examples("val", 2, 1)
    res = lab.sft(model, tok, tr, te, steps=3, lr=5e-3, lora_rank=2, progress=False)
    assert res["trainable"] == finetune.lora_parameter_count(model, 2) == 2 * 3072 * 6
    assert res["optimizer_bytes"] == 8 * res["trainable"]
    assert not finetune.lora_layers(res["model"])
    # the embedding is frozen under LoRA: unchanged after merging
    assert torch.equal(res["model"].tok_emb.weight, model.tok_emb.weight)


def test_checkers_accept_reference_and_reject_wrong(chat):
    model, _ = chat
    lab.check_sft_targets(lambda p, r: finetune.sft_targets(p, r))
    with pytest.raises(AssertionError):
        lab.check_sft_targets(lambda p, r: finetune.sft_targets(p, r, mask_prompt=False))
    good = lambda m, r: sum(r * (l.in_features + l.out_features) for b in m.blocks
                            for l in (b.attn.qkv, b.attn.proj, b.mlp.fc, b.mlp.proj))
    lab.check_lora_count(good, model)
    with pytest.raises(AssertionError):
        lab.check_lora_count(lambda m, r: r * sum(p.numel() for p in m.parameters()), model)

    def render(msgs):
        out = "".join(lab.USER + t if role == "user" else lab.ASSISTANT + t + lab.END for role, t in msgs)
        return out + (lab.ASSISTANT if msgs[-1][0] == "user" else "")
    lab.check_render(render)
    with pytest.raises(AssertionError):
        lab.check_render(lambda msgs: "".join(lab.render(t) for _, t in msgs))


def test_widget_shows_errors(chat):
    model, tok = chat
    box = lab.compare_widget({"base": model}, tok, value="Repeat: Ay")
    text, out = box.children
    assert "model-answers" in out.value
    text.value = "emoji 😀"
    assert "not in this model" in out.value and "Traceback" not in out.value
    text.value = "   "
    assert "type an instruction" in out.value


def test_biographies():
    people = make_people(6, 0)
    single = bios.corpus(people, "single", 0)
    varied = bios.corpus(people, "varied", 0)
    assert len(single) == 6 and len(varied) == 30 and len(set(varied)) > 6
    for p, b in zip(people, single):
        assert b.startswith(p.full_name) and str(p.birth_year) in b and p.city in b and p.job in b
        assert b.count(p.full_name) == 1
    tok = bios.make_tokenizer(people)
    for b in varied:
        tok.encode(b)
    assert [a for _, a in bios.qa_pairs(people[:1])] == [str(people[0].birth_year), people[0].city, people[0].job]
    with pytest.raises(ValueError, match="recipe"):
        bios.corpus(people, "shuffled", 0)


# ---------------------------------------------------------------- shipped results: the notebook's claims, every seed
def test_shipped_sweep_claims_hold_for_every_seed():
    sweep = lab.load_results("sweep")
    assert sweep["command"].startswith("python -m course_utils.lessons.instruction_tuning ")
    by_seed: dict = {}
    for r in sweep["runs"]:
        by_seed.setdefault(r["seed"], {})[r["setup"]] = r
    assert set(by_seed) == {0, 1}
    for seed, rs in by_seed.items():
        masked, whole, lora = rs["full, response-only loss"], rs["full, whole-sequence loss"], rs["LoRA r=4"]
        assert masked["stops"] >= 0.6 and masked["exact_match"]["first word"] >= 0.5, seed
        assert whole["writes_instruction"] >= 0.5 > masked["writes_instruction"], seed
        assert lora["mean_exact_match"] < masked["mean_exact_match"], seed        # learns less
        assert lora["shakespeare_loss"] < masked["shakespeare_loss"], seed        # forgets less
        assert lora["trainable"] == 4 * 3072 * 6 < 0.05 * masked["trainable"]
    # the rank sweep (notebook section 6): what the notebook asserts, from lora_summary
    summary = lab.lora_summary(sweep)
    assert list(summary) == ["LoRA r=1", "LoRA r=4", "LoRA r=16", "full, response-only loss"]
    assert sweep["base_shakespeare_loss"] < min(r["shakespeare_loss"] for r in sweep["runs"])
    for name, s in summary.items():
        assert s["seeds"] == [0, 1] and s["optimizer_bytes"] == 8 * s["trainable"], name
        if name.startswith("LoRA"):
            assert s["trainable"] == int(name.split("=")[1]) * 3072 * 6, name
    for k in range(2):
        taxes = [s["tax"][k] for s in summary.values()]
        assert all(0 < a < b for a, b in itertools.pairwise(taxes)), (k, taxes)     # forgets more with rank; full most
        for name in ("LoRA r=1", "LoRA r=4"):
            assert summary[name]["mean_exact_match"][k] < summary["full, response-only loss"]["mean_exact_match"][k]


def test_lora_figure_has_both_panels():
    fig = lab.lora_figure(lab.load_results("sweep"))
    assert "LoRA rank vs full fine-tuning" in fig.layout.title.text
    bars = [t for t in fig.data if t.type == "bar"]
    assert [t.name for t in bars] == list(lab.TASKS) + ["tax (mean)"]
    assert list(bars[0].x) == ["LoRA r=1", "LoRA r=4", "LoRA r=16", "full"]
    dots = next(t for t in fig.data if t.type == "scatter")
    assert len(dots.y) == 8 and all(v > 0 for v in dots.y)


def test_shipped_bios_claims_hold_for_every_seed():
    bio = lab.load_results("bios")
    assert bio["command"].startswith("python -m course_utils.lessons.instruction_tuning_bios ")
    runs = bio["runs"]
    assert sorted((r["seed"], r["recipe"]) for r in runs) == [(s, r) for s in (0, 1, 2) for r in sorted(bios.RECIPES)]
    for r in runs:
        assert not r["stopped"]
        assert r["qa_trained_half"] >= 0.8 and r["qa_held_out_half"] <= 0.25, r


@pytest.mark.slow
def test_live_biographies_claims_hold_for_another_seed():
    """The notebook's live run (seed 0, one phrasing, 30 people, 150 + 150 steps) at seed 1: the same claims."""
    torch.rand(3)                                    # the global generator's state does not matter
    r = bios.run(seed=1, recipe="single", n_people=30, pretrain_steps=150, finetune_steps=150, progress=False)
    assert r["qa_trained_half"] >= 0.8 and r["qa_held_out_half"] <= 0.25, r
    assert r["bio_recall"] >= r["qa_held_out_half"] + 0.2, r


def test_bios_weights_are_seeded_without_touching_the_global_generator():
    state = torch.random.get_rng_state()
    a = bios.run(seed=3, n_people=6, pretrain_steps=2, finetune_steps=1, progress=False)
    assert torch.equal(torch.random.get_rng_state(), state)
    torch.rand(5)
    b = bios.run(seed=3, n_people=6, pretrain_steps=2, finetune_steps=1, progress=False)
    assert {k: v for k, v in a.items() if k != "cpu_seconds"} == {k: v for k, v in b.items() if k != "cpu_seconds"}


@pytest.mark.slow
def test_sft_reproduces_the_shipped_run_of_another_seed(chat):
    """Fine-tuning is deterministic (no dropout, local generators): seed 1 of the sweep, re-run here."""
    model, tok = chat
    shipped = next(r for r in lab.load_results("sweep")["runs"]
                   if r["seed"] == 1 and r["setup"] == "full, response-only loss")
    tr, te = lab.make_examples("train", 400, 1), lab.make_examples("val", 40, 101)
    torch.rand(3)                                    # whatever the global generator did before does not matter
    res = lab.sft(model, tok, tr, te[:4], steps=50, lr=1e-3, seed=1, progress=False)
    em = lab.exact_match(res["model"], tok, te)
    for task, value in shipped["exact_match"].items():
        assert abs(em[task] - value) <= 0.026, (task, em[task], value)    # at most one example of 40 apart
