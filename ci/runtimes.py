"""Notebook runtimes: one measured source of truth, `notebooks/runtimes.json`.

The test run (nbval, one torch thread, two notebooks at a time) measures every notebook: the root
`conftest.py` adds up the cell times per notebook and writes them to `artifacts/notebook_runtimes.json`.
The README's course map and every notebook's first cell state the runtime from `notebooks/runtimes.json`
(`tests/test_notebooks.py` checks that they agree), and the test run fails when a notebook's measured time
is outside the tolerance below of what it states.

    python ci/runtimes.py --update     # take the last test run's measurements, rewrite README + first cells
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
STATED = ROOT / "notebooks" / "runtimes.json"
MEASURED = ROOT / "artifacts" / "notebook_runtimes.json"
MACHINE = "a 2-vCPU cloud VM"
# A measured time agrees with the stated one when it is within this factor, plus or minus this slack.
FACTOR, SLACK_S = 1.5, 15.0


def fmt(seconds: float) -> str:
    """11 -> '11 s', 84 -> '1 min 24 s' (the style of the README's course map)."""
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


def first_cell_line(seconds: float) -> str:
    return (f"**Runtime:** {fmt(seconds)} on {MACHINE}, measured by the course's test run (cells only, one torch "
            "thread, two notebooks at a time; `notebooks/runtimes.json`).")


def agrees(measured: float, stated: float) -> bool:
    return stated / FACTOR - SLACK_S <= measured <= stated * FACTOR + SLACK_S


def stated() -> dict[str, float]:
    return json.loads(STATED.read_text(encoding="utf-8"))["seconds"]


def _rewrite_first_cell(path: pathlib.Path, seconds: float) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    text = "".join(nb["cells"][0]["source"])
    paragraphs = text.split("\n\n")
    line = first_cell_line(seconds)
    hits = [i for i, p in enumerate(paragraphs) if re.match(r"\s*(\*\*Runtime|Runs in about)", p)]
    if hits:
        paragraphs[hits[0]] = line
    else:
        paragraphs.append(line)
    nb["cells"][0]["source"] = "\n\n".join(paragraphs).splitlines(keepends=True)
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def _rewrite_readme(times: dict[str, float]) -> None:
    readme = ROOT / "README.md"
    out = []
    for row in readme.read_text(encoding="utf-8").splitlines():
        m = re.match(r"\| \[`(\d\d_[a-z0-9_]+)\.ipynb`\]", row)
        if m and m.group(1) in times:
            cells = row.split(" | ")
            cells[-1] = fmt(times[m.group(1)]) + " |"
            row = " | ".join(cells)
        out.append(row)
    readme.write_text("\n".join(out) + "\n", encoding="utf-8")


def update() -> dict[str, float]:
    measured = json.loads(MEASURED.read_text(encoding="utf-8"))
    times = {**(stated() if STATED.exists() else {}), **{k: round(v, 1) for k, v in measured["seconds"].items()}}
    STATED.write_text(json.dumps({"machine": MACHINE, "how": "sum of nbval cell times, ./course.sh test",
                                  "seconds": dict(sorted(times.items()))}, indent=1) + "\n", encoding="utf-8")
    for stem, seconds in times.items():
        path = ROOT / "notebooks" / f"{stem}.ipynb"
        if path.exists():
            _rewrite_first_cell(path, seconds)
    _rewrite_readme(times)
    return times


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--update", action="store_true", help="copy the last measurements into the repo's text")
    if p.parse_args().update:
        for k, v in update().items():
            print(f"{k:28s} {fmt(v)}")
    else:
        p.print_help()
