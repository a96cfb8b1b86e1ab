"""Notebook 14's sliders: γ/temperature change the speculative numbers; sequence length changes memory."""
import re

import pytest


def _text(cell) -> str:
    return cell.first.inner_text()


@pytest.mark.notebook("*_fast_generation.ipynb")
def test_fast_generation_gamma_slider_changes_acceptance_numbers(course_notebook):
    run = course_notebook
    slider = run.slider(r"^γ")
    assert slider.count(), f"{run.name}: no γ slider"
    cell = run.page.locator(".jp-CodeCell", has=slider.first)
    before = _text(cell)
    assert re.search(r"tokens per target pass", before), before
    old, new = run.move_slider(slider.first, "ArrowRight", presses=3)
    assert int(new) > int(old), (old, new)
    run.page.wait_for_function("([c, t]) => c.innerText !== t && /tokens per target pass/.test(c.innerText)",
                               arg=[cell.first.element_handle(), before], timeout=60_000)
    run.wait_kernel_idle()
    run.shot("speculative-gamma-raised", cell.first)


@pytest.mark.notebook("*_fast_generation.ipynb")
def test_fast_generation_length_slider_changes_memory(course_notebook):
    run = course_notebook
    slider = run.slider(r"^sequence length")
    assert slider.count(), f"{run.name}: no sequence length slider"
    cell = run.page.locator(".jp-CodeCell", has=slider.first)
    before = _text(cell)
    old, new = run.move_slider(slider.first, "ArrowRight", presses=5)
    assert int(new) > int(old), (old, new)
    run.page.wait_for_function("([c, t]) => c.innerText !== t", arg=[cell.first.element_handle(), before],
                               timeout=30_000)
    assert "MiB" in _text(cell)
