"""The course in a real browser: JupyterLab on loopback, driven by Debian's Chromium via Playwright.

One JupyterLab server per pytest session (temporary root, settings and workspaces), one
Chromium, one page and one kernel per notebook. A notebook is run once; the generic checks
and the notebook-specific widget tests share that run, then its kernel is shut down.

Prerequisites: the ``chromium`` executable (Debian: ``apt-get install chromium``; or point
``COURSE_CHROMIUM`` at any Chrome/Chromium) and the ``playwright`` Python package (dev extra).
Never run ``playwright install``: it downloads a browser and fails offline.
Outside CI a missing prerequisite skips the suite with a how-to; with ``CI=true`` it fails.
See tests/browser/README.md.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
# COURSE_BROWSER_NOTEBOOKS points the suite at another folder (e.g. a mutated copy of a notebook).
NOTEBOOKS = pathlib.Path(os.environ.get("COURSE_BROWSER_NOTEBOOKS", REPO / "notebooks"))
FIXTURES = HERE / "fixtures"
HARNESS = "_harness/harness_demo.ipynb"   # fixtures/harness_demo.ipynb as the Lab server sees it
ARTIFACTS = pathlib.Path(os.environ.get("COURSE_BROWSER_ARTIFACTS", REPO / "artifacts" / "browser"))
# Longest a single notebook may take to run all cells in the browser (seconds).
NOTEBOOK_TIMEOUT_S = float(os.environ.get("COURSE_BROWSER_NOTEBOOK_TIMEOUT", "600"))
SETTLE_TIMEOUT_S = float(os.environ.get("COURSE_BROWSER_SETTLE_TIMEOUT", "30"))

# The fixture notebooks exercise the harness itself; nbval must never collect them.
collect_ignore_glob = ["fixtures/*"]

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--no-first-run", "--disable-quic", "--disable-features=Translate,OptimizationHints,MediaRouter",
    # Anything that is not loopback cannot even be resolved; the request is still recorded
    # by the page listener, and the test fails on it.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
]

LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}
NON_NETWORK_SCHEMES = {"data", "blob", "about", "chrome", "chrome-extension", "devtools"}

ENABLE_HOWTO = (
    "The browser tests need Chromium and the playwright package:\n"
    "  Debian/Ubuntu: sudo apt-get install -y chromium   (or set COURSE_CHROMIUM=/path/to/chrome)\n"
    "  .venv/bin/python -m pip install -e '.[dev]'        (installs playwright; never run `playwright install`)\n"
    "then run: .venv/bin/python -m pytest tests/browser   (see tests/browser/README.md)"
)


# ----------------------------------------------------------------------------- prerequisites
def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def find_chromium() -> str | None:
    override = os.environ.get("COURSE_CHROMIUM")
    if override:
        return override if os.path.exists(override) else None
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    return None


def missing_prerequisites() -> list[str]:
    missing = []
    if find_chromium() is None:
        where = os.environ.get("COURSE_CHROMIUM")
        missing.append(f"Chromium not found (COURSE_CHROMIUM={where!r} does not exist)" if where
                       else "Chromium not found on PATH (`chromium`)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the Python package `playwright` is not installed")
    return missing


def pytest_collection_modifyitems(config, items):
    here = str(HERE)
    mine = [it for it in items if str(it.fspath).startswith(here)]
    if not mine:
        return
    for it in mine:
        it.add_marker(pytest.mark.browser)
    missing = missing_prerequisites()
    if missing and not in_ci():
        reason = "browser tests skipped: " + "; ".join(missing) + "\n" + ENABLE_HOWTO
        for it in mine:
            it.add_marker(pytest.mark.skip(reason=reason))
    # Run each notebook once: its specific tests directly follow its generic test, so they reuse
    # the executed page and kernel. Harness self-tests run first.
    order = {name: i for i, name in enumerate(notebook_names())}

    def key(it):
        nb = _item_notebook(it)
        if nb is None:
            return (-1, 0)
        return (order.get(nb, len(order)), 0 if it.originalname == "test_every_notebook" else 1)

    others = [it for it in items if it not in mine]
    items[:] = others + sorted(mine, key=key)


def _item_notebook(item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "notebook" in callspec.params:
        return callspec.params["notebook"]
    marker = item.get_closest_marker("notebook")
    if marker is not None:
        return resolve_notebook(marker.args[0])
    return None


def pytest_generate_tests(metafunc):
    # test_every_notebook runs once per course notebook present right now.
    if metafunc.function.__name__ == "test_every_notebook" and "notebook" in metafunc.fixturenames:
        metafunc.parametrize("notebook", notebook_names())


def pytest_configure(config):
    config.addinivalue_line("markers", "notebook(pattern): the course notebook a browser test drives")


def notebook_names() -> list[str]:
    return sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) if NOTEBOOKS.is_dir() else []


def resolve_notebook(pattern: str) -> str | None:
    """The course notebook matching a glob such as '04_*.ipynb', or None while it has not landed."""
    matches = sorted(p.name for p in NOTEBOOKS.glob(pattern)) if NOTEBOOKS.is_dir() else []
    return matches[0] if matches else None


# ----------------------------------------------------------------------------- JupyterLab server
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Lab:
    """A running JupyterLab server on loopback."""

    def __init__(self, base: str, token: str, root: pathlib.Path, log: pathlib.Path):
        self.base, self.token, self.root, self.log = base, token, root, log

    def url(self, notebook: str) -> str:
        return f"{self.base}/lab/tree/{urllib.parse.quote(notebook)}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(f"{self.base}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self, notebook: str | None = None) -> None:
        """Delete the session (and kernel) of one notebook, or of all notebooks."""
        for s in self.api("/api/sessions") or []:
            if notebook is None or s.get("path", "").endswith(notebook):
                try:
                    self.api(f"/api/sessions/{s['id']}", method="DELETE")
                except OSError:
                    pass


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    missing = missing_prerequisites()
    if missing:  # only reached in CI (elsewhere the items were marked skip at collection)
        pytest.fail("CI=true but the browser tests cannot run: " + "; ".join(missing) + "\n" + ENABLE_HOWTO,
                    pytrace=False)
    base_dir = tmp_path_factory.mktemp("lab")
    root = base_dir / "root"
    shutil.copytree(NOTEBOOKS, root, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    shutil.copytree(FIXTURES, root / "_harness", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    settings = base_dir / "settings"
    _write_settings(settings)
    port, token = _free_port(), secrets.token_hex(16)
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
           "--LabApp.expose_app_in_browser=True", f"--LabApp.user_settings_dir={settings}",
           f"--LabApp.workspaces_dir={base_dir / 'workspaces'}", "--LabApp.news_url=None",
           "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("COURSE_CACHE_DIR", str(REPO / ".cache"))
    # Keep the user's own Jupyter/IPython config, kernelspecs and startup files out of the test.
    for var, sub in (("JUPYTER_CONFIG_DIR", "jupyter-config"), ("JUPYTER_DATA_DIR", "jupyter-data"),
                     ("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython")):
        env[var] = str(base_dir / sub)
    log_path = base_dir / "lab.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root)
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if proc.poll() is not None or time.time() > deadline:
                proc.kill()
                log.close()
                pytest.fail(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}", pytrace=False)
            time.sleep(0.3)
    server = Lab(base, token, root, log_path)
    yield server
    try:
        server.shutdown_kernels()
    except OSError:
        pass
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    log.close()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(log_path, ARTIFACTS / "lab.log")


def _write_settings(settings: pathlib.Path) -> None:
    files = {
        # No "get notified about Jupyter news?" toast over the screenshots, no update check.
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
            {"checkForUpdates": False, "fetchNews": "false"},
        # Every cell stays attached to the page, so off-screen plots and widgets render and can be
        # checked (the default windowing only renders cells near the viewport).
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    }
    for rel, content in files.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(content))


# ----------------------------------------------------------------------------- Chromium
@pytest.fixture(scope="session")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=find_chromium(), headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def is_local(url: str) -> bool:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme in NON_NETWORK_SCHEMES:
        return True
    return parsed.scheme in {"http", "https", "ws", "wss"} and (parsed.hostname or "") in LOCAL_HOSTS


# ----------------------------------------------------------------------------- page helpers (JS)
JS_KERNEL_IDLE = """() => { const a = window.jupyterapp; const w = a && a.shell.currentWidget;
  const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
  return !!k && k.status === 'idle' && !!(w.content && w.content.widgets && w.content.widgets.length); }"""

JS_RUN_ALL = """() => { window.__courseRunAll = {done: false};
  window.jupyterapp.commands.execute('notebook:run-all-cells').then(
    r => { window.__courseRunAll = {done: true, ok: r !== false}; },
    e => { window.__courseRunAll = {done: true, ok: false, error: String(e)}; });
  return true; }"""

JS_HAS_DATA = """t => ['x','y','z','values','lat','lon','r','a','b','cells','header'].some(k => {
      const v = t[k]; if (v == null) return false;
      if (k === 'cells' || k === 'header') return !!(v.values && v.values.length);
      return typeof v.length === 'number' && v.length > 0; })"""

JS_SETTLED = """() => { const hasData = %s;
  return !Array.from(document.querySelectorAll('.jp-OutputArea-output'))
            .some(el => /Loading widget\\.\\.\\./.test(el.innerText || ''))
      && Array.from(document.querySelectorAll('.js-plotly-plot'))
            .every(d => d.querySelector('.main-svg') && (d._fullData || []).some(hasData)); }""" % JS_HAS_DATA

# Per cell: source head, execution count, error outputs, and what is on screen.
JS_REPORT = r"""() => {
  const nb = window.jupyterapp.shell.currentWidget.content;
  const FALLBACK = /^\s*(interactive|FigureWidget|[A-Z][A-Za-z]*(Box|Slider|Widget|Button|Buttons|Dropdown|Output|Text|Progress|Checkbox|Select|Tab|Accordion|HTML|Label))\((children|value|layout|description|options|data|_dom_classes|style|outputs)?=?/;
  const hasData = HAS_DATA;
  return nb.widgets.map((cell, i) => {
    const m = cell.model, node = cell.node;
    const r = {index: i, type: m.type, source: m.sharedModel.getSource().slice(0, 120),
               count: m.type === 'code' ? m.executionCount : null, errors: [], plots: [], widgets: [],
               fallbacks: [], tracebacks: []};
    if (m.type !== 'code') return r;
    // Model outputs and their on-screen elements line up one to one (children of the output area).
    const children = cell.outputArea ? Array.from(cell.outputArea.node.children) : [];
    for (let j = 0; j < m.outputs.length; j++) {
      const o = m.outputs.get(j).toJSON(), el = children[j];
      if (o.output_type === 'error') r.errors.push(o.ename + ': ' + o.evalue);
      const data = o.data || {};
      if (data['application/vnd.jupyter.widget-view+json']) {
        const txt = el ? (el.innerText || '') : '';
        const out = el && el.querySelector('.jp-OutputArea-output');
        // Rendered by the widget manager: a panel with child elements (a FigureWidget shown on its own
        // has no .jupyter-widgets class). Without the manager Lab falls back to text (jp-RenderedText).
        r.widgets.push({rendered: !!(out && !out.classList.contains('jp-RenderedText') && out.children.length > 0),
                        empty: !out || (out.children.length === 0 && !txt.trim()),
                        error: /Error displaying widget|Loading widget\.\.\./.test(txt) ? txt.slice(0, 200) : null});
      } else if (data['application/vnd.plotly.v1+json']) {
        if (!(el && el.querySelector('.js-plotly-plot'))) r.plots.push({title: null, traces: 0, withData: 0, unrendered: true});
      }
    }
    node.querySelectorAll('.js-plotly-plot').forEach(d => {
      const fd = d._fullData || [];
      const t = d.layout && d.layout.title;
      const box = d.getBoundingClientRect();
      r.plots.push({title: t ? (typeof t === 'string' ? t : t.text || '') : '', traces: fd.length,
                    withData: fd.filter(hasData).length, w: Math.round(box.width), h: Math.round(box.height),
                    svg: !!d.querySelector('.main-svg')});
    });
    node.querySelectorAll('[data-mime-type="text/plain"]').forEach(el => {
      const txt = el.innerText || '';
      if (FALLBACK.test(txt)) r.fallbacks.push(txt.slice(0, 200));
    });
    node.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"], .jp-OutputArea-output').forEach(el => {
      const txt = el.innerText || '';
      if (/Traceback \(most recent call last\)|Error displaying widget/.test(txt)) r.tracebacks.push(txt.slice(0, 600));
    });
    r.tracebacks = Array.from(new Set(r.tracebacks));
    return r;
  });
}""".replace("HAS_DATA", JS_HAS_DATA)


def problems_in(report: list[dict]) -> list[str]:
    """Everything a student would see as broken, one line per problem."""
    out = []
    code = [c for c in report if c["type"] == "code"]
    for c in code:
        where = f"cell {c['index']} ({c['source'].splitlines()[0][:60] if c['source'] else ''!r})"
        if c["source"].strip() and c["count"] is None:
            out.append(f"{where}: never ran")
        for e in c["errors"]:
            out.append(f"{where}: error output {e}")
        for t in c["tracebacks"]:
            if not c["errors"]:
                out.append(f"{where}: traceback shown: {t[:300]}")
        for p in c["plots"]:
            if p.get("unrendered"):
                out.append(f"{where}: plotly output did not render (no plot element)")
            elif p["withData"] == 0:
                out.append(f"{where}: plotly figure {p['title']!r} is empty (no trace with data)")
            elif not p.get("svg"):
                out.append(f"{where}: plotly figure {p['title']!r} has no SVG")
        for w in c["widgets"]:
            if w["error"]:
                out.append(f"{where}: widget did not render: {w['error']}")
            elif not w["rendered"] and not w["empty"]:
                out.append(f"{where}: widget output without a rendered widget")
        for f in c["fallbacks"]:
            out.append(f"{where}: widget shown as text fallback: {f[:120]}")
    return out


class NotebookRun:
    """One notebook opened in Chromium with all cells run (page and kernel stay alive)."""

    def __init__(self, name: str, page, lab: Lab, requests: list[str], console: list[str], seconds: float,
                 ok: bool, report: list[dict]):
        self.name, self.page, self.lab = name, page, lab
        self.requests, self.console, self.seconds, self.ok, self.report = requests, console, seconds, ok, report
        self.dir = ARTIFACTS / pathlib.Path(name).stem
        self.dir.mkdir(parents=True, exist_ok=True)

    # -- reading
    def problems(self) -> list[str]:
        """Everything a student would see as broken in the current page, one line per problem."""
        return problems_in(self.refresh_report())

    def refresh_report(self) -> list[dict]:
        self.report = self.page.evaluate(JS_REPORT)
        return self.report

    def non_local_requests(self) -> list[str]:
        return sorted({u for u in self.requests if not is_local(u)})

    def cell_of(self, locator):
        """The .jp-Cell that contains ``locator`` (the first match)."""
        return locator.first.locator("xpath=ancestor::div[contains(concat(' ', normalize-space(@class), ' '), ' jp-Cell ')][1]")

    # -- widgets, found by their description (the label students see), optionally inside ``scope``
    def _within(self, scope):
        return scope.first if scope is not None else self.page

    def _labelled(self, cls: str, description: str, scope=None):
        label = re.compile(description, re.I)
        return self._within(scope).locator(cls).filter(has=self.page.locator(".widget-label", has_text=label))

    def slider(self, description: str, scope=None):
        """The slider whose label matches ``description`` (a regex, case-insensitive)."""
        return self._labelled(".widget-slider", description, scope)

    def dropdown(self, description: str, scope=None):
        return self._labelled(".widget-dropdown", description, scope)

    def toggle_buttons(self, description: str, scope=None):
        return self._labelled(".widget-toggle-buttons", description, scope)

    def text_input(self, description: str, scope=None):
        return self._labelled(".widget-text", description, scope).locator("input")

    def button(self, text: str, scope=None):
        return self._within(scope).locator("button.jupyter-button", has_text=re.compile(text, re.I))

    def cell_with_plot(self, title: str):
        """The notebook cell holding a plotly figure whose title matches ``title`` (a regex)."""
        return self.page.locator(".jp-Notebook .jp-Cell").filter(
            has=self.page.locator(".js-plotly-plot .gtitle", has_text=re.compile(title)))

    def plot_cell(self, title: str):
        """The first cell holding a figure titled like ``title``; fails, listing the titles there are, if none."""
        cell = self.cell_with_plot(title)
        assert cell.count() >= 1, f"{self.name}: no figure titled like {title!r}; titles: {self.plot_titles()}"
        return cell.first

    def cell_with(self, selector: str):
        """The notebook cell holding an element matching the CSS ``selector``."""
        return self.page.locator(".jp-Notebook .jp-Cell").filter(has=self.page.locator(selector))

    def plot_titles(self, scope=None) -> list[str]:
        return self._within(scope).locator(".js-plotly-plot").evaluate_all(
            "ds => ds.map(d => { const t = d.layout && d.layout.title; return t ? (t.text || String(t)) : ''; })")

    def slider_at_max(self, slider) -> bool:
        """Whether the slider's handle sits at its maximum (noUiSlider's aria attributes)."""
        handle = slider.first.locator(".noUi-handle").first
        now, top = handle.get_attribute("aria-valuenow"), handle.get_attribute("aria-valuemax")
        return now is not None and top is not None and float(now) >= float(top)

    def move_slider(self, slider, key: str = "Home", presses: int = 1) -> tuple[str, str]:
        """Move a slider with the keyboard; returns the readout before and after."""
        slider = slider.first
        slider.scroll_into_view_if_needed()
        readout = slider.locator(".widget-readout")
        before = readout.inner_text() if readout.count() else ""
        handle = slider.locator(".noUi-handle").first
        handle.focus()
        for _ in range(presses):
            handle.press(key)
        if readout.count():
            self.page.wait_for_function("([el, v]) => el.innerText !== v", arg=[readout.element_handle(), before],
                                        timeout=10_000)
        return before, (readout.inner_text() if readout.count() else "")

    def plots_state(self, scope=None) -> list[str]:
        """A fingerprint (title + trace data) of every plotly figure in ``scope`` (default: whole page)."""
        js = """(root) => Array.from((root || document).querySelectorAll('.js-plotly-plot')).map(d => {
            const t = d.layout && d.layout.title;
            const title = t ? (typeof t === 'string' ? t : t.text || '') : '';
            const keys = ['x','y','z','text','values','marker','customdata'];
            const traces = (d._fullData || []).map(tr => keys.map(k => {
              let v = tr[k]; if (v == null) return null;
              if (k === 'marker') v = v.color;
              try { return JSON.stringify(v, (kk, vv) => ArrayBuffer.isView(vv) ? Array.from(vv) : vv); }
              catch (e) { return String(v); } }));
            return JSON.stringify([title, traces, (d.layout.annotations || []).map(a => a.text)]); })"""
        root = scope.first.element_handle() if scope is not None else None
        return self.page.evaluate(js, root)

    def wait_plots_change(self, before: list[str], scope=None, timeout_s: float = 30) -> list[str]:
        """Wait until the plots in ``scope`` differ from ``before``; AssertionError if they never do."""
        deadline = time.time() + timeout_s
        while time.time() < deadline:
            now = self.plots_state(scope)
            if now and now != before:
                return now
            self.page.wait_for_timeout(250)
        raise AssertionError(f"{self.name}: the plot did not change within {timeout_s:.0f} s "
                             f"(still {len(before)} figure(s) with the same data)")

    def output_text(self, scope) -> str:
        """The visible text of a cell's outputs, without plot internals."""
        return scope.first.evaluate("""c => Array.from(c.querySelectorAll('.jp-OutputArea-output'))
            .filter(o => !o.querySelector('.js-plotly-plot'))
            .map(o => o.innerText).join('\\n')""")

    def wait_kernel_idle(self, timeout_s: float = 60) -> None:
        self.page.wait_for_function(JS_KERNEL_IDLE, timeout=timeout_s * 1000)

    def shot(self, name: str, scope=None) -> pathlib.Path:
        path = self.dir / f"{name}.png"
        try:
            if scope is not None:
                scope.first.scroll_into_view_if_needed()
                scope.first.screenshot(path=str(path))
            else:
                self.page.screenshot(path=str(path))
        except Exception as exc:  # a screenshot must never hide the real failure
            path.with_suffix(".txt").write_text(f"screenshot failed: {exc}")
        return path


