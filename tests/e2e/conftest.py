"""JupyterLab on 127.0.0.1 and Debian's headless Chromium, driven by Playwright."""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time

import pytest
import requests

ROOT = pathlib.Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/lib/chromium/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


def chromium_path() -> str:
    """Debian's Chromium; skip (or fail under CI=true) with the install command when missing."""
    for path in (os.environ.get("CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if path and os.path.exists(path):
            return path
    why = (
        "headless Chromium not found; install Debian's build with "
        "`apt-get install -y --no-install-recommends chromium fonts-liberation`"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(f"{why} (a browser test may not be skipped in CI)")
    pytest.skip(why)


def wait_until_up(url: str, proc, timeout: float, what: str, log) -> None:
    """Poll `url` until it answers 200; RuntimeError naming `what` (and the tail of the text
    file `log`) when `proc` ends first or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            tail = pathlib.Path(log).read_text(errors="replace")[-4000:]
            raise RuntimeError(f"{what} did not start\n--- {log} ---\n{tail}")
        time.sleep(0.3)


def stop(proc, timeout: float) -> None:
    """End a server process: SIGTERM, then SIGKILL after `timeout` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """A JupyterLab server on 127.0.0.1 serving a scratch copy of notebooks/."""
    yield from serve(
        tmp_path_factory.mktemp("lab"),
        "lab",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
    )


def serve(home: pathlib.Path, app: str, *args: str):
    """`jupyter APP` (lab, notebook) on 127.0.0.1 with its own Jupyter dirs under `home`,
    serving a scratch copy of notebooks/; yields {"url", "dir"}, then ends kernels and server."""
    chromium_path()  # no server without a browser to drive it
    work = home / "work"
    shutil.copytree(ROOT / "notebooks", work)
    env = dict(os.environ)
    env["CNNVIZ_OFFLINE"] = "1"  # the notebooks' switch, as in test_notebooks: nothing downloads
    for var, sub in [
        ("JUPYTER_CONFIG_DIR", "config"),
        ("JUPYTER_DATA_DIR", "data"),
        ("JUPYTER_RUNTIME_DIR", "runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        env[var] = str(home / sub)
    # No news or update checks: they would reach for the network and pop up toasts.
    labconfig = home / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    disabled = {"@jupyterlab/apputils-extension:announcements": True}
    (labconfig / "page_config.json").write_text(json.dumps({"disabledExtensions": disabled}))
    # No autosave: a notebook saved with its widget views would show them, model-less, to the
    # next test that opens it ("widget model not found": the kernel that had them is gone).
    docmanager = home / "settings" / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text(json.dumps({"autosave": False}))
    env["JUPYTERLAB_SETTINGS_DIR"] = str(home / "settings")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = open(home / "server.log", "w")  # noqa: SIM115 - closed at teardown
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyter", app, "--no-browser", "--allow-root",
            "--ip=127.0.0.1", f"--port={port}", f"--ServerApp.root_dir={work}",
            "--IdentityProvider.token=", "--ServerApp.password=", *args,
        ],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_until_up(f"{base}/api/status", proc, 60, f"jupyter {app}", home / "server.log")
        yield {"url": base, "dir": work}
    finally:
        _stop_kernels(base)
        stop(proc, 20)
        log.close()


def _stop_kernels(base: str) -> None:
    """Kernels outlive the browser: end each session through the REST API."""
    try:
        http = requests.Session()
        http.get(f"{base}/lab", timeout=5)
        headers = {"X-XSRFToken": http.cookies.get("_xsrf", "")}
        for session in http.get(f"{base}/api/sessions", timeout=5).json():
            http.delete(f"{base}/api/sessions/{session['id']}", headers=headers, timeout=10)
    except requests.RequestException:
        pass


@pytest.fixture
def page(lab, tmp_path, request):
    """A fresh Chromium page; the test fails on any console error or page error."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        pg = context.new_page()
        pg.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text}"))
        pg.on("pageerror", lambda e: errors.append(f"pageerror: {e}\n{e.stack}"))
        pg.console_errors = errors
        try:
            yield pg
        finally:
            failed = getattr(request.node, "rep_call", None)
            if os.environ.get("CNNVIZ_SCREENSHOTS") or (failed is not None and failed.failed):
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / f"{request.node.name}.png"
                pg.screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot: {shot}")
            context.close()
            _stop_kernels(lab["url"])  # the next test starts from an idle machine


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.rep_call = report
    return report
