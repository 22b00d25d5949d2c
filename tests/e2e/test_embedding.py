"""The representation-space notebook in JupyterLab: the WebGL map renders and links to Python."""

from __future__ import annotations

import io
import re

import numpy as np
import pytest
from PIL import Image

from ._lab import NON_BLANK, open_and_run_all, rerun_cell

pytestmark = pytest.mark.e2e
SCATTER = ".cnnviz-embedding canvas.cnnviz-scatter"


def test_map_renders_hovers_clicks_and_follows_python(lab, page):
    open_and_run_all(page, lab, "02_representation_space.ipynb")
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
    assert page.console_errors == []