class _Started:
    """A notebook whose page is open and whose 'Run All Cells' has been started."""

    def __init__(self, name: str, lab: Lab, browser):
        self.name, self.error = name, None
        # Fresh artifacts for this notebook (only its own folder: the artifacts root may be anywhere).
        shutil.rmtree(ARTIFACTS / pathlib.Path(name).stem, ignore_errors=True)
        self.context = browser.new_context(viewport={"width": 1400, "height": 1000}, service_workers="block")
        self.page = self.context.new_page()
        self.requests: list[str] = []
        self.console: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        self.page.on("websocket", lambda ws: self.requests.append(ws.url))
        self.page.on("console", lambda m: self.console.append(f"{m.type}: {m.text}")
                     if m.type in ("error", "warning") else None)
        self.page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))
        self.page.set_default_timeout(30_000)
        self.start = time.time()
        try:
            self.page.goto(lab.url(name))
            self.page.wait_for_function(JS_KERNEL_IDLE, timeout=120_000)
            self.page.evaluate(JS_RUN_ALL)
        except Exception as exc:  # re-raised when the notebook's test asks for it
            self.error = exc

    def finish(self, lab: Lab) -> NotebookRun:
        if self.error is not None:
            raise self.error
        page = self.page
        remaining = max(1.0, NOTEBOOK_TIMEOUT_S - (time.time() - self.start))
        page.wait_for_function("() => window.__courseRunAll && window.__courseRunAll.done",
                               timeout=remaining * 1000, polling=500)
        state = page.evaluate("() => window.__courseRunAll")
        page.wait_for_function(JS_KERNEL_IDLE, timeout=60_000)
        # Widget views and plots render asynchronously after the kernel replies (a FigureWidget first
        # draws empty, then receives its data). Wait until nothing says "Loading widget..." and every
        # plot has a trace with data; a genuinely empty or broken one is reported after the timeout.
        # (30 s: on a loaded machine a live FigureWidget's first state can take well over 10 s to arrive.)
        try:
            page.wait_for_function(JS_SETTLED, timeout=SETTLE_TIMEOUT_S * 1000, polling=250)
        except Exception:
            pass
        page.wait_for_timeout(500)
        run = NotebookRun(self.name, page, lab, self.requests, self.console, time.time() - self.start,
                          bool(state.get("ok")), [])
        run.refresh_report()
        return run

    def close(self, lab: Lab) -> None:
        directory = ARTIFACTS / pathlib.Path(self.name).stem
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "requests.txt").write_text("\n".join(self.requests))
        (directory / "console.txt").write_text("\n".join(self.console))
        try:
            self.context.close()
        finally:
            lab.shutdown_kernels(self.name)


