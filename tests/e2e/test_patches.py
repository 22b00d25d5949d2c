"""The top-patches notebook in JupyterLab: a clicked feature map shows its channel's patches."""

from __future__ import annotations

import re

import pytest

from ._lab import NON_BLANK, open_and_run_all, rerun_cell, tile_center

pytestmark = pytest.mark.e2e


def test_feature_map_click_turns_the_linked_patches_to_that_channel(lab, page):
    open_and_run_all(page, lab, "03_what_neurons_see.ipynb")
    # each view opens at once and fills in when its ranking (in the background) is done
    page.wait_for_function(
        "() => document.querySelectorAll('.cnnviz-top-patches canvas.cnnviz-tiles').length === 3"
        " && [...document.querySelectorAll('.cnnviz-top-patches')]"
        ".every(v => v.dataset.running === 'false'"
        " && Number(v.querySelector('canvas.cnnviz-tiles').dataset.nTiles) > 0)"
        " && [...document.querySelectorAll('canvas.cnnviz-tiles')]"
        ".every(c => Number(c.dataset.drawCount) > 0)",
        timeout=120_000,
    )
    grids = page.locator(".cnnviz-top-patches canvas.cnnviz-tiles")
    for i in range(3):
        assert grids.nth(i).evaluate(NON_BLANK) > 8
    linked = page.locator(".cnnviz-top-patches").nth(2)
    assert linked.get_attribute("data-channels") == "0,1,2,3"

    maps = page.locator(".cnnviz-feature-maps canvas.cnnviz-tiles")
    maps.scroll_into_view_if_needed()
    order = [int(c) for c in maps.get_attribute("data-order").split(",")]
    channel = order[41]  # on the linked view's page 11, not the first
    x, y = tile_center(maps, 41)
    maps.click(position={"x": x, "y": y})
    page.wait_for_function(
        "c => document.querySelectorAll('.cnnviz-top-patches')[2].dataset.channels"
        ".split(',').includes(String(c))",
        arg=channel,
        timeout=20_000,
    )
    header = linked.locator(f'.cnnviz-channel[data-channel="{channel}"]')
    assert "cnnviz-selected" in header.get_attribute("class")

    # click that channel's best patch: its image is selected in the kernel
    canvas = linked.locator("canvas.cnnviz-tiles")
    row = linked.get_attribute("data-channels").split(",").index(str(channel))
    k = int(canvas.get_attribute("data-cols"))
    x, y = tile_center(canvas, row * k)
    canvas.hover(position={"x": x, "y": y})
    tip = linked.locator(".cnnviz-tooltip")
    tip.filter(has_text=f"channel {channel} · #0").wait_for(timeout=5_000)
    image = int(re.search(r"image (\d+)", tip.inner_text()).group(1))
    canvas.click(position={"x": x, "y": y})
    out = rerun_cell(page, 4)
    out.filter(has_text=f"channel {channel} on page 11; image {image}").wait_for(timeout=20_000)
    assert page.console_errors == []
