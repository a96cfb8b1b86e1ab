"""Notebook 12 (context): the prompt builder, driven like a student would.

Reordering the same examples must change the answer distribution; bad input must show an error, not a traceback.
"""
import re

import pytest

BUILDER = r"^Prompt builder"            # course_utils.lessons.context.BUILDER_TITLE


def _builder(run):
    return run.plot_cell(BUILDER)


def _type(run, box, text: str) -> None:
    box.scroll_into_view_if_needed()
    box.fill(text)
    box.press("Enter")


@pytest.mark.notebook("*_context.ipynb")
def test_context_reordering_examples_changes_the_answer_distribution(course_notebook):
    run = course_notebook
    cell = _builder(run)
    box = run.text_input(r"^examples$", cell).first
    assert box.input_value() == "1 2 3 4"
    before = run.plots_state(cell)
    run.shot("builder-before", cell)
    _type(run, box, "4 3 2 1")
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.shot("builder-reordered", cell)
    text = cell.inner_text()
    assert re.search(r"accuracy on all 24 test countries: \d+%", text), text


@pytest.mark.notebook("*_context.ipynb")
def test_context_bad_order_shows_an_error_not_a_traceback(course_notebook):
    run = course_notebook
    cell = _builder(run)
    box = run.text_input(r"^examples$", cell).first
    _type(run, box, "1 9")
    run.page.wait_for_function("c => /between 1 and 8/.test(c.innerText)", arg=cell.element_handle(), timeout=15_000)
    assert "Traceback" not in cell.inner_text()
    run.shot("builder-bad-order", cell)
    _type(run, box, "2 1")
    run.page.wait_for_function("c => !/between 1 and 8/.test(c.innerText)", arg=cell.element_handle(), timeout=30_000)