class NotebookRunner:
    """Runs notebooks in the order the tests need them; re-requesting the current one reuses its page.

    With ``COURSE_BROWSER_PARALLEL=2`` (the default) the next planned notebook is started while the
    current one is being run and tested: each kernel uses one thread, so on a 2-core machine two
    notebooks run side by side. At most that many kernels are alive; each is shut down when its
    notebook's tests are done. ``COURSE_BROWSER_PARALLEL=1`` runs strictly one at a time.
    """

    def __init__(self, lab: Lab, browser, plan: list[str], parallel: int):
        self.lab, self.browser, self.plan, self.parallel = lab, browser, list(plan), max(1, parallel)
        self.started: dict[str, _Started] = {}
        self.current: NotebookRun | None = None

    def _start(self, name: str) -> None:
        if name not in self.started:
            self.started[name] = _Started(name, self.lab, self.browser)

    def close(self) -> None:
        if self.current is not None:
            name, self.current = self.current.name, None
            self.started.pop(name).close(self.lab)

    def close_all(self) -> None:
        self.close()
        for name in list(self.started):
            self.started.pop(name).close(self.lab)

    def __call__(self, name: str) -> NotebookRun:
        if self.current is not None and self.current.name == name:
            return self.current
        self.close()
        self._start(name)
        if name in self.plan:
            for following in self.plan[self.plan.index(name) + 1:][:self.parallel - 1]:
                self._start(following)
        self.current = self.started[name].finish(self.lab)
        return self.current


