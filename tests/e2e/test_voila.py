"""CNNExplorer in Voilà, in a real browser: the notebook runs on page load, the explorer
renders and lays out as in JupyterLab, and a click on a point shows that image in every view.
The notebook: tests/e2e/apps/explorer_voila.ipynb."""

from __future__ import annotations

import shutil
import sys

import pytest

from ._served import APPS, Expected, browser, need, run_app, serve

pytestmark = pytest.mark.e2e

# Voilà's own page template links Font Awesome from a CDN; the test answers those two requests
# with an empty stylesheet (nothing may leave the machine) and fails on any other.
VOILA_CDN = (r"^https://cdn\.jsdelivr\.net/npm/@fortawesome/fontawesome-free@[^/]*/css/",)

# Notebook 7's JupyterLab extension (installed with the `notebook` test dependency) fails to load
# in Voilà's page, with a console error that has nothing to do with the widgets: Voilà, which
# loads every installed lab extension, is told to leave it out.
NOT_FOR_VOILA = '["@jupyter-notebook/lab-extension"]'


@pytest.fixture
def voila_app(tmp_path):
    need("voila")
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(APPS / "explorer_voila.ipynb", work)
    argv = [
        sys.executable, "-m", "voila", str(work / "explorer_voila.ipynb"), "--no-browser",
        "--port={port}", "--Voila.ip=127.0.0.1", f"--Voila.root_dir={work}",
        f"--VoilaConfiguration.extension_denylist={NOT_FOR_VOILA}",
    ]  # fmt: skip
    with serve(tmp_path, argv, ready="/voila/static/voila.js") as server:
        yield server


def test_explorer_in_voila_renders_lays_out_and_links_its_views(voila_app, tmp_path, request):
    expected = Expected()
    with browser(tmp_path / "profile", request, stub_css=VOILA_CDN) as page:
        run_app(page, voila_app, expected, shadow=False, name="explorer_voila")
