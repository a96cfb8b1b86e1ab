"""Notebook 11: ask the world model about a person with retrieval off, then on."""
import pytest

ASK = r"^What the world model answers"          # course_utils.lessons.hallucination.ASK_TITLE


def note_text(cell) -> str:
    """The widget's HTML notes (answer, truth, retrieved document). ``run.output_text`` skips outputs
    that hold a plot, and the ask widget is one VBox with its chart, so it would read ''."""
    return cell.evaluate("c => Array.from(c.querySelectorAll('.widget-html')).map(h => h.innerText).join('\\n')")


@pytest.mark.notebook("*_hallucination.ipynb")
def test_ask_widget_retrieval_changes_the_answer(course_notebook):
    run = course_notebook
    cell = run.plot_cell(ASK)
    box = run.text_input(r"^question", cell).first
    assert box.input_value().startswith("where does "), box.input_value()
    # An unknown (held-out) person: closed book, the model invents a city.
    person = run.dropdown(r"^person", cell).first.locator("select")
    unknown = person.locator("option", has_text="unknown").last.get_attribute("value")
    before = run.plots_state(cell)
    person.select_option(unknown)
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    closed = note_text(cell)
    assert "closed book" in closed, closed
    run.shot("ask-closed-book", cell)
    # Retrieval on: the retrieved document appears and the answer changes.
    before = run.plots_state(cell)
    cell.locator(".widget-checkbox input[type=checkbox]").first.check()
    run.wait_plots_change(before, cell)
    run.wait_kernel_idle()
    opened = note_text(cell)
    assert "retrieved document" in opened and opened != closed, opened
    run.shot("ask-retrieval-on", cell)
    # A question in an unknown format gets a message, not a traceback.
    box.fill("tell me a story")
    box.press("Enter")
    run.page.wait_for_function("c => c.innerText.includes('unknown question format')", arg=cell.element_handle(),
                               timeout=15_000)
    assert "Traceback" not in cell.inner_text()
