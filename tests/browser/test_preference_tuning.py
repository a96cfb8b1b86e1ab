"""Notebook 10: the best-of-n slider redraws the kept samples' scores; the β slider highlights another
point of the shipped sweep and shows its samples."""
import pytest

BEST_OF_N = r"^True score of the kept samples, best-of-"     # lab.best_of_n_widget
SWEEP = r"^DPO: true score vs KL to the reference"          # lab.sweep_figure


@pytest.mark.notebook("*_preference_tuning.ipynb")
def test_best_of_n_slider_changes_the_plot(course_notebook):
    run = course_notebook
    cell = run.plot_cell(BEST_OF_N)
    slider = run.slider(r"^best-of n", cell)
    assert slider.count(), f"{run.name}: no 'best-of n' slider"
    before = run.plots_state(cell)
    example = cell.locator(".best-of-n-example").inner_text()
    run.shot("best-of-n-before", cell)
    old, new = run.move_slider(slider, "End")                # 8 -> 64
    assert int(new) > int(old), (old, new)
    run.wait_plots_change(before, cell)
    run.page.wait_for_function(
        "([c, n]) => Array.from(c.querySelectorAll('.js-plotly-plot'))"
        ".some(d => ((d.layout.title || {}).text || '').includes('best-of-' + n + ':'))",
        arg=[cell.element_handle(), new], timeout=15_000)
    run.wait_kernel_idle()
    assert f"first {new} samples" in cell.locator(".best-of-n-example").inner_text() != example
    run.shot(f"best-of-{new}", cell)


@pytest.mark.notebook("*_preference_tuning.ipynb")
def test_beta_slider_highlights_another_run(course_notebook):
    run = course_notebook
    cell = run.plot_cell(SWEEP)
    slider = run.slider(r"^β", cell)
    assert slider.count(), f"{run.name}: no 'β' slider"
    before = run.plots_state(cell)
    old, new = run.move_slider(slider, "Home")               # to the smallest β
    assert float(new) < float(old), (old, new)
    run.wait_plots_change(before, cell)
    run.page.wait_for_function("([c, b]) => c.querySelector('.beta-samples').innerText.includes('β = ' + b + ',')",
                               arg=[cell.element_handle(), new], timeout=15_000)
    run.wait_kernel_idle()
    run.shot(f"beta-{new}", cell)
