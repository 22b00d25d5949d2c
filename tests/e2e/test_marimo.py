"""CNNExplorer in marimo (`mo.ui.anywidget`), in a real browser: it renders inside marimo's
shadow root with its stylesheets there, lays out as in JupyterLab, and a click on a point
shows that image in every view. The app: tests/e2e/apps/explorer_marimo.py."""

from __future__ import annotations

import sys

import pytest

from ._served import APPS, Expected, browser, need, run_app, serve

pytestmark = pytest.mark.e2e


@pytest.fixture
def marimo_app(tmp_path):
    need("marimo")
    argv = [
        sys.executable, "-m", "marimo", "run", str(APPS / "explorer_marimo.py"),
        "--headless", "--host", "127.0.0.1", "--port", "{port}", "--no-token",
    ]  # fmt: skip
    with serve(tmp_path, argv, ready="/health") as server:
        yield server


def test_explorer_in_marimo_renders_lays_out_and_links_its_views(marimo_app, tmp_path, request):
    expected = Expected()
    with browser(tmp_path / "profile", request) as page:
        run_app(page, marimo_app, expected, shadow=True, name="explorer_marimo")
