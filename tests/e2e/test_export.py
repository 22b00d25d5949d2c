"""Exported pages (to_html) opened from file:// in headless Chromium with the network off."""

from __future__ import annotations

import base64
import os
import pathlib
import re

import numpy as np
import pytest

from cnnviz_widgets import (
    CNNExplorer,
    EmbeddingExplorer,
    FeatureMaps,
    FilterGrid,
    OcclusionMap,
    TopPatches,
    export,
    render,
)

from .conftest import ARTIFACTS, CHROMIUM_FLAGS, chromium_path

pytestmark = pytest.mark.e2e

HOSTILE = "</script><img src=x onerror=alert(1)>"
LOCAL = ("file:", "blob:", "data:")


@pytest.fixture
def browser(tmp_path, request):
    """A Chromium context that is offline and refuses every request that is not file:, blob: or
    data:. Yields `open(path)` -> (page, log); the test fails on console errors, page errors,
    dialogs and requests that would have left the machine."""
    from playwright.sync_api import sync_playwright

    log = {"errors": [], "dialogs": [], "requests": [], "blocked": []}
    pages = []

    def route(r):
        url = r.request.url
        if url.startswith(LOCAL):
            r.continue_()
        else:
            log["blocked"].append(url)
            r.abort()

    def on_dialog(d):
        log["dialogs"].append(d.message)
        d.dismiss()

    def open_page(path):
        page = ctx.new_page()
        pages.append(page)
        page.on("console", lambda m: m.type == "error" and log["errors"].append(m.text))
        page.on("pageerror", lambda e: log["errors"].append(f"pageerror: {e}"))
        page.on("dialog", on_dialog)
        page.on("request", lambda q: log["requests"].append(q.url))
        page.goto(path.as_uri())
        page.wait_for_function("document.documentElement.dataset.cnnvizReady", timeout=30_000)
        assert page.evaluate("document.documentElement.dataset.cnnvizReady") == "true", (
            page.locator(".cnnviz-export-error").all_inner_texts()
        )
        return page, log

    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
            accept_downloads=True,
        )
        ctx.set_offline(True)
        ctx.route("**/*", route)
        try:
            yield open_page
            for page in pages:
                page.wait_for_timeout(200)  # late errors
            assert not log["errors"], log["errors"]
            assert not log["dialogs"], log["dialogs"]
            assert not log["blocked"], log["blocked"]
            assert all(u.startswith(LOCAL) for u in log["requests"]), log["requests"]
        finally:
            failed = getattr(request.node, "rep_call", None)
            if pages and (os.environ.get("CNNVIZ_SCREENSHOTS") or (failed and failed.failed)):
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / f"{request.node.name}.png"
                pages[-1].screenshot(path=str(shot), full_page=True)
                print(f"\nscreenshot: {shot}")
            ctx.close()


def canvas_pixels(page, selector: str) -> np.ndarray:
    """The canvas's pixels (RGBA) as the page holds them."""
    url = page.eval_on_selector(selector, "c => c.toDataURL('image/png')")
    return render.decode_png(base64.b64decode(url.split(",", 1)[1]))


