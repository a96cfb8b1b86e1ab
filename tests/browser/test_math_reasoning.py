"""Notebook 13: typing a sum into the "ask the adders" widget shows every trained adder's answer."""
import pytest


def _adder_cell(run):
    box = run.text_input(r"^a:$")
    assert box.count(), f"{run.name}: no text box labelled 'a:' (the adder widget)"
    return run.cell_of(box), box.first


@pytest.mark.notebook("*_math_and_reasoning.ipynb")
def test_typing_a_sum_shows_the_answers(course_notebook):
    run = course_notebook
    cell, box_a = _adder_cell(run)
    box_b = run.text_input(r"^b:$", cell).first
    before = run.output_text(cell)
    assert "478+356 = 834" in before, before[:300]
    box_a.fill("9999")
    box_b.fill("1")
    box_b.press("Enter")
    run.page.wait_for_function("([c]) => c.innerText.includes('9999+1 = 10000')", arg=[cell.element_handle()],
                               timeout=30_000)
    after = run.output_text(cell)
    assert after.count("right") + after.count("wrong") >= 2, after[:400]
    run.shot("adders-9999-plus-1", cell)


@pytest.mark.notebook("*_math_and_reasoning.ipynb")
def test_bad_input_gets_a_message(course_notebook):
    run = course_notebook
    cell, box_a = _adder_cell(run)
    box_a.fill("12x")
    box_a.press("Enter")
    run.page.wait_for_function("([c]) => c.innerText.includes('not a whole number')", arg=[cell.element_handle()],
                               timeout=30_000)
    box_a.fill("123456")
    box_a.press("Enter")
    run.page.wait_for_function("([c]) => c.innerText.includes('more than 4 digits')", arg=[cell.element_handle()],
                               timeout=30_000)
    run.shot("adders-bad-input", cell)
