"""The quickstart notebook in JupyterLab, in a real browser: views render, clicks reach Python."""

from __future__ import annotations

import pytest

from ._lab import NON_BLANK, open_and_run_all, rerun_cell, tile_center, wait_all_run

pytestmark = pytest.mark.e2e


def test_quickstart_renders_and_clicks_reach_the_kernel(lab, page):
    open_and_run_all(page, lab, "01_quickstart.ipynb")
    # the first two views; the explorer at the end of the notebook has its own (test_explorer)
    filters = page.locator(".cnnviz-filter-grid canvas.cnnviz-tiles").first
    maps = page.locator(".cnnviz-feature-maps canvas.cnnviz-tiles").first
    filters.wait_for(timeout=60_000)
    maps.wait_for(timeout=60_000)
    page.wait_for_function(
        "() => [...document.querySelectorAll('canvas.cnnviz-tiles')]"
        ".every(c => Number(c.dataset.drawCount) > 0)",
        timeout=30_000,
    )
    # conv1 of the demo: 16 single-channel 3x3 filters; the default layer relu3: 64 maps of 8x8
    assert filters.get_attribute("data-n-tiles") == "16"
    assert maps.get_attribute("data-n-tiles") == "64"
    assert filters.evaluate(NON_BLANK) > 8, "the filter grid drew (almost) nothing"
    assert maps.evaluate(NON_BLANK) > 8, "the feature maps drew (almost) nothing"

    # click the tile at display position 5; the kernel must see that channel selected (once the
    # photo explorer's cells have run: a cell run again waits behind them)
    wait_all_run(page)
    order = [int(c) for c in maps.get_attribute("data-order").split(",")]
    x, y = tile_center(maps, 5)
    maps.click(position={"x": x, "y": y})
    out = rerun_cell(page, 3)
    out.filter(has_text=f"selected channel: {order[5]} of layer relu3").wait_for(timeout=20_000)

    # hover shows the channel's label
    x, y = tile_center(maps, 2)
    maps.hover(position={"x": x, "y": y})
    tip = page.locator(".cnnviz-feature-maps .cnnviz-tooltip").first
    tip.filter(has_text=f"channel {order[2]}").wait_for(timeout=5_000)

    # the layer dropdown drives the widget: conv2 has 32 channels of 16x16
    drawn = int(maps.get_attribute("data-draw-count"))
    page.locator(".widget-dropdown select").first.select_option("conv2")
    page.wait_for_function(
        "n => { const c = document.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles');"
        " return c.dataset.nTiles === '32' && Number(c.dataset.drawCount) > n; }",
        arg=drawn,
        timeout=20_000,
    )
    assert maps.evaluate(NON_BLANK) > 8

    # sorting by max activation reorders the tiles in the browser
    page.locator(".cnnviz-feature-maps select.cnnviz-sort").first.select_option("max")
    page.wait_for_function(
        "() => document.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles')"
        ".dataset.order.split(',').some((c, i) => Number(c) !== i)",  # not the index order
        timeout=10_000,
    )
    assert page.console_errors == []
