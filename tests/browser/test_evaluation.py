"""Notebook 15 (evaluation): editing an answer and swapping the order change the scores and the verdict."""
import re

import pytest

TITLE = r"^Scores of the two answers"          # course_utils.lessons.evaluation.pair_figure


def _verdict(cell):
    """The explorer's verdict line ("The judge saw answer A first and prefers ...")."""
    return cell.locator(".widget-html", has_text=re.compile("saw answer")).first


@pytest.mark.notebook("*_evaluation.ipynb")
def test_evaluation_editing_an_answer_changes_the_scores(course_notebook):
    run = course_notebook
    cell = run.plot_cell(TITLE)
    box = run.text_input(r"^answer A$", cell).first
    before, line_before = run.plots_state(cell), _verdict(cell).inner_text()
    run.shot("pair-before", cell)
    box.fill("The capital of France is Paris, a city in France.")
    box.press("Enter")
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_function("([el, t]) => el.innerText !== t", arg=[_verdict(cell).element_handle(), line_before],
                               timeout=30_000)
    run.shot("pair-answer-edited", cell)


@pytest.mark.notebook("*_evaluation.ipynb")
def test_evaluation_swap_order_changes_the_judge(course_notebook):
    run = course_notebook
    cell = run.plot_cell(TITLE)
    assert "saw answer A first" in _verdict(cell).inner_text()
    before = run.plots_state(cell)
    button = run.button(r"swap order", cell)
    assert button.count(), f"{run.name}: no 'swap order' toggle next to the scores"
    button.first.click()
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_function("el => el.innerText.includes('saw answer B first')",
                               arg=_verdict(cell).element_handle(), timeout=30_000)
    run.shot("pair-swapped", cell)
