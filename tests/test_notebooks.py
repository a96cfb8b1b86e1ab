"""Every notebook follows the course conventions, and every one of them is executed by the suite."""
import json
import pathlib
import re
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CORE = ["00_start_here", "01_tokenization", "02_attention", "03_training", "04_sampling",
        "05_quantization", "06_reversal_curse", "07_base64"]


def test_the_core_notebooks_exist_in_course_order():
    assert [p.stem for p in NOTEBOOKS][: len(CORE)] == CORE


def test_pytest_executes_every_notebook():
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "notebooks" in options["testpaths"] and "--nbval-lax" in options["addopts"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_conventions(path):
    assert path.stat().st_size <= 1_000_000, "notebooks stay under 1 MB"
    assert re.fullmatch(r"\d\d_[a-z0-9_]+", path.stem)
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert "widgets" not in nb["metadata"], "no stored widget state"
    cells = nb["cells"]
    ids = [c.get("id") for c in cells]
    assert None not in ids and len(set(ids)) == len(ids), "every cell has its own id (nbformat 4.5)"
    first = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and re.search(
        r"\b(run|runs|runtime|takes|CPU time)\b[\s\S]*\d+(\.\d+)?\s*(s|seconds?|min(ute)?s?)\b", first, re.I), \
        "the first cell says how long the notebook runs"
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert "course_utils.setup(" in code[0], "the first code cell calls course_utils.setup()"
    assert cells[-1]["cell_type"] == "markdown" and "recap" in "".join(cells[-1]["source"]).lower()
    for c in cells:
        if c["cell_type"] != "code":
            continue
        tags = c.get("metadata", {}).get("tags", [])
        if "nbval-check-output" not in tags:
            assert not c.get("outputs"), "outputs are stored only where nbval compares them"
        for out in c.get("outputs", []):
            assert "application/vnd.jupyter.widget-view+json" not in out.get("data", {})
    assert "../shared" not in path.read_text(encoding="utf-8")


def test_readme_maps_every_notebook_and_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        assert path.name in readme, f"{path.name} is missing from the README course map"
    ci = (ROOT / ".ci" / "run").read_text()
    command = re.search(r"^\./course\.sh test$", ci, re.M)
    assert command and "./course.sh test" in readme


def test_stated_runtimes_come_from_one_measured_file():
    """README course map and each notebook's first cell state the runtime of notebooks/runtimes.json.

    The test run itself (root conftest.py) fails when a notebook's measured time disagrees with it.
    """
    import sys
    sys.path.insert(0, str(ROOT / "ci"))
    import runtimes

    stated = runtimes.stated()
    assert sorted(stated) == [p.stem for p in NOTEBOOKS], "notebooks/runtimes.json must list every notebook"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in NOTEBOOKS:
        row = next(r for r in readme.splitlines() if r.startswith(f"| [`{path.name}`]"))
        assert row.rstrip(" |").split(" | ")[-1] == runtimes.fmt(stated[path.stem]), \
            f"README's runtime of {path.name}: run python ci/runtimes.py --update after a test run"
        first = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][0]["source"])
        assert runtimes.first_cell_line(stated[path.stem]) in first, \
            f"{path.name}'s first cell must state {runtimes.fmt(stated[path.stem])} (python ci/runtimes.py --update)"


def test_runtime_tolerance_and_format():
    import sys
    sys.path.insert(0, str(ROOT / "ci"))
    import runtimes

    assert runtimes.fmt(11) == "11 s" and runtimes.fmt(84) == "1 min 24 s" and runtimes.fmt(125.4) == "2 min 05 s" and runtimes.fmt(60) == "1 min 00 s"
    assert runtimes.agrees(60, 60) and runtimes.agrees(100, 60) and not runtimes.agrees(200, 60)
    assert not runtimes.agrees(10, 90)