def tile_at(pixels: np.ndarray, attrs: dict, position: int, like=None) -> np.ndarray:
    """The tile drawn at display `position`, sampled back to atlas resolution: RGB when the
    tile it is compared with (`like`) is RGB (a linear layer in coolwarm), else channel 0."""
    s, gap, cols = int(attrs["scale"]), int(attrs["gap"]), int(attrs["cols"])
    h, w = int(attrs["tileH"]), int(attrs["tileW"])
    y = gap + (position // cols) * (h * s + gap)
    x = gap + (position % cols) * (w * s + gap)
    tile = pixels[y + s // 2 : y + h * s : s, x + s // 2 : x + w * s : s]
    return tile[..., :3] if like is not None and np.ndim(like) == 3 else tile[..., 0]


def test_feature_maps_page(browser, demo, tmp_path):
    model, dataset, _ = demo
    fm = FeatureMaps(model, dataset[0][0], "conv2")
    path = tmp_path / "feature_maps.html"
    fm.to_html(path)
    page, _ = browser(path)
    assert page.evaluate("window.cnnvizExport.loadedFrom") in ("blob", "data")
    grid = ".cnnviz-feature-maps canvas.cnnviz-tiles"
    page.wait_for_function(f"document.querySelector('{grid}')?.dataset.drawCount >= 1")
    attrs = page.eval_on_selector(grid, "c => ({...c.dataset})")
    assert int(attrs["nTiles"]) == fm.n_tiles == 32
    pixels = canvas_pixels(page, grid)
    for t in range(fm.n_tiles):
        np.testing.assert_array_equal(
            tile_at(pixels, attrs, t, fm.tile(t)), fm.tile(t), err_msg=f"tile {t}"
        )
    assert page.locator(".cnnviz-feature-maps .cnnviz-caption").inner_text() == fm.caption

    # interaction stays in the page: a click selects, the sort control reorders
    s, gap = int(attrs["scale"]), int(attrs["gap"])
    box = page.locator(grid).bounding_box()
    cols = int(attrs["cols"])
    cell = 16 * s + gap
    page.mouse.click(
        box["x"] + gap + (5 % cols) * cell + 8, box["y"] + gap + (5 // cols) * cell + 8
    )
    page.wait_for_function(f"document.querySelector('{grid}').dataset.selected === '5'")
    assert page.evaluate("window.cnnvizExport.model.get('selected_channel')") == 5
    page.select_option(".cnnviz-feature-maps select.cnnviz-sort", "mean")
    means = fm.activations.mean(axis=(1, 2))
    order = sorted(range(len(means)), key=lambda c: (-float(means[c]), c))
    page.wait_for_function(
        f"document.querySelector('{grid}').dataset.order.startsWith('{order[0]},')"
    )
    assert page.eval_on_selector(grid, "c => c.dataset.order") == ",".join(map(str, order))

    # the PNG button downloads the tiles as shown
    with page.expect_download() as info:
        page.click(".cnnviz-feature-maps button.cnnviz-save")
    download = info.value
    assert download.suggested_filename == "feature-maps-conv2.png"
    saved = render.decode_png(download.path().read_bytes())
    attrs = page.eval_on_selector(grid, "c => ({...c.dataset})")
    for p, t in enumerate(order):
        np.testing.assert_array_equal(tile_at(saved, attrs, p, fm.tile(t)), fm.tile(t))


def test_occlusion_page_shows_what_save_png_writes(browser, demo, tmp_path):
    model, dataset, classes = demo
    index = next(i for i in range(len(dataset)) if dataset[i][1] == 0)
    om = OcclusionMap(model, dataset[index][0], classes=[HOSTILE, *classes[1:]])
    om.wait()
    assert om.target == 0  # the hostile name is the target class
    path = tmp_path / "occlusion.html"
    om.to_html(path, title=HOSTILE)
    page, log = browser(path)
    heatmap = ".cnnviz-occlusion canvas.cnnviz-heatmap"
    page.wait_for_function(f"document.querySelector('{heatmap}')?.dataset.cells !== '0,0'")
    shown = canvas_pixels(page, heatmap)[..., :3].astype(int)
    expected = export.occlusion_image(om).astype(int)
    assert shown.shape == expected.shape == (256, 256, 3)
    assert np.abs(shown - expected).max() <= 2  # canvas blending rounds its own way
    assert shown.std() > 10  # not blank
    # the hostile class name is text: in the title, the caption and the class picker
    assert page.title() == HOSTILE
    assert HOSTILE in page.locator(".cnnviz-occlusion .cnnviz-caption").inner_text()
    assert HOSTILE in page.locator(".cnnviz-occlusion select.cnnviz-target").inner_text()
    assert page.locator("img").count() == 0
    with page.expect_download() as info:
        page.click(".cnnviz-occlusion button.cnnviz-save")
    name = info.value.suggested_filename
    assert re.fullmatch(r"occlusion-[\w.-]+\.png", name), name
    assert not log["dialogs"]


def test_embedding_page(browser, demo, tmp_path):
    model, dataset, classes = demo
    ee = EmbeddingExplorer(model, dataset, [HOSTILE, *classes[1:]], method="pca", progress=False)
    ee.wait()  # the map is computed in the background
    ee.selected_index = 3
    path = tmp_path / "embedding.html"
    ee.to_html(path)
    page, _ = browser(path)
    scatter = ".cnnviz-embedding canvas.cnnviz-scatter"
    page.wait_for_function(f"Number(document.querySelector('{scatter}')?.dataset.drawCount) > 0")
    page.wait_for_function(
        "document.querySelector('.cnnviz-neighbours')?.dataset.complete === 'true'"
    )
    pixels = canvas_pixels(page, scatter)[..., :3].astype(int)
    colours = np.array([render.hex_rgb(c) for c in ee.class_colors])
    near = np.abs(pixels[:, :, None, :] - colours[None, None]).max(axis=-1) <= 8
    per_class = near.sum(axis=(0, 1))
    assert (per_class > 20).sum() >= 9, per_class  # points of (nearly) every class are drawn
    # the neighbour strip: the selected image and its neighbours, thumbnails from the sprites
    strip = page.eval_on_selector_all(
        ".cnnviz-neighbours .cnnviz-neighbour", "els => els.map(e => Number(e.dataset.index))"
    )
    assert strip == [3, *ee.neighbour_indices.tolist()]
    thumb = ".cnnviz-neighbour-self canvas"
    s = int(float(page.eval_on_selector(thumb, "c => c.dataset.scale")))
    drawn = canvas_pixels(page, thumb)[s // 2 :: s, s // 2 :: s, 0]
    sprite = render.decode_png(ee.thumb_pages[0])
    want = render.unpack_tile(sprite, 3, tuple(ee.thumb_shape), ee.thumb_cols)
    np.testing.assert_array_equal(drawn, want)
    # the hostile class name is shown as text and nothing runs
    # (the legend lists the most frequent classes first, so class 0 is found by its index)
    item = page.locator('.cnnviz-embedding .cnnviz-legend-item[data-class="0"]')
    assert HOSTILE in item.inner_text()
    assert page.locator("img").count() == 0
    # a legend click hides the class in the page's model
    item.click()
    page.wait_for_function("window.cnnvizExport.model.get('hidden_classes').includes(0)")


@pytest.mark.parametrize("kind", ["filters", "top-patches"])
def test_png_button_downloads_the_tiles(browser, demo, tmp_path, kind):
    model, dataset, _ = demo
    if kind == "filters":
        widget, root, name = FilterGrid(model), ".cnnviz-filter-grid", "filters-conv1.png"
    else:
        widget = TopPatches(model, dataset, "conv2", k=3, channels_per_page=4, progress=False)
        widget.wait()  # ranked in the background
        root, name = ".cnnviz-top-patches", "top-patches-conv2-page1.png"
    path = tmp_path / f"{kind}.html"
    widget.to_html(path)
    page, _ = browser(path)
    grid = f"{root} canvas.cnnviz-tiles"
    page.wait_for_function(f"document.querySelector('{grid}')?.dataset.drawCount >= 1")
    with page.expect_download() as info:
        page.click(f"{root} button.cnnviz-save")
    assert info.value.suggested_filename == name
    saved = render.decode_png(info.value.path().read_bytes())
    np.testing.assert_array_equal(saved, canvas_pixels(page, grid))
    attrs = page.eval_on_selector(grid, "c => ({...c.dataset})")
    for t in range(widget.n_tiles):
        want = widget.tile(t)
        np.testing.assert_array_equal(
            tile_at(saved, attrs, t), want.reshape(*want.shape[:2], -1)[..., 0]
        )


def test_explorer_page_renders_every_panel_offline(browser, demo, tmp_path):
    model, dataset, _ = demo
    hostile = [f"{HOSTILE}{i}" for i in range(10)]
    x = CNNExplorer(model, dataset, hostile, selected_index=5, progress=False)
    x.wait()
    x.selected_channel = 3
    path = tmp_path / "explorer.html"
    x.to_html(path)
    page, _ = browser(path)
    page.set_viewport_size({"width": 1280, "height": 1900})
    root = ".cnnviz-explorer"
    scatter = f"{root} canvas.cnnviz-scatter"
    page.wait_for_function(
        f"document.querySelector('{scatter}')?.dataset.points === '{len(dataset)}'"
        f" && document.querySelector('{scatter}').dataset.drawCount >= 1"
    )
    grid = f"{root} .cnnviz-feature-maps canvas.cnnviz-tiles"
    page.wait_for_function(f"document.querySelector('{grid}')?.dataset.drawCount >= 1")
    # the selected image's views, as the kernel computed them
    assert page.get_attribute(root, "data-selected-index") == "5"
    attrs = page.eval_on_selector(grid, "c => ({...c.dataset})")
    pixels = canvas_pixels(page, grid)
    for t in range(int(attrs["nTiles"])):
        np.testing.assert_array_equal(
            tile_at(pixels, attrs, t, x.feature_maps.tile(t)), x.feature_maps.tile(t)
        )
    bars = page.locator(f"{root} .cnnviz-x-bar-name").all_inner_texts()
    assert bars == [t["name"] for t in x.occlusion.top_classes]  # the hostile names, as text
    assert page.locator(f"{root} img").count() == 0
    heat = f"{root} canvas.cnnviz-heatmap"
    assert int(page.get_attribute(heat, "data-maps")) == len(x.occlusion.results)
    assert page.locator(f"{root} .cnnviz-x-kernel").inner_text().startswith("kernel of channel 3")
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator(root).screenshot(path=str(ARTIFACTS / "explorer_export.png"))


# --- notebooks exported by nbconvert (--to cnnviz-html) ----------------------------------------

NOTEBOOK_CELLS = [
    "from cnnviz_widgets import FeatureMaps, OcclusionMap\n"
    "from cnnviz_widgets.demo import load_demo\n"
    "import ipywidgets\n"
    "model, dataset, classes = load_demo('test')",
    "fm = FeatureMaps(model, dataset[0][0], 'conv2')\nfm",
    "fm1 = FeatureMaps(model, dataset[1][0], 'conv1')\nfm1",
    "fm.sort_by = 'mean'  # a change after the view was shown: the saved state has it",
    "index = next(i for i in range(len(dataset)) if dataset[i][1] == 0)\n"
    f"om = OcclusionMap(model, dataset[index][0], classes=[{HOSTILE!r}, *classes[1:]])\n"
    "om.wait()\nom",
    "ipywidgets.IntSlider(value=7, description='k')",
]


@pytest.fixture(scope="module")
def executed_notebook(tmp_path_factory):
    """A small notebook run by nbclient with its widget state saved, as `jupyter nbconvert
    --execute` or a notebook saved from JupyterLab would hold it."""
    import nbformat
    from nbclient import NotebookClient

    folder = tmp_path_factory.mktemp("nb")
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_markdown_cell("# Widgets offline")]
        + [nbformat.v4.new_code_cell(src) for src in NOTEBOOK_CELLS]
    )
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=True,
        resources={"metadata": {"path": str(folder)}},
    ).execute()
    path = folder / "widgets.ipynb"
    nbformat.write(nb, path)
    return path


def check_notebook_page(page, demo):
    """Every widget of NOTEBOOK_CELLS shows its saved values; the slider is a short text."""
    model, dataset, classes = demo
    exported = page.evaluate(
        "window.cnnvizExport.widgets.map(w => [w.name, w.root.dataset.cnnvizReady])"
    )
    assert exported == [[n, "true"] for n in ("FeatureMaps", "FeatureMaps", "OcclusionMap")]
    assert page.evaluate("window.cnnvizExport.imports") == 2  # one per distinct bundle
    assert page.locator("script[src]").count() == 0  # no require.js, widget manager, MathJax
    assert page.locator("img").count() == 0  # the hostile class name stays text

    # FeatureMaps conv2, sorted by mean in a later cell: the tiles as computed here
    fm = FeatureMaps(model, dataset[0][0], "conv2")
    means = fm.activations.mean(axis=(1, 2))
    order = sorted(range(len(means)), key=lambda c: (-float(means[c]), c))
    grids = page.locator(".cnnviz-feature-maps canvas.cnnviz-tiles")
    assert grids.count() == 2
    for k, (f, want_order) in enumerate(
        [(fm, order), (FeatureMaps(model, dataset[1][0], "conv1"), None)]
    ):
        grid = f"(document.querySelectorAll('.cnnviz-feature-maps canvas.cnnviz-tiles')[{k}])"
        page.wait_for_function(f"{grid}.dataset.drawCount >= 1")
        attrs = page.evaluate(f"({{...{grid}.dataset}})")
        assert int(attrs["nTiles"]) == f.n_tiles
        pixels = render.decode_png(
            base64.b64decode(page.evaluate(f"{grid}.toDataURL('image/png')").split(",", 1)[1])
        )
        shown = want_order or range(f.n_tiles)
        assert attrs["order"] == ",".join(map(str, shown))
        for p, t in enumerate(shown):
            np.testing.assert_array_equal(
                tile_at(pixels, attrs, p, f.tile(t)), f.tile(t), err_msg=f"{k} {t}"
            )
    captions = page.locator(".cnnviz-feature-maps .cnnviz-caption").all_inner_texts()
    assert captions[0] == fm.caption

    # OcclusionMap: the heatmap as save_png draws it here, the hostile class name as text
    index = next(i for i in range(len(dataset)) if dataset[i][1] == 0)
    om = OcclusionMap(model, dataset[index][0], classes=[HOSTILE, *classes[1:]])
    om.wait()
    heatmap = ".cnnviz-occlusion canvas.cnnviz-heatmap"
    page.wait_for_function(f"document.querySelector('{heatmap}')?.dataset.cells !== '0,0'")
    shown = canvas_pixels(page, heatmap)[..., :3].astype(int)
    expected = export.occlusion_image(om).astype(int)
    assert shown.shape == expected.shape
    assert np.abs(shown - expected).max() <= 2
    assert shown.std() > 10  # not blank
    assert HOSTILE in page.locator(".cnnviz-occlusion .cnnviz-caption").inner_text()

    # the slider cannot render without ipywidgets' JavaScript: a short text says so
    placeholders = page.locator(".cnnviz-export-placeholder").all_inner_texts()
    assert len(placeholders) == 1 and "IntSlider" in placeholders[0], placeholders

    # interaction stays in the page
    page.select_option(".cnnviz-feature-maps select.cnnviz-sort >> nth=0", "index")
    page.wait_for_function("window.cnnvizExport.widgets[0].model.get('sort_by') === 'index'")


def test_nbconvert_notebook_renders_offline(browser, demo, executed_notebook, tmp_path):
    """`notebook_to_html` (nbconvert's API) and `jupyter nbconvert --to cnnviz-html` (the entry
    point) write pages whose anywidgets render from the saved state, offline."""
    import subprocess
    import sys

    api = tmp_path / "api.html"
    export.notebook_to_html(executed_notebook, api)
    page, _ = browser(api)
    check_notebook_page(page, demo)
    assert page.title() == "widgets"

    cli = tmp_path / "cli"
    jupyter = pathlib.Path(sys.executable).with_name("jupyter")
    command = ["nbconvert", "--to", "cnnviz-html", "--output-dir", str(cli), executed_notebook]
    run = subprocess.run(
        [str(jupyter), *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, (
        f"{run.stderr}\n(is the entry point registered? `pip install -e .` registers it)"
    )
    page, _ = browser(cli / "widgets.html")
    check_notebook_page(page, demo)
