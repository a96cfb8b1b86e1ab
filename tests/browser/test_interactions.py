"""Notebook-specific widgets, driven like a student would (keyboard on sliders, clicks on buttons).

Each test runs right after the generic test of its notebook and reuses that executed page and
kernel (see conftest.py). A test skips while its notebook has not landed in notebooks/.
Widgets are found by the labels students see and plots by their titles.
"""
import re

import pytest

# --------------------------------------------------------------------------- 04 sampling
SURGEON = r"^Distribution surgeon"          # course_utils.lessons.sampling.SURGEON_TITLE


def _kept(run, cell) -> int:
    """The 'N of V tokens kept' count the surgeon prints above its chart."""
    text = cell.first.inner_text()
    m = re.search(r"([\d,]+) of ([\d,]+) tokens kept", text)
    assert m, f"{run.name}: no 'N of V tokens kept' line in the surgeon's cell"
    return int(m.group(1).replace(",", ""))


@pytest.mark.notebook("04_*.ipynb")
def test_sampling_temperature_slider_reshapes_chart(course_notebook):
    run = course_notebook
    cell = run.plot_cell(SURGEON)
    slider = run.slider(r"^temperature", cell)
    before = run.plots_state(cell)
    run.shot("surgeon-before", cell)
    old, new = run.move_slider(slider, "ArrowLeft", presses=10)
    assert float(new) < float(old), (old, new)
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.shot("surgeon-temperature-lowered", cell)


@pytest.mark.notebook("04_*.ipynb")
def test_sampling_top_p_slider_removes_tokens(course_notebook):
    run = course_notebook
    cell = run.plot_cell(SURGEON)
    slider = run.slider(r"^top-p", cell)
    kept_before = _kept(run, cell)
    before = run.plots_state(cell)
    old, new = run.move_slider(slider, "ArrowLeft", presses=40)
    assert float(new) < float(old), (old, new)
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    run.page.wait_for_timeout(300)
    kept_after = _kept(run, cell)
    assert kept_after < kept_before, f"top-p {old} -> {new} kept {kept_before} -> {kept_after} tokens"
    run.shot("surgeon-top-p-lowered", cell)


def _generated(cell) -> str:
    """The text of the surgeon's generated continuation (monospace box), '' if none yet."""
    return cell.evaluate("""c => Array.from(c.querySelectorAll('.widget-html div'))
        .filter(d => /monospace/.test(d.getAttribute('style') || '')).map(d => d.innerText).join('\\n')""")


@pytest.mark.notebook("04_*.ipynb")
def test_sampling_generate_button_writes_new_text(course_notebook):
    run = course_notebook
    cell = run.plot_cell(SURGEON)
    texts = [_generated(cell)]
    for label in (r"^\s*Generate\s*$", r"New seed"):
        button = run.button(label, cell)
        if not button.count():
            assert label != r"^\s*Generate\s*$", f"{run.name}: no Generate button next to the surgeon"
            continue
        button.first.click()
        run.page.wait_for_function("([c, t]) => { const now = Array.from(c.querySelectorAll('.widget-html div'))"
                                   ".filter(d => /monospace/.test(d.getAttribute('style') || ''))"
                                   ".map(d => d.innerText).join('\\n'); return now.trim() && now !== t; }",
                                   arg=[cell.element_handle(), texts[-1]], timeout=60_000)
        texts.append(_generated(cell))
        run.shot("surgeon-generated-" + ("seed" if "seed" in label else "1"), cell)
    assert all(t.strip() for t in texts[1:]) and len(set(texts)) == len(texts), texts


# --------------------------------------------------------------------------- 02 attention
EXPLORER = r"^Attention explorer"           # course_utils.lessons.attention_heads.AttentionExplorer.TITLE


def _step_slider_until_title(run, cell, name: str, title: str, how: str = "includes") -> int:
    """Move the slider ``name`` one step (down when at its maximum), wait until the plot changes and a
    plot title ``includes``/``endsWith`` ``title`` with ``{value}`` filled in (the title follows the
    data in a separate update); return the new value."""
    slider = run.slider(rf"^{name}$", cell)
    assert slider.count(), f"{run.name}: no '{name}' slider in the cell"
    before = run.plots_state(cell)
    step = -1 if run.slider_at_max(slider) else 1
    old, new = run.move_slider(slider, "ArrowLeft" if step < 0 else "ArrowRight")
    assert int(new) == int(old) + step, (old, new)
    run.wait_plots_change(before, cell)
    run.page.wait_for_function(
        f"([c, want]) => Array.from(c.querySelectorAll('.js-plotly-plot'))"
        f".some(d => ((d.layout.title || {{}}).text || '').{how}(want))",
        arg=[cell.element_handle(), title.format(value=int(new))], timeout=15_000)
    return int(new)


@pytest.mark.notebook("02_*.ipynb")
@pytest.mark.parametrize("selector", ["layer", "head"])
def test_attention_selector_changes_heatmap(course_notebook, selector):
    run = course_notebook
    cell = run.plot_cell(EXPLORER)
    new = _step_slider_until_title(run, cell, selector, selector + " {value}")
    run.shot(f"attention-{selector}-{new}", cell)


LAYER_GRID = r"^SmolLM2: all \d+ heads of layer"   # course_utils.lessons.attention_heads.layer_grid_widget


@pytest.mark.notebook("02_*.ipynb")
def test_attention_layer_grid_follows_the_layer_slider(course_notebook):
    run = course_notebook
    cell = run.plot_cell(LAYER_GRID)
    new = _step_slider_until_title(run, cell, "layer", "layer {value}", how="endsWith")
    run.shot(f"attention-smollm2-layer-{new}", cell)


# --------------------------------------------------------------------------- 05 quantization
BIT = "button[title$='(sign)'], button[title*=' bit ']"   # course_utils.lessons.quantization.bit_explorer tooltips


@pytest.mark.notebook("05_*.ipynb")
def test_bit_explorer_click_changes_value(course_notebook):
    run = course_notebook
    cell = run.cell_with(BIT)
    assert cell.count() >= 1, f"{run.name}: no bit explorer (bit buttons titled '<format> bit <i> (...)')"
    cell = cell.first
    number = run.text_input(r"^number$", cell).first
    start = number.input_value()
    info_before = cell.inner_text()
    run.shot("bits-before", cell)
    # Flip the sign bit of the first format: the value must become its negative.
    sign = cell.locator("button[title$='bit 0 (sign)']").first
    sign.click()
    run.page.wait_for_function("([el, v]) => el.value !== v", arg=[number.element_handle(), start], timeout=15_000)
    flipped = number.input_value()
    # The value becomes its negative (as stored in that format: 0.1 -> -0.10000000149011612 in fp32).
    a, b = float(start), float(flipped)
    assert (a == b == 0 and start.startswith("-") != flipped.startswith("-")) or \
        (a * b < 0 and abs(abs(a) - abs(b)) <= 1e-2 * abs(a)), f"sign bit: {start} -> {flipped}"
    run.wait_kernel_idle()
    assert cell.inner_text() != info_before
    run.shot("bits-sign-flipped", cell)
    # Flip the top exponent bit: the magnitude changes by a large factor.
    exponent = cell.locator("button[title$='bit 1 (exponent)']").first
    exponent.click()
    run.page.wait_for_function("([el, v]) => el.value !== v", arg=[number.element_handle(), flipped], timeout=15_000)
    after = float(number.input_value())
    assert abs(after) != abs(float(flipped)), (flipped, after)
    run.shot("bits-exponent-flipped", cell)
