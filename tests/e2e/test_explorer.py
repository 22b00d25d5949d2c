"""The linked CNNExplorer in JupyterLab: a click on a point updates every view for that image."""

from __future__ import annotations

import re
import time

import numpy as np
import pytest

from cnnviz_widgets import render
from cnnviz_widgets.demo import load_photos
from cnnviz_widgets.inspect import capture, class_probabilities, top_k

from ._lab import (
    NON_BLANK,
    SCATTER_DRAWN,
    open_and_run_all,
    quickstart_points,
    rerun_cell,
    tile_center,
    wait_all_run,
)
from .conftest import ARTIFACTS

pytestmark = pytest.mark.e2e
X = ".cnnviz-explorer"
SCATTER = f"{X} canvas.cnnviz-scatter"
MAPS = f"{X} .cnnviz-feature-maps canvas.cnnviz-tiles"
READOUT = 5  # the code cell that prints the explorer's traits
LAYER = "blocks.4.1.bn1"  # the quickstart explorer's default layer: Lite0 on load_photos()

SETTLED = """i => {
  const x = document.querySelector('.cnnviz-explorer');
  const occ = x && x.querySelector('.cnnviz-occlusion');
  const heat = occ && occ.querySelector('canvas.cnnviz-heatmap');
  if (!heat) return false;
  const done = s => x.querySelector(s).dataset.running === 'false';  // background work ended
  return (i < 0 || x.dataset.selectedIndex === String(i)) && done('.cnnviz-occlusion')
    && Number(heat.dataset.maps) >= 2 && done('.cnnviz-embedding') && done('.cnnviz-top-patches');
}"""


def expected_views(index: int, layer: str = LAYER, source=load_photos):
    """What the kernel should show for image `index`, recomputed here from the dataset."""
    model, dataset, classes = source()
    image = dataset[index][0]
    maps = capture(model, image, layer)[layer][0].numpy()
    tiles = render.feature_tiles(maps, normalize="layer", colormap="gray", scale="zero")
    probs = class_probabilities(model, image)
    bars = [f"{classes[i]}" for i, _ in top_k(probs, 5)]
    return tiles, bars


# Where point i is on screen, after scrolling every scrolled ancestor (JupyterLab may give a
# tall output its own scroll box) so that the point is in view; null if something covers it.
POINT_IN_VIEW = """i => {
  const root = document.querySelector('.cnnviz-explorer .cnnviz-embedding');
  const canvas = root.querySelector('canvas.cnnviz-scatter');
  canvas.scrollIntoView({ block: 'center' });
  let p = root.cnnvizPointToClient(i);
  for (let el = canvas.parentElement; el; el = el.parentElement) {
    const style = getComputedStyle(el).overflowY;
    if (el.scrollHeight > el.clientHeight + 1 && style !== 'visible' && style !== 'hidden') {
      const r = el.getBoundingClientRect();
      el.scrollTop += p.y - (r.top + r.height / 2);
      p = root.cnnvizPointToClient(i);
    }
  }
  const hit = document.elementFromPoint(p.x, p.y);
  return hit === canvas ? p : { covered: hit ? `${hit.tagName}.${hit.className}` : 'nothing' };
}"""


def click_point(page, index: int) -> None:
    """Click point `index` once it is in view and the page has stopped moving (JupyterLab
    lays the notebook out again after a resize or a scroll)."""
    page.mouse.move(0, 0)  # the last hover's tooltip must not cover the point
    where = None
    for _ in range(40):
        before = page.evaluate(POINT_IN_VIEW, index)
        page.wait_for_timeout(50)
        where = page.evaluate(POINT_IN_VIEW, index)
        if "covered" not in where and where == before:
            break
    assert "covered" not in where, f"point {index} of the scatter is under {where['covered']}"
    # hover first, a frame apart: the scatter pans by how far the mouse moved since its last
    # frame while the button is down, so a jump and a press in one frame can pan, not select
    page.mouse.move(where["x"], where["y"])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.mouse.click(where["x"], where["y"])


def shown_tile_values(page, n: int) -> list[int]:
    """The red channel at the centre of the first `n` feature-map tiles as drawn."""
    maps = page.locator(MAPS)
    centres = [tile_center(maps, p) for p in range(n)]
    return maps.evaluate(
        """(c, centres) => { const ctx = c.getContext('2d');
             return centres.map(([x, y]) => ctx.getImageData(Math.floor(x), Math.floor(y), 1, 1)
               .data[0]); }""",
        centres,
    )


