"""Notebook 09: type an instruction and see the base, SFT and LoRA models answer it side by side."""
import pytest


@pytest.mark.notebook("*_instruction_tuning.ipynb")
def test_instruction_box_shows_three_answers(course_notebook):
    run = course_notebook
    cell = run.cell_with("table.model-answers")
    assert cell.count() >= 1, f"{run.name}: no answers table (table.model-answers) under the instruction box"
    cell = cell.first
    box = run.text_input(r"^instruction", cell).first
    table = cell.locator("table.model-answers")
    before = table.inner_text()
    rows = table.locator("tr")
    assert rows.count() == 4, f"want a header and three models, got {rows.count()} rows"
    run.shot("answers-before", cell)
    box.fill("Repeat: Good night, sweet prince")
    box.press("Enter")                       # continuous_update=False: Enter sends the value
    run.page.wait_for_function("([el, v]) => el.innerText !== v", arg=[table.element_handle(), before],
                               timeout=30_000)
    run.wait_kernel_idle()
    after = cell.locator("table.model-answers").inner_text()
    for name in ("base", "SFT", "LoRA"):
        assert name in after, f"{name} missing from the answers table: {after!r}"
    run.shot("answers-after", cell)
    # bad input: a character the model does not know gives a message, not a traceback (the message replaces
    # the table, so hold the cell's element: the locator filtered on the table would no longer match)
    cell_el = cell.element_handle()
    box.fill("Repeat: 😀")
    box.press("Enter")
    run.page.wait_for_function("el => /not in this model/.test(el.innerText)", arg=cell_el, timeout=30_000)
    assert "Traceback" not in cell_el.inner_text()
