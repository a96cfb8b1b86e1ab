"""Notebook 08 (inside the transformer): the parameter calculator and the embedding-neighbour explorer,
driven like a student would (keyboard on a slider, typing into a box)."""
import pytest

CALCULATOR = r"^Parameter calculator"        # course_utils.lessons.transformer.ParameterCalculator.TITLE
NEIGHBOURS = r"^Nearest neighbours"          # course_utils.lessons.transformer.NeighbourExplorer.TITLE


@pytest.mark.notebook("*_inside_the_transformer.ipynb")
def test_parameter_calculator_depth_slider_changes_the_count(course_notebook):
    run = course_notebook
    cell = run.plot_cell(CALCULATOR)
    slider = run.slider(r"^depth$", cell)
    assert slider.count(), f"{run.name}: no 'depth' slider next to the calculator"
    before = run.plots_state(cell)
    text_before = cell.inner_text()
    run.shot("calculator-before", cell)
    old, new = run.move_slider(slider, "ArrowRight", presses=3)
    assert int(new) == int(old) + 3, (old, new)
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_timeout(300)
    assert cell.inner_text() != text_before, "the parameter total did not change with the depth"
    run.shot("calculator-depth-raised", cell)


@pytest.mark.notebook("*_inside_the_transformer.ipynb")
def test_neighbour_explorer_follows_the_typed_token(course_notebook):
    run = course_notebook
    cell = run.plot_cell(NEIGHBOURS)
    box = run.text_input(r"^token:?$", cell).first
    before = run.plots_state(cell)
    box.fill("A")
    box.press("Enter")
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.shot("neighbours-A", cell)
    # Several characters are several tokens for the character model: a clear message, not a traceback.
    box.fill("ab")
    box.press("Enter")
    run.page.wait_for_function("c => /2 tokens/.test(c.innerText)", arg=cell.element_handle(), timeout=15_000)
    assert "Traceback" not in run.output_text(cell)
    run.shot("neighbours-two-tokens", cell)
