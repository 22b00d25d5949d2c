"""The lecture notebook in JupyterLab, in a real browser: every figure renders from the trained
networks, and each widget's screenshot lands in test-artifacts/ (docs/ holds a copy)."""

from __future__ import annotations

import pytest

from cnnviz_widgets.demo import load_gabor_cnn, load_photos
from cnnviz_widgets.inspect.layers import default_layer
from cnnviz_widgets.widgets._layers import layer_choices

from ._lab import NON_BLANK, open_and_run_all
from .conftest import ARTIFACTS

pytestmark = pytest.mark.e2e

# Share of the canvas's pixels that are coloured (R, G and B not all equal): gray tiles score 0.
COLOURED = """canvas => {
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let coloured = 0;
  for (let i = 0; i < data.length; i += 4) {
    const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
    if (Math.max(r, g, b) - Math.min(r, g, b) > 24) coloured += 1;
  }
  return coloured / (data.length / 4);
}"""

# Share of the canvas's pixels that are black (silent units of a post-activation map).
BLACK = """canvas => {
  const {data} = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let black = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (Math.max(data[i], data[i + 1], data[i + 2]) < 8) black += 1;
  }
  return black / (data.length / 4);
}"""

# The whole notebook has run: the explorer at its end has finished its occlusion map.
FINISHED = """() => {
  const x = document.querySelector('.cnnviz-explorer');
  const heat = x && x.querySelector('.cnnviz-occlusion canvas.cnnviz-heatmap');
  const busy = [...document.querySelectorAll('.cnnviz-embedding, .cnnviz-top-patches')]
    .some(e => e.dataset.running !== 'false');  // a dataset pass or a t-SNE still running
  return Boolean(heat) && x.querySelector('.cnnviz-occlusion').dataset.running === 'false'
    && Number(heat.dataset.maps) >= 2 && !busy;
}"""

# Every canvas of ours has been drawn at least once.
ALL_DRAWN = """() => [...document.querySelectorAll(
    'canvas.cnnviz-tiles, canvas.cnnviz-scatter, canvas.cnnviz-heatmap')]
  .filter(c => c.offsetParent !== null)
  .every(c => Number(c.dataset.drawCount) > 0)"""


def shoot(locator, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(ARTIFACTS / f"lecture-{name}.png"))


def test_every_lecture_figure_renders_from_the_trained_networks(lab, page):
    open_and_run_all(page, lab, "05_lecture.ipynb")
    page.wait_for_function(FINISHED, timeout=540_000)
    page.wait_for_function(ALL_DRAWN, timeout=60_000)
    cell_errors = page.locator(
        ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    tracebacks = [t for t in cell_errors.all_inner_texts() if "Traceback" in t]
    assert tracebacks == []

    # 1. first-layer filters: the Gabor CNN (32 colour 7x7), Lite0's stem (32 3x3), AlexNet, ResNet
    gabor, _, _ = load_gabor_cnn()
    lite0, photos, _ = load_photos()
    # (the explorer at the end has a filter grid of its own, in its Filters tab)
    grids = page.locator(".cnnviz-filter-grid:not(.cnnviz-explorer .cnnviz-filter-grid)")
    assert grids.count() == 4
    tiles = [grids.nth(i).locator("canvas.cnnviz-tiles") for i in range(4)]
    assert [t.get_attribute("data-n-tiles") for t in tiles] == [
        str(gabor.conv1.out_channels),
        str(lite0.conv_stem.out_channels),
        "64",
        "64",
    ]
    # the trained 7x7 filters are drawn in colour (colour-opponent), not as gray noise
    assert tiles[0].evaluate(COLOURED) > 0.2
    for t in tiles:
        assert t.evaluate(NON_BLANK) > 16
    shoot(grids.nth(0), "gabor-filters")
    shoot(grids.nth(1), "lite0-filters")

    # 2. the t-SNE map of the photos, with thumbnails
    space = page.locator(".cnnviz-embedding").first
    scatter = space.locator("canvas.cnnviz-scatter")
    assert scatter.get_attribute("data-points") == str(len(photos))
    # thumbnails of the colour photos on the overlay, not only dots
    page.wait_for_function(
        "c => Number(c.dataset.thumbs) > 0", arg=scatter.element_handle(), timeout=60_000
    )
    assert int(scatter.get_attribute("data-thumbs")) > len(photos) // 2
    # every point is coloured: labelled photos by their label, the rest by prediction (the
    # legend counts them); the map's regions are named on it
    legend = space.locator(".cnnviz-legend")
    page.wait_for_function(
        "l => Number(l.dataset.predicted) > 0", arg=legend.element_handle(), timeout=60_000
    )
    labelled = int((photos.targets >= 0).sum())
    assert int(legend.get_attribute("data-predicted")) == len(photos) - labelled
    regions = space.locator(".cnnviz-regions .cnnviz-region")
    page.wait_for_function(
        "e => e.querySelectorAll('.cnnviz-regions .cnnviz-region').length > 0",
        arg=space.element_handle(),
        timeout=60_000,
    )
    assert regions.count() >= 2 and all(t.strip() for t in regions.all_inner_texts())
    overlay = space.locator("canvas.cnnviz-scatter-overlay")
    assert overlay.evaluate(COLOURED) > 0.01  # the dots alone: about 0.002
    shoot(space, "tsne")

    # 3. conv5-like activations: Lite0's default post-activation layer, black where silent;
    # beside it the linear bottleneck blocks.4, drawn centred at zero in colour
    choices = layer_choices(lite0, photos[0][0])
    default = next(c for c in choices if c["name"] == default_layer(lite0, choices))
    channels = default["label"].split(" · ")[1].split("×")[0]
    grids = page.locator(".cnnviz-feature-maps:not(.cnnviz-explorer .cnnviz-feature-maps)")
    maps, linear = (grids.nth(i).locator("canvas.cnnviz-tiles") for i in range(2))
    assert maps.get_attribute("data-n-tiles") == channels
    assert maps.evaluate(NON_BLANK) > 16
    silent = maps.evaluate(BLACK)
    assert silent > 0.4  # most units are silent
    assert linear.get_attribute("data-n-tiles") == "112"
    # the linear grid: coloured, and black only in its empty cells and gaps
    assert linear.evaluate(COLOURED) > 0.3 and linear.evaluate(BLACK) < silent - 0.25
    shoot(grids.nth(0), "activations")
    shoot(grids.nth(1), "activations-linear")

    # 4. top patches of that layer's channels
    patches = page.locator(".cnnviz-top-patches").first
    assert patches.locator("canvas.cnnviz-tiles").evaluate(COLOURED) > 0.05
    shoot(patches, "top-patches")

    # 5. the occlusion map of the bull mastiff
    occlusion = page.locator(".cnnviz-occlusion").first
    heat = occlusion.locator("canvas.cnnviz-heatmap")
    page.wait_for_function(
        "h => h.closest('.cnnviz-occlusion').dataset.running === 'false'",
        arg=heat.element_handle(),
        timeout=120_000,
    )
    assert heat.evaluate(NON_BLANK) > 16
    shoot(occlusion, "occlusion")

    # 6. the summary: the explorer on the same photo (a window it fits in: a screenshot of an
    # element taller than the window comes out with JupyterLab's chrome across it)
    explorer = page.locator(".cnnviz-explorer")
    box = explorer.bounding_box()
    page.set_viewport_size({"width": 1400, "height": int(box["height"]) + 400})
    shoot(explorer, "explorer")
    assert page.console_errors == []
