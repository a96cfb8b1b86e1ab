"""Every course notebook, run top to bottom in a fresh kernel in JupyterLab, as a student sees it.

Checks: all cells ran and none shows an error; every plotly figure rendered with data; every
widget rendered (no text fallback such as ``interactive(children=...``); no request left loopback.
Screenshots of every cell with a plot or a widget land in artifacts/browser/<notebook>/.
"""
import json


def test_every_notebook(notebook, notebook_runner):
    run = notebook_runner(notebook)
    problems = run.problems()
    report = run.report
    (run.dir / "report.json").write_text(json.dumps(report, indent=1))
    shown = [c for c in report if c["plots"] or c["widgets"]]
    for c in shown:
        run.shot(f"cell-{c['index']:02d}", run.page.locator(".jp-Notebook .jp-Cell").nth(c["index"]))
    run.shot("page")
    print(f"{notebook}: ran in {run.seconds:.1f} s in the browser, {len(report)} cells, "
          f"{sum(len(c['plots']) for c in report)} plots, {sum(len(c['widgets']) for c in report)} widget outputs")

    assert not problems, f"{notebook} in the browser:\n  " + "\n  ".join(problems)
    assert run.ok, f"{notebook}: 'Run All Cells' did not complete successfully"
    outside = run.non_local_requests()
    assert not outside, f"{notebook}: requests left loopback (CDN script, hot-linked image?): {outside}"
