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
