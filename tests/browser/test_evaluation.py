"""Notebook 15 (evaluation): editing an answer and swapping the order change the scores shown."""
import pytest

TITLE = r"^Scores of the two answers"          # course_utils.lessons.evaluation.pair_figure


@pytest.mark.notebook("*_evaluation.ipynb")
def test_evaluation_editing_an_answer_changes_the_scores(course_notebook):
    run = course_notebook
    cell = run.cell_with_plot(TITLE)
    assert cell.count() >= 1, f"{run.name}: no figure titled like {TITLE!r}; titles: {run.plot_titles()}"
    cell = cell.first
    box = run.text_input(r"^answer A$", cell).first
    before, text_before = run.plots_state(cell), run.output_text(cell)
    run.shot("pair-before", cell)
    box.fill("The capital of France is Paris, a city in France.")
    box.press("Enter")
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_timeout(300)
    assert run.output_text(cell) != text_before, "the score line did not change after editing answer A"
    run.shot("pair-answer-edited", cell)


@pytest.mark.notebook("*_evaluation.ipynb")
def test_evaluation_swap_order_changes_the_judge(course_notebook):
    run = course_notebook
    cell = run.cell_with_plot(TITLE).first
    before = run.plots_state(cell)
    button = run.button(r"swap order", cell)
    assert button.count(), f"{run.name}: no 'swap order' toggle next to the scores"
    button.first.click()
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_timeout(300)
    assert "saw answer B first" in run.output_text(cell)
    run.shot("pair-swapped", cell)