def screenshot(page) -> None:
    """test-artifacts/explorer.png: the whole explorer, in a window tall enough to hold it."""
    size = page.viewport_size
    page.set_viewport_size({"width": 1400, "height": 2200})
    page.locator(X).scroll_into_view_if_needed()
    box = page.locator(X).bounding_box()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "explorer.png"), clip=box)
    page.set_viewport_size(size)
    page.wait_for_timeout(500)  # JupyterLab lays the notebook out again


def check_views(
    page, index: int, timeout: float = 15.0, layer: str = LAYER, source=load_photos
) -> None:
    """Bars and feature maps in the browser equal the views recomputed for `index` (the views
    decode their images asynchronously, so this waits up to `timeout` s for them to match)."""
    tiles, bars = expected_views(index, layer, source)
    h, w = tiles.shape[1:3]
    deadline = time.monotonic() + timeout
    while True:
        names = page.locator(f"{X} .cnnviz-x-bar-name").all_inner_texts()
        maps = page.locator(MAPS)
        n = maps.get_attribute("data-n-tiles")
        order = [int(c) for c in maps.get_attribute("data-order").split(",")]
        shown_n = min(8, len(tiles))
        want = [int(tiles[order[p]][h // 2, w // 2]) for p in range(shown_n)]
        shown = shown_tile_values(page, shown_n)
        if (names, n, shown) == (bars, str(len(tiles)), want) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    assert names == bars
    assert n == str(len(tiles))
    assert shown == want


def test_a_click_updates_every_view_and_a_tile_click_the_patches(lab, page):
    open_and_run_all(page, lab, "01_quickstart.ipynb")
    page.wait_for_function(SCATTER_DRAWN, arg=quickstart_points(), timeout=180_000)
    # the notebook's last cell selected image 0's nearest neighbour from Python (once the
    # explorer's work is done: the cell waits for it)
    wait_all_run(page)
    page.wait_for_function(SETTLED, arg=-1, timeout=60_000)
    check_views(page, int(page.locator(X).get_attribute("data-selected-index")))
    assert page.locator(SCATTER).evaluate(NON_BLANK) >= 10

    # a click on a point: image, bars, feature maps and heatmap follow, as the kernel computes
    chosen = 17
    click_point(page, chosen)
    page.wait_for_function(SETTLED, arg=chosen, timeout=60_000)
    page.wait_for_function(
        f"() => document.querySelector('{MAPS}').dataset.drawCount > 0", timeout=10_000
    )
    check_views(page, chosen)
    heat = page.locator(f"{X} canvas.cnnviz-heatmap")
    assert heat.evaluate(NON_BLANK) > 16
    assert page.locator(f"{X} canvas.cnnviz-x-image").evaluate(NON_BLANK) > 4
    out = rerun_cell(page, READOUT)
    out.filter(has_text=f"image {chosen} · layer {LAYER}").wait_for(timeout=30_000)

    # a click on a feature map: its top patches and its kernel
    maps = page.locator(MAPS)
    order = [int(c) for c in maps.get_attribute("data-order").split(",")]
    x, y = tile_center(maps, 13)
    maps.click(position={"x": x, "y": y})
    channel = order[13]
    page.wait_for_function(
        f"c => document.querySelector('{X} .cnnviz-top-patches').dataset.channels"
        ".split(',').includes(String(c))",
        arg=channel,
        timeout=30_000,
    )
    page.locator(f"{X} .cnnviz-x-kernel").filter(has_text=f"kernel of channel {channel}").wait_for(
        timeout=10_000
    )
    assert page.locator(f"{X} .cnnviz-x-kernel canvas").evaluate(NON_BLANK) > 2

    # arrow keys walk the neighbours of the selected image
    strip = page.locator(f"{X} .cnnviz-neighbour").evaluate_all(
        "els => els.map(e => Number(e.dataset.index))"
    )
    first = next(i for i in strip if i != chosen)
    page.locator(X).focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function(SETTLED, arg=first, timeout=60_000)
    check_views(page, first)

    # a click on a neighbour selects it in turn
    strip = page.locator(f"{X} .cnnviz-neighbour:not(.cnnviz-neighbour-self)")
    neighbour = int(strip.nth(1).get_attribute("data-index"))
    strip.nth(1).click()
    page.wait_for_function(SETTLED, arg=neighbour, timeout=60_000)
    check_views(page, neighbour)

    # and so does a click on a top patch: the best patch of the selected channel
    patches = page.locator(f"{X} .cnnviz-top-patches")
    canvas = patches.locator("canvas.cnnviz-tiles")
    row = patches.get_attribute("data-channels").split(",").index(str(channel))
    x, y = tile_center(canvas, row * int(canvas.get_attribute("data-cols")))
    canvas.hover(position={"x": x, "y": y})
    tip = patches.locator(".cnnviz-tooltip")
    tip.filter(has_text=f"channel {channel} · #0").wait_for(timeout=5_000)
    image = int(re.search(r"image (\d+)", tip.inner_text()).group(1))
    canvas.click(position={"x": x, "y": y})
    if image != neighbour:
        page.wait_for_function(SETTLED, arg=image, timeout=60_000)
    check_views(page, image)
    screenshot(page)  # last: it resizes the window, and JupyterLab lays the notebook out again
    assert page.console_errors == []


def test_fast_clicks_end_on_the_last_point(lab, page):
    open_and_run_all(page, lab, "01_quickstart.ipynb")
    wait_all_run(page)  # the last cell selects from Python once the explorer's work is done
    page.wait_for_function(SETTLED, arg=-1, timeout=180_000)
    heap = page.evaluate("() => performance.memory.usedJSHeapSize")
    points = list(np.random.default_rng(1).choice(quickstart_points(), 20, replace=False))
    for i in points:
        click_point(page, int(i))
    last = int(points[-1])
    page.wait_for_function(SETTLED, arg=last, timeout=60_000)
    check_views(page, last)
    out = rerun_cell(page, READOUT)
    out.filter(has_text=f"image {last} · layer {LAYER}").wait_for(timeout=30_000)
    grown = page.evaluate("() => performance.memory.usedJSHeapSize") - heap
    assert grown < 64e6, f"the page's JS heap grew by {grown / 1e6:.0f} MB over 20 selections"
    assert page.console_errors == []


MANY = 5_000
MANY_NOTEBOOK = {
    "cells": [
        {
            "cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": f"""import time

import torch

from cnnviz_widgets import CNNExplorer
from cnnviz_widgets.demo import load_demo

model, digits, classes = load_demo(split="all")


class Many(torch.utils.data.Dataset):  # {MANY:,} images, each read taking 4 ms
    def __len__(self):
        return {MANY}

    def __getitem__(self, i):
        time.sleep(0.004)
        return digits[i % len(digits)]


explorer = CNNExplorer(model, Many(), classes=classes, method="pca", layer="relu2")
explorer""",
        },
        {
            "cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": "e = explorer\nprint(f'selected {e.selected_index} · "
            "running {e.embedding.running}')",
        },
    ],
    "metadata": {
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
    },
    "nbformat": 4, "nbformat_minor": 5,
}  # fmt: skip


def test_a_point_clicked_during_the_pass_over_5000_images_shows_its_views(lab, page):
    # the explorer returns at once; during its 20 s pass the map shows the images read so far,
    # a click on one of them shows its views, and a cell run meanwhile returns (kernel free)
    import json

    from cnnviz_widgets.demo import load_demo

    (lab["dir"] / "many.ipynb").write_text(json.dumps(MANY_NOTEBOOK))
    open_and_run_all(page, lab, "many.ipynb")
    emb = f"{X} .cnnviz-embedding"
    page.wait_for_function(
        f"""() => {{ const e = document.querySelector('{emb}');
          const n = Number(e?.querySelector('canvas.cnnviz-scatter').dataset.points);
          return e?.dataset.running === "true" && n > 100 && n < {MANY}; }}""",
        timeout=120_000,
    )
    chosen = 42  # a point of the partial map (the images are read in order)
    click_point(page, chosen)
    page.wait_for_function(
        f"i => document.querySelector('{X}').dataset.selectedIndex === String(i)", arg=chosen
    )
    check_views(page, chosen, layer="relu2", source=lambda: load_demo(split="all"))
    assert page.locator(emb).get_attribute("data-running") == "true", "the pass had ended"
    out = rerun_cell(page, 1)  # the kernel is free during the pass
    out.filter(has_text=f"selected {chosen} · running True").wait_for(timeout=30_000)
    # the pass ends: every point, the same selection
    page.wait_for_function(SETTLED, arg=chosen, timeout=180_000)
    points = page.locator(SCATTER).get_attribute("data-points")
    assert points == str(MANY)
    check_views(page, chosen, layer="relu2", source=lambda: load_demo(split="all"))
    assert page.console_errors == []
