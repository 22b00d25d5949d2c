"""The quickstart notebook in Jupyter Notebook 7 (not JupyterLab), in a real browser."""

from __future__ import annotations

import pytest

from ._lab import NON_BLANK, SCATTER_DRAWN, quickstart_points, rerun_cell, tile_center
from .conftest import serve

pytestmark = pytest.mark.e2e
SCATTER = ".cnnviz-explorer canvas.cnnviz-scatter"


def upstream_race(error: str) -> bool:
    """Notebook 7's own shortcuts plugin racing the settings registry on every page load, with or
    without widgets (jupyter/notebook#7862, open); any other error still fails the test."""
    return (
        error.startswith("pageerror: Cannot read properties of undefined (reading 'schema')")
        and "/static/notebook/notebook_core." in error
    )


@pytest.fixture(scope="session")
def notebook7(tmp_path_factory):
    """A Jupyter Notebook 7 server on 127.0.0.1 serving a scratch copy of notebooks/."""
    yield from serve(tmp_path_factory.mktemp("notebook7"), "notebook")


@pytest.fixture
def lab(notebook7):
    """conftest's `page` ends the kernels of the server named `lab`: here, Notebook 7's."""
    return notebook7


def open_and_run_all(page, server, name: str) -> None:
    """Open `name` in Notebook 7's own notebook page and run every cell."""
    page.goto(f"{server['url']}/notebooks/{name}")
    # Notebook 7 starts the notebook's own kernel without asking (no kernel dialog, unlike a fresh
    # JupyterLab workspace) and, built from JupyterLab's components, has the same debugger button
    # in its toolbar: enabled only once the kernel is really connected (see TESTING.md).
    page.wait_for_selector('.jp-DebuggerBugButton[aria-disabled="false"]', timeout=90_000)
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')


def test_quickstart_in_notebook7(notebook7, page):
    open_and_run_all(page, notebook7, "01_quickstart.ipynb")
    # Notebook 7's own single-document page, not JupyterLab's shell
    assert page.locator("body").get_attribute("data-notebook") == "notebooks"
    assert page.locator("#main-panel").count() == 1
    assert page.locator("#jp-main-dock-panel").count() == 0

    filters = page.locator(".cnnviz-filter-grid canvas.cnnviz-tiles").first
    maps = page.locator(".cnnviz-feature-maps canvas.cnnviz-tiles").first
    for canvas in (filters, maps):
        canvas.wait_for(timeout=60_000)
        page.wait_for_function("c => Number(c.dataset.drawCount) > 0", arg=canvas.element_handle())
    assert filters.get_attribute("data-n-tiles") == "16"
    assert maps.get_attribute("data-n-tiles") == "64"  # relu3, the default layer
    assert filters.evaluate(NON_BLANK) > 8, "the filter grid drew (almost) nothing"
    assert maps.evaluate(NON_BLANK) > 8, "the feature maps drew (almost) nothing"

    # the explorer at the end of the notebook draws its t-SNE map of the photos
    page.wait_for_function(SCATTER_DRAWN, arg=quickstart_points(), timeout=180_000)
    assert page.locator(SCATTER).evaluate(NON_BLANK) >= 10

    # a click on a feature-map tile reaches the kernel
    order = [int(c) for c in maps.get_attribute("data-order").split(",")]
    x, y = tile_center(maps, 5)
    maps.click(position={"x": x, "y": y})
    out = rerun_cell(page, 3)
    # (the cell queues behind the notebook's last cell, which waits for the explorer's work)
    out.filter(has_text=f"selected channel: {order[5]} of layer relu3").wait_for(timeout=180_000)
    assert [e for e in page.console_errors if not upstream_race(e)] == []
