"""Exercises with automatic checks and hints.

A notebook exercise is a function the student fills in and a call such as::

    check("causal mask", lambda: lab.check_mask_fn(my_mask),   # lab: the notebook's companion
          hints=["Which positions may token 3 look at?", "torch.tril ..."])

``check`` runs the test, shows a green tick, a red cross with the reason, or a gentle
"not attempted yet" when the student's function still raises NotImplementedError, and
offers the hints one at a time. It never raises, so a notebook runs top to bottom
whether or not the exercises are done; ``check`` returns True / False / None so tests can
assert on it.
"""
from __future__ import annotations

import html
import traceback
from typing import Callable, Sequence


def _display(html_text: str, hints: Sequence[str], solution: str | None) -> None:
    try:
        import ipywidgets as widgets
        from IPython import get_ipython
        from IPython.display import HTML, display
    except ImportError:  # plain Python: print instead
        print(html_text)
        return
    if get_ipython() is None:
        print(html.unescape(html_text.replace("<br>", "\n")))
        return
    display(HTML(html_text))
    if not hints and not solution:
        return
    out = widgets.Output()
    shown = {"n": 0}
    button = widgets.Button(description="Show a hint" if hints else "Show the solution",
                            icon="lightbulb-o", tooltip="Reveal one hint at a time")

    def reveal(_):
        with out:
            if shown["n"] < len(hints):
                display(HTML(f"<b>Hint {shown['n'] + 1}/{len(hints)}:</b> {hints[shown['n']]}"))
                shown["n"] += 1
                if shown["n"] == len(hints):
                    button.description = "Show the solution" if solution else "No more hints"
                    button.disabled = not solution
            elif solution:
                display(HTML(f"<pre>{html.escape(solution)}</pre>"))
                button.disabled = True
    button.on_click(reveal)
    display(widgets.VBox([button, out]))


def check(name: str, test: Callable[[], object], hints: Sequence[str] = (),
          solution: str | None = None) -> bool | None:
    """Run ``test`` (which asserts); report passed (True), failed (False) or not attempted (None)."""
    try:
        test()
    except NotImplementedError:
        _display(f"<span style='color:#9a6700'>&#9998; <b>{html.escape(name)}</b>: not attempted yet "
                 "&mdash; replace <code>raise NotImplementedError</code> with your code.</span>", hints, solution)
        return None
    except AssertionError as exc:
        reason = str(exc) or "a check failed"
        _display(f"<span style='color:#cf222e'>&#10008; <b>{html.escape(name)}</b>: not yet. "
                 f"{html.escape(reason)}</span>", hints, solution)
        return False
    except Exception as exc:  # the student's code crashed: show the error, keep the notebook running
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        _display(f"<span style='color:#cf222e'>&#10008; <b>{html.escape(name)}</b>: your code raised "
                 f"<code>{html.escape(last)}</code></span>", hints, solution)
        return False
    _display(f"<span style='color:#1a7f37'>&#10004; <b>{html.escape(name)}</b>: correct!</span>", (), None)
    return True