PLAN: list[str] = []


def pytest_collection_finish(session):
    """The notebooks the selected browser tests need, in the order they will run (for prefetching)."""
    PLAN.clear()
    for item in session.items:
        if not str(item.fspath).startswith(str(HERE)) or item.get_closest_marker("skip"):
            continue
        name = HARNESS if item.fspath.basename == "test_harness.py" else _item_notebook(item)
        if name and name not in PLAN:
            PLAN.append(name)


@pytest.fixture(scope="session")
def notebook_runner(lab, browser):
    runner = NotebookRunner(lab, browser, PLAN, int(os.environ.get("COURSE_BROWSER_PARALLEL", "2")))
    yield runner
    runner.close_all()


@pytest.fixture
def course_notebook(request, notebook_runner):
    """The executed page of the notebook named by the test's ``@pytest.mark.notebook(glob)``."""
    marker = request.node.get_closest_marker("notebook")
    if marker is None:
        raise ValueError("course_notebook needs @pytest.mark.notebook('NN_*.ipynb')")
    name = resolve_notebook(marker.args[0])
    if name is None:
        pytest.skip(f"no notebook matching notebooks/{marker.args[0]} yet")
    run = notebook_runner(name)
    yield run
    if getattr(request.node, "rep_call_failed", False):
        run.shot(f"FAILED-{re.sub(r'[^A-Za-z0-9_.-]+', '_', request.node.name)}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.when == "call":
        item.rep_call_failed = rep.failed
