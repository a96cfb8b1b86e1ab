"""Test-wide settings: everything runs offline, on one thread, with the course cache in the repo.

nbval's kernels inherit this environment, so notebooks under test behave the same way.
"""
import os
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent
os.environ.setdefault("COURSE_CACHE_DIR", str(ROOT / ".cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


# ------------------------------------------------------------------ notebook runtimes
# nbval runs one item per cell; add up the cell times per notebook (on the xdist controller too), write
# them to artifacts/notebook_runtimes.json and fail the run when a notebook that ran in full takes much
# longer or shorter than the runtime it states (notebooks/runtimes.json; tolerance in ci/runtimes.py).
_CELL_SECONDS: dict[str, float] = {}
_CELLS_RUN: dict[str, int] = {}


def pytest_runtest_logreport(report):
    path = report.nodeid.split("::")[0]
    if report.when == "call" and path.startswith("notebooks/") and path.endswith(".ipynb"):
        stem = pathlib.Path(path).stem
        _CELL_SECONDS[stem] = _CELL_SECONDS.get(stem, 0.0) + report.duration
        _CELLS_RUN[stem] = _CELLS_RUN.get(stem, 0) + 1


def _code_cells(stem: str) -> int:
    import json
    nb = json.loads((ROOT / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    return sum(c["cell_type"] == "code" for c in nb["cells"])


def pytest_sessionfinish(session, exitstatus):
    if not _CELL_SECONDS or hasattr(session.config, "workerinput"):      # nothing ran, or an xdist worker
        return
    import json
    import sys
    sys.path.insert(0, str(ROOT / "ci"))
    import runtimes

    full = {s: t for s, t in _CELL_SECONDS.items() if _CELLS_RUN[s] == _code_cells(s)}
    out = ROOT / "artifacts" / "notebook_runtimes.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"seconds": {k: round(v, 1) for k, v in sorted(full.items())}}, indent=1) + "\n")
    stated = runtimes.stated() if runtimes.STATED.exists() else {}
    off = [f"{s}: measured {runtimes.fmt(t)}, states {runtimes.fmt(stated[s]) if s in stated else 'nothing'}"
           for s, t in sorted(full.items()) if s not in stated or not runtimes.agrees(t, stated[s])]
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if off and reporter:
        reporter.write_line("")
        reporter.write_line("notebook runtimes disagree with notebooks/runtimes.json (tolerance x"
                            f"{runtimes.FACTOR} ± {runtimes.SLACK_S:.0f} s):\n  " + "\n  ".join(off)
                            + "\n  measured: artifacts/notebook_runtimes.json; to adopt them: python ci/runtimes.py --update",
                            red=True)
    if off and session.exitstatus == 0:
        session.exitstatus = 1
