"""The representation-space notebook in JupyterLab: the WebGL map renders and links to Python."""

from __future__ import annotations

import io
import re

import nbformat
import numpy as np
import pytest
from PIL import Image

from ._lab import NON_BLANK, open_and_run_all, rerun_cell

pytestmark = pytest.mark.e2e
SCATTER = ".cnnviz-embedding canvas.cnnviz-scatter"
NOTEBOOK = "02_representation_space.ipynb"
# a cell added to the scratch copy: what Python holds of the browser's selection
SELECTION_CELL = 'print(f"selection {explorer.selection.tolist()}")'
# the first region name is centred on point i (which has moved from `before`, when given)
NAME_ON_POINT = """([root, i, before]) => {
  const p = root.cnnvizPointToClient(i);
  if (!p || (before && Math.hypot(p.x - before.x, p.y - before.y) < 5)) return false;
  const b = root.querySelector('.cnnviz-region').getBoundingClientRect();
  return Math.abs(b.left + b.width / 2 - p.x) <= 2 && Math.abs(b.top + b.height / 2 - p.y) <= 2;
}"""


def test_map_renders_hovers_clicks_and_follows_python(lab, page):
    path = lab["dir"] / NOTEBOOK
    nb = nbformat.read(path, as_version=4)
    if nb.cells[-1].source != SELECTION_CELL:
        nb.cells.append(nbformat.v4.new_code_cell(SELECTION_CELL))
        nbformat.write(nb, path)
    open_and_run_all(page, lab, NOTEBOOK)
    page.wait_for_function(
        f"() => {{ const c = document.querySelector('{SCATTER}');"
        " return c && Number(c.dataset.drawCount) > 0 && c.dataset.points === '1797'"
        " && c.closest('.cnnviz-embedding').dataset.running === 'false'; }",
        timeout=120_000,
    )
    scatter = page.locator(SCATTER)
    scatter.scroll_into_view_if_needed()
    assert scatter.evaluate(NON_BLANK) >= 10, "the map drew (almost) nothing"
    assert page.locator(".cnnviz-legend-item").count() == 10

    # the PNG button saves the map as shown: as large as the canvas, points in class colours
    with page.expect_download() as info:
        page.click(".cnnviz-embedding button.cnnviz-save")
    assert info.value.suggested_filename == "embedding-tsne-scatter.png"
    saved = np.asarray(Image.open(io.BytesIO(info.value.path().read_bytes())).convert("RGB"))
    size = scatter.evaluate("c => [c.height, c.width]")
    assert list(saved.shape[:2]) == size
    assert len(np.unique(saved.reshape(-1, 3), axis=0)) >= 10, "the PNG is (almost) blank"

    # the notebook set selected_index from Python: the map highlights that point
    out = rerun_cell(page, 3)
    out.filter(has_text="selected image").wait_for(timeout=30_000)
    chosen = int(re.search(r"selected image (\d+)", out.inner_text()).group(1))
    page.wait_for_function(
        f"i => document.querySelector('{SCATTER}').dataset.ringIndex === String(i)",
        arg=chosen,
        timeout=10_000,
    )  # its ring is drawn

    # hover a point: its thumbnail and label; click it: the kernel sees the selection
    root = page.locator(".cnnviz-embedding")
    target = next(i for i in (0, 1, 2, 3) if i != chosen)
    scatter.scroll_into_view_if_needed()
    where = root.evaluate(f"r => r.cnnvizPointToClient({target})")
    page.mouse.move(where["x"], where["y"])
    tip = root.locator(".cnnviz-tooltip")
    tip.filter(has_text=re.compile(r"#\d+ · label")).wait_for(timeout=10_000)
    hovered = int(re.search(r"#(\d+)", tip.inner_text()).group(1))
    page.mouse.click(where["x"], where["y"])
    page.wait_for_function(
        f"i => document.querySelector('{SCATTER}').dataset.selected === String(i)",
        arg=hovered,
        timeout=10_000,
    )
    out = rerun_cell(page, 3)
    out.filter(has_text=f"selected image {hovered}:").wait_for(timeout=30_000)
    # the neighbour strip shows what the kernel computed in feature space
    kernel = re.search(r"neighbours \[([\d, ]+)\]", out.inner_text()).group(1)
    strip = root.locator(".cnnviz-neighbour").evaluate_all(
        "els => els.map(e => Number(e.dataset.index))"
    )
    assert [i for i in strip if i != hovered] == [int(i) for i in kernel.split(",")]

    # colour by prediction: the legend marks every point as a prediction
    root.locator("select.cnnviz-color-by").select_option("prediction")
    legend = root.locator(".cnnviz-legend")
    page.wait_for_function("l => l.dataset.predicted === '1797'", arg=legend.element_handle())
    assert root.locator(".cnnviz-legend-predicted").count() == 10
    root.locator("select.cnnviz-color-by").select_option("auto")
    page.wait_for_function("l => l.dataset.predicted === '0'", arg=legend.element_handle())

    # the regions checkbox: the kernel finds them, their names appear over the map
    root.locator("input.cnnviz-regions-toggle").check()
    names = root.locator(".cnnviz-regions .cnnviz-region")
    names.first.wait_for(timeout=60_000)
    assert names.count() >= 8, names.all_inner_texts()  # about one region per digit
    assert re.fullmatch(r"\d \d+%.*", names.first.inner_text()), names.first.inner_text()
    # each name sits on its region's medoid point, and follows it when the map is zoomed
    medoid = int(names.first.get_attribute("data-medoid"))
    members = root.evaluate("r => r.cnnvizRegionMembers(0)")
    assert medoid in members
    at = [root.element_handle(), medoid]
    page.wait_for_function(NAME_ON_POINT, arg=[*at, None], timeout=10_000)
    before = root.evaluate(f"r => r.cnnvizPointToClient({medoid})")
    root.evaluate(f"r => r.cnnvizScatterplot.zoomToPoints({members})")
    page.wait_for_function(NAME_ON_POINT, arg=[*at, before], timeout=10_000)
    root.locator("button.cnnviz-reset-view").click()
    # a click on a name selects its points, in the browser and in Python
    assert len(members) == int(names.first.get_attribute("data-count")) > 0
    names.first.click()
    page.wait_for_function(
        f"n => document.querySelector('{SCATTER}').dataset.selectedCount === String(n)",
        arg=len(members),
        timeout=10_000,
    )
    out = rerun_cell(page, 4)
    out.filter(has_text="selection [").wait_for(timeout=30_000)
    held = re.search(r"selection \[([\d, ]*)\]", out.inner_text()).group(1)
    assert [int(i) for i in held.split(",")] == members
    assert page.console_errors == []
