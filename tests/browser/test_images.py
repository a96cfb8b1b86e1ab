"""Notebook 16 (images as tokens): the image explorer, driven like a student would (keyboard on the
image slider, the patch-size dropdown): the answer text and the attention heatmap must change."""
import pytest

EXPLORER = r"^Image explorer"        # course_utils.lessons.images.ImageExplorer.TITLE


def explorer_cell(run):
    return run.plot_cell(EXPLORER)


@pytest.mark.notebook("*_images_as_tokens.ipynb")
def test_picking_another_image_changes_answer_and_heatmap(course_notebook):
    run = course_notebook
    cell = explorer_cell(run)
    slider = run.slider(r"^image$", cell)
    assert slider.count(), f"{run.name}: no 'image' slider next to the explorer"
    before, text_before = run.plots_state(cell), cell.inner_text()
    run.shot("explorer-image-0", cell)
    old, new = run.move_slider(slider, "ArrowRight", presses=2)
    assert int(new) == int(old) + 2, (old, new)
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_timeout(300)
    assert "held-out image 2" in " ".join(run.plot_titles(cell))
    assert cell.inner_text() != text_before, "the explorer's answer line did not follow the image"
    assert "Traceback" not in run.output_text(cell)
    run.shot("explorer-image-2", cell)


@pytest.mark.notebook("*_images_as_tokens.ipynb")
def test_patch_size_changes_the_token_count_and_grid(course_notebook):
    run = course_notebook
    cell = explorer_cell(run)
    select = run.dropdown(r"^patch size", cell).first.locator("select")
    before = run.plots_state(cell)
    select.select_option(label="4")
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_function("c => /4 patch tokens/.test(c.innerText)", arg=cell.element_handle(), timeout=15_000)
    assert "4x4 patches" in " ".join(run.plot_titles(cell))
    run.shot("explorer-patch-4", cell)
