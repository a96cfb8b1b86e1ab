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
