"""Real-browser check of the built widget bundles (js/test/harness.html).

Serves the repository root on 127.0.0.1, opens the harness in headless Chromium (Playwright),
and checks rendering, tooltips, clicks, sorting, trait round-trips and cleanup at several
devicePixelRatios. Any console error, page error or off-host request fails the run.

    cd js && npm run build && ../.venv/bin/python test/check_harness.py [--screenshot out.png]

Environment: CHROMIUM (default /usr/bin/chromium).
"""

from __future__ import annotations

import argparse
import functools
import http.server
import math
import os
import struct
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "cnnviz_widgets" / "static"
BUNDLES = (
    "filter_grid.js",
    "feature_maps.js",
    "occlusion_map.js",
    "top_patches.js",
    "embedding_explorer.js",
)
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Mirrors the fixtures in harness.js.
FM_MEAN = [0.5, 0.1, 0.9, 0.3, 0.9, 0.0, 0.7, 0.2, 0.4, 0.6]
FM_MAX = [1.23456, 2.5, 0.75, 3.14678, 0.1, 5.0, 1.0, 2.0, 0.456789, 4.0]
ORANGE = [0xFF, 0x7F, 0x0E, 255]
OCC = ".cnnviz-occlusion"
OCC_HEATMAP = f"{OCC} canvas.cnnviz-heatmap"
OCC_SCALE = 8  # 32x32 image at view_px 256
TP = ".cnnviz-top-patches"
TP_K = 3
TP_CHANNELS = [7, 2, 11, 5]
TP_VALUES = [3.5, 2.25, 1.126, 9.87654, 4, 0.5, 1.5, 1.25, 1, 0.75, 0.5, 0.25]
TP_INDICES = [42, 13, 7, 42, 8, 99, 5, 13, 42, 1, 2, -1]
TP_LABELS = [3, 1, -1, 3, 0, 4, 2, 1, 3, 0, 4, -1]
TP_NAMES = ["plane", "car", "bird", "cat", "deer"]
TP_LAYER_LABELS = [
    "layer2 · 128×28×28 · stride 8 · RF 99×99",
    "layer3 · 256×14×14 · stride 16 · RF 211×211",
    "layer4 · 512×7×7 · stride 32 · RF 435×435",
]
BLUE = [0x1F, 0x77, 0xB4, 255]
# EmbeddingExplorer fixture (mirrors eeData in harness.js)
EE = ".cnnviz-embedding"
EE_SCATTER = f"{EE} canvas.cnnviz-scatter"
EE_OVERLAY = f"{EE} canvas.cnnviz-scatter-overlay"
EE_N = 500
EE_NAMES = ["plane", "car", "bird", "cat", "deer"]
EE_COLORS = [
    [0x1F, 0x77, 0xB4],
    [0xFF, 0x7F, 0x0E],
    [0x2C, 0xA0, 0x2C],
    [0xD6, 0x27, 0x28],
    [0x94, 0x67, 0xBD],
]
# WebGL in headless Chromium without a GPU: SwiftShader (software).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--headless",
    "--use-angle=swiftshader",
    "--enable-unsafe-swiftshader",
]


class CheckFailed(AssertionError):
    pass


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise CheckFailed(msg)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")
        super().end_headers()


def serve(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


def order_by(stat: list[float]) -> list[int]:
    return sorted(range(len(stat)), key=lambda c: (-stat[c], c))


class Grid:
    """Geometry of a rendered `.cnnviz-tiles` canvas, read from its data attributes."""

    def __init__(self, page: Page, root: str) -> None:
        self.page = page
        self.root = root
        self.sel = f"{root} canvas.cnnviz-tiles"
        attrs = page.eval_on_selector(self.sel, "c => ({...c.dataset})")
        self.attrs = attrs
        self.n = int(attrs["nTiles"])
        self.scale = int(attrs["scale"])
        self.gap = int(attrs["gap"])
        self.cols = int(attrs["cols"])
        self.tile_h = int(attrs["tileH"])
        self.tile_w = int(attrs["tileW"])
        self.order = [int(t) for t in attrs["order"].split(",")] if attrs["order"] else []
        self.draws = int(attrs["drawCount"])

    def xy(self, p: int) -> tuple[int, int]:
        """CSS top-left of display position p, relative to the canvas."""
        cw, ch = self.tile_w * self.scale, self.tile_h * self.scale
        return (
            self.gap + (p % self.cols) * (cw + self.gap),
            self.gap + (p // self.cols) * (ch + self.gap),
        )

    def center(self, p: int) -> tuple[float, float]:
        x, y = self.xy(p)
        return x + self.tile_w * self.scale / 2, y + self.tile_h * self.scale / 2

    def page_point(self, p: int) -> tuple[float, float]:
        box = self.page.locator(self.sel).bounding_box()
        assert box is not None
        cx, cy = self.center(p)
        return box["x"] + cx, box["y"] + cy

    def pixel(self, x: float, y: float, overlay: bool = False) -> list[int]:
        sel = f"{self.root} canvas.cnnviz-tiles-overlay" if overlay else self.sel
        return self.page.evaluate(
            "([sel, x, y]) => harness.pixelAt(document.querySelector(sel), x, y)", [sel, x, y]
        )

    def hover(self, p: int) -> str:
        self.page.mouse.move(*self.page_point(p))
        tip = self.page.locator(f"{self.root} .cnnviz-tooltip")
        tip.wait_for(state="visible", timeout=2000)
        return tip.inner_text()

    def click(self, p: int) -> None:
        self.page.mouse.click(*self.page_point(p))


def wait_draw(page: Page, root: str, after: int = 0) -> Grid:
    page.wait_for_function(
        "([sel, n]) => { const c = document.querySelector(sel);"
        " return c && Number(c.dataset.drawCount || 0) > n; }",
        arg=[f"{root} canvas.cnnviz-tiles", after],
        timeout=5000,
    )
    return Grid(page, root)


def model_get(page: Page, model: str, name: str):
    return page.evaluate("([m, k]) => harness.models[m].get(k)", [model, name])


def kernel_set(page: Page, model: str, name: str, value) -> None:
    page.evaluate("([m, k, v]) => harness.models[m].kernelSet(k, v)", [model, name, value])


def occ_image(y: float, x: float) -> list[int]:
    """Fixture image colour at image pixel (y, x) (mirrors occImageColor in harness.js)."""
    return [8 * int(x), 255 - 8 * int(y), 60]


def occ_lut(i: int) -> list[int]:
    """Fixture LUT entry (mirrors occLut)."""
    return [i, (3 * i) % 256, 255 - i]


def f32(v: float) -> float:
    return struct.unpack("<f", struct.pack("<f", v))[0]


def occ_score(i: int, j: int, ny: int, nx: int) -> float:
    """Fixture score of cell (i, j) (mirrors occScores), as float32."""
    return f32((i * nx + j) / (ny * nx - 1))


def occ_color(v: float, vmin: float = 0.0, vmax: float = 1.0) -> list[int]:
    """LUT colour of v, with JavaScript's Math.round."""
    i = math.floor(255 * (v - vmin) / (vmax - vmin) + 0.5)
    return occ_lut(min(255, max(0, i)))


def fmt3(v: float) -> str:
    """formatSig(v, 3) for the plain decimals used here."""
    return repr(float(f"{v:.3g}"))


def occ_attrs(page: Page) -> dict[str, str]:
    return page.eval_on_selector(OCC_HEATMAP, "c => ({...c.dataset})")


def occ_wait_draw(page: Page, after: int) -> dict[str, str]:
    page.wait_for_function(
        "([sel, n]) => { const c = document.querySelector(sel);"
        " return c && Number(c.dataset.drawCount || 0) > n; }",
        arg=[OCC_HEATMAP, after],
        timeout=5000,
    )
    return occ_attrs(page)


def occ_pixel(page: Page, y: float, x: float, sel: str = OCC_HEATMAP) -> list[int]:
    """Pixel at image coordinates (y, x) of the heatmap (or another canvas at that CSS scale)."""
    return page.evaluate(
        "([sel, x, y]) => harness.pixelAt(document.querySelector(sel), x, y)",
        [sel, x * OCC_SCALE, y * OCC_SCALE],
    )


def close(a: list[int], b: list[int], tol: int) -> bool:
    return len(a) >= 3 and all(
        abs(int(p) - int(q)) <= tol for p, q in zip(a[:3], b[:3], strict=True)
    )


def check_cells(page: Page, ny: int, nx: int, patch: int, stride: int, alpha: float) -> None:
    """Cell colours at the patch centres follow the LUT, blended over the image at `alpha`."""
    cells = {(0, 0), (ny - 1, nx - 1), (ny // 2, 1), (1, nx - 2)}
    for i, j in sorted(cells):
        # middle of the image pixel just below/right of the patch centre (inside cell (i, j))
        y, x = i * stride + patch / 2 + 0.5, j * stride + patch / 2 + 0.5
        lut = occ_color(occ_score(i, j, ny, nx))
        img = occ_image(y, x)
        want = [round(alpha * c + (1 - alpha) * d) for c, d in zip(lut, img, strict=True)]
        got = occ_pixel(page, y, x)
        check(
            close(got, want, 2) and got[3] == 255,
            f"cell ({i}, {j}) of {ny}x{nx} at opacity {alpha}: {got} != {want}",
        )


def occ_hover(page: Page, y: float, x: float) -> str | None:
    """Move the mouse to image coordinates (y, x); the tooltip text, or None when hidden."""
    box = page.locator(OCC_HEATMAP).bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + x * OCC_SCALE, box["y"] + y * OCC_SCALE)
    tip = page.locator(f"{OCC} .cnnviz-tooltip")
    return tip.inner_text() if tip.is_visible() else None


def commit(page: Page, sel: str, value: str) -> None:
    """Type `value` into an input and commit it with Enter (fires `change`)."""
    page.fill(sel, value)
    page.press(sel, "Enter")


def run_occlusion_checks(page: Page, notes: list[str]) -> None:
    def saves() -> int:
        return page.evaluate("harness.models.occ.saves")

    page.locator(OCC).scroll_into_view_if_needed()

    # --- before the first map: the image only -------------------------------------------------
    a = occ_wait_draw(page, 0)
    check(a["cells"] == "0,0" and a["maps"] == "0", f"initial heatmap attrs {a}")
    check(float(a["scale"]) == OCC_SCALE, f"scale {a['scale']}")
    width = page.eval_on_selector(OCC_HEATMAP, "c => c.getBoundingClientRect().width")
    check(width == 256, f"heatmap CSS width {width}")
    for y, x in [(0.5, 0.5), (5.5, 7.5), (31.5, 20.5)]:
        got = occ_pixel(page, y, x)
        check(got == [*occ_image(y, x), 255], f"image pixel ({y}, {x}): {got}")
    check(not page.locator(f"{OCC} .cnnviz-colorbar").is_visible(), "colour bar before a map")
    check(page.eval_on_selector(f"{OCC} progress.cnnviz-progress", "p => p.value") == 0, "progress")
    check(page.locator(f"{OCC} .cnnviz-status").inner_text() == "starting…", "status text")

    # --- first map, 3x3 (patch 8, stride 12: cells clipped at the image border) ----------------
    draws = int(a["drawCount"])
    page.evaluate(
        "harness.occPushMap(harness.models.occ, {ny: 3, nx: 3, patch: 8, stride: 12, mapsDone: 1})"
    )
    a = occ_wait_draw(page, draws)
    page.wait_for_timeout(150)
    a = occ_attrs(page)
    check(int(a["drawCount"]) == draws + 1, f"11 trait changes in one tick: {a['drawCount']} draws")
    check((a["cells"], a["maps"], a["opacity"]) == ("3,3", "1", "0.6"), f"3x3 attrs {a}")
    check_cells(page, 3, 3, 8, 12, 0.6)
    # cell (0, 0) spans image rows -2..10 (clipped to 0): the corner pixel is in it
    want = [round(0.6 * c + 0.4 * d) for c, d in zip(occ_color(0.0), occ_image(0, 0), strict=True)]
    check(close(occ_pixel(page, 0.5, 0.5), want, 2), "3x3 map must reach the image corner")
    colors = page.eval_on_selector(OCC_HEATMAP, "c => harness.distinctColors(c)")
    check(colors > 100, f"heatmap looks blank ({colors} colours)")
    check(
        page.locator(f"{OCC} .cnnviz-caption").inner_text()
        == "probability of 'cat' with the patch at each place",
        "caption",
    )

    # --- colour bar -----------------------------------------------------------------------
    bar = f"{OCC} canvas.cnnviz-colorbar"
    check(page.locator(bar).is_visible(), "colour bar hidden")
    bh = page.eval_on_selector(bar, "c => c.clientHeight")
    top = page.evaluate("([s, h]) => harness.pixelAt(document.querySelector(s), 4, 0.5)", [bar, bh])
    bottom = page.evaluate(
        "([s, h]) => harness.pixelAt(document.querySelector(s), 4, h - 0.5)", [bar, bh]
    )
    check(close(top, occ_lut(255), 4), f"colour bar top {top} != LUT[255]")
    check(close(bottom, occ_lut(0), 4), f"colour bar bottom {bottom} != LUT[0]")
    mark = page.locator(f"{OCC} .cnnviz-colorbar-mark-label").inner_text()
    check(mark == "unoccluded 0.93", f"colour-bar mark label {mark!r}")
    ends = [page.locator(f"{OCC} .cnnviz-colorbar-{e}").inner_text() for e in ("max", "min")]
    check(ends == ["1", "0"], f"colour-bar end labels {ends}")
    mark_y = page.eval_on_selector(
        f"{OCC} .cnnviz-colorbar-mark",
        "(m) => { const c = m.parentElement.querySelector('canvas').getBoundingClientRect();"
        " const r = m.getBoundingClientRect(); return (r.top + r.height / 2 - c.top) / c.height; }",
    )
    check(abs(mark_y - 0.07) < 0.03, f"mark at {mark_y:.3f} of the bar, want 0.07 from the top")

    # --- second map, 7x7 (patch 8, stride 4): the map sharpens --------------------------------
    draws = int(a["drawCount"])
    page.evaluate(
        "harness.occPushMap(harness.models.occ, {ny: 7, nx: 7, patch: 8, stride: 4, mapsDone: 2})"
    )
    a = occ_wait_draw(page, draws)
    check((a["cells"], a["maps"]) == ("7,7", "2"), f"7x7 attrs {a}")
    check_cells(page, 7, 7, 8, 4, 0.6)
    # the cells cover image rows/cols 2..30: outside is the bare image
    for y, x in [(1.5, 15.5), (15.5, 30.5), (31.5, 0.5)]:
        got = occ_pixel(page, y, x)
        check(got == [*occ_image(y, x), 255], f"outside the map at ({y}, {x}): {got}")

    # --- opacity slider -------------------------------------------------------------------
    draws = int(a["drawCount"])
    n = saves()
    page.eval_on_selector(
        f"{OCC} input.cnnviz-opacity",
        "(s) => { s.value = '1'; s.dispatchEvent(new Event('input', {bubbles: true}));"
        " s.dispatchEvent(new Event('change', {bubbles: true})); }",
    )
    check(model_get(page, "occ", "opacity") == 1, "opacity not set by the slider")
    check(saves() == n + 1, "save_changes after the slider")
    a = occ_wait_draw(page, draws)
    check(a["opacity"] == "1", f"data-opacity {a['opacity']}")
    for i, j in [(0, 0), (3, 4), (6, 6)]:
        got = occ_pixel(page, i * 4 + 4.5, j * 4 + 4.5)
        want = occ_color(occ_score(i, j, 7, 7))
        check(got[:3] == want, f"cell ({i}, {j}) at opacity 1: {got} != {want}")
    page.focus(f"{OCC} input.cnnviz-opacity")
    page.keyboard.press("ArrowLeft")
    check(abs(model_get(page, "occ", "opacity") - 0.99) < 1e-9, "slider keyboard step")
    kernel_set(page, "occ", "opacity", 1)
    check(page.input_value(f"{OCC} input.cnnviz-opacity") == "1", "slider not synced")
    page.wait_for_function(
        "sel => document.querySelector(sel).dataset.opacity === '1'", arg=OCC_HEATMAP
    )
    a = occ_attrs(page)

    # --- hover: tooltip, outline, position mapping, no redraw -------------------------------
    draws = int(a["drawCount"])
    text = occ_hover(page, 2 * 4 + 4.5, 3 * 4 + 4.5)  # centre of cell (2, 3)
    want = f"patch at (8, 12) · score {fmt3(occ_score(2, 3, 7, 7))}"
    check(text == want, f"tooltip {text!r} != {want!r}")
    box = page.locator(OCC_HEATMAP).bounding_box()
    tip = page.locator(f"{OCC} .cnnviz-tooltip").bounding_box()
    assert box is not None and tip is not None
    mx, my = box["x"] + (3 * 4 + 4.5) * OCC_SCALE, box["y"] + (2 * 4 + 4.5) * OCC_SCALE
    check(
        mx < tip["x"] < mx + 30 and my < tip["y"] < my + 30,
        f"tooltip at {tip} for the mouse at ({mx}, {my})",
    )
    ov = f"{OCC} canvas.cnnviz-heatmap-overlay"
    edge = occ_pixel(page, 8 + 4, 12 + 0.05, ov)  # left edge of the 8x8 patch at (8, 12)
    inside = occ_pixel(page, 8 + 4, 12 + 4, ov)
    check(edge[3] > 0 and inside[3] == 0, f"patch outline: edge {edge}, inside {inside}")
    # cell (i, j) holds image rows 2 + 4i .. 6 + 4i: y = 13.9 is cell 2, x = 2.1 is cell 0
    text = occ_hover(page, 13.9, 2.1)
    check(text is not None and text.startswith("patch at (8, 0) ·"), f"tooltip {text!r}")
    text = occ_hover(page, 14.1, 29.9)
    check(text is not None and text.startswith("patch at (12, 24) ·"), f"tooltip {text!r}")
    for y, x in [(1.5, 16), (16, 30.5), (31, 31)]:
        text = occ_hover(page, y, x)
        check(text is None, f"tooltip outside the map at ({y}, {x}): {text!r}")
    for k in range(20):
        occ_hover(page, 3 + k * 1.3, 4 + k)
    check(int(occ_attrs(page)["drawCount"]) == draws, "hover redrew the heatmap")
    occ_hover(page, 6.5, 6.5)
    page.mouse.move(5, 5)
    page.wait_for_timeout(50)
    check(not page.locator(f"{OCC} .cnnviz-tooltip").is_visible(), "tooltip after leaving")
    check(occ_pixel(page, 6, 4.05, ov)[3] == 0, "outline left after leaving")

    # --- target select --------------------------------------------------------------------
    sel = f"{OCC} select.cnnviz-target"
    texts = page.eval_on_selector(sel, "s => [...s.options].map(o => o.text)")
    check(
        texts
        == [
            "cat (0.93)",
            "dog (0.04)",
            "bird (0.012)",
            "plane (0.005)",
            "ship (0.0021)",
            "other class…",
        ],
        f"target options {texts}",
    )
    check(page.input_value(sel) == "3", "initial target not selected")
    n = saves()
    page.select_option(sel, "5")
    check(model_get(page, "occ", "target") == 5 and saves() == n + 1, "target from the select")
    kernel_set(page, "occ", "target", 7)  # not in the top 5
    check(page.input_value(sel) == "7", "target outside the top 5 not selected")
    label = page.eval_on_selector(sel, "s => s.selectedOptions[0].text")
    check(label == "horse", f"selected option {label!r}")
    page.select_option(sel, "other")
    cls = f"{OCC} input.cnnviz-class-input"
    check(page.locator(cls).is_visible(), "class input hidden after 'other class…'")
    n_opts = page.eval_on_selector(cls, "i => i.list && i.list.options.length")
    check(n_opts == 12, f"datalist options {n_opts}")
    commit(page, cls, "truck")
    check(model_get(page, "occ", "target") == 9, "target by class name")
    check(not page.locator(cls).is_visible(), "class input still visible")
    check(page.input_value(sel) == "9", "select after picking by name")
    page.select_option(sel, "other")
    commit(page, cls, "crane")  # two classes share the name
    check(model_get(page, "occ", "target") == 9, "ambiguous name must be refused")
    check(page.get_attribute(cls, "aria-invalid") == "true", "refused name not flagged")
    commit(page, cls, "crane #11")
    check(model_get(page, "occ", "target") == 11, "target by datalist value")
    page.select_option(sel, "3")
    check(model_get(page, "occ", "target") == 3, "target back to the top class")

    # --- patch / stride / baseline --------------------------------------------------------
    patch, stride, base = (f"{OCC} input.cnnviz-{k}" for k in ("patch", "stride", "baseline"))
    check(page.get_attribute(patch, "max") == "32", "patch max")
    check(page.input_value(patch) == "8" and page.input_value(stride) == "4", "control values")
    n = saves()
    commit(page, patch, "12")
    check(model_get(page, "occ", "patch_size") == 12 and saves() == n + 1, "patch_size from input")
    for bad in ("0", "33", "2.5", "-3"):
        commit(page, patch, bad)
        check(model_get(page, "occ", "patch_size") == 12, f"patch {bad} accepted")
        check(page.input_value(patch) == "12", f"patch input not reverted after {bad}")
    check("cnnviz-refused" in (page.get_attribute(patch, "class") or ""), "refusal not shown")
    commit(page, stride, "3")
    check(model_get(page, "occ", "stride") == 3, "stride from input")
    for bad in ("0", "1.5", ""):
        commit(page, stride, bad)
        check(model_get(page, "occ", "stride") == 3, f"stride {bad!r} accepted")
        check(page.input_value(stride) == "3", f"stride input not reverted after {bad!r}")
    commit(page, base, "-0.5")
    check(model_get(page, "occ", "baseline") == -0.5, "baseline from input")
    commit(page, base, "")
    check(model_get(page, "occ", "baseline") == -0.5, "empty baseline accepted")
    check(page.input_value(base) == "-0.5", "baseline input not reverted")
    n = saves()
    page.fill(patch, "16")  # typing alone does not commit
    check(model_get(page, "occ", "patch_size") == 12 and saves() == n, "committed on keystroke")
    kernel_set(page, "occ", "patch_size", 10)
    check(page.input_value(patch) == "10", "patch input not synced from Python")

    # --- progress, status, maps_done --------------------------------------------------------
    kernel_set(page, "occ", "progress", 0.42)
    kernel_set(page, "occ", "status", "stride 4 · 49 positions · 0.41 s")
    value = page.eval_on_selector(f"{OCC} progress.cnnviz-progress", "p => p.value")
    check(abs(value - 0.42) < 1e-6, f"progress value {value}")
    check(
        page.locator(f"{OCC} .cnnviz-status").inner_text() == "stride 4 · 49 positions · 0.41 s",
        "status text",
    )
    kernel_set(page, "occ", "running", False)
    check(page.get_attribute(OCC, "data-running") == "false", "data-running")
    draws = int(occ_attrs(page)["drawCount"])
    kernel_set(page, "occ", "maps_done", 3)
    a = occ_wait_draw(page, draws)
    check(a["maps"] == "3", f"data-maps {a['maps']}")

    # --- a 15x15 map while the mouse is over the heatmap ------------------------------------
    occ_hover(page, 10.5, 10.5)
    draws = int(a["drawCount"])
    page.evaluate(
        "harness.occPushMap(harness.models.occ, {ny: 15, nx: 15, patch: 4, stride: 2, mapsDone: 4})"
    )
    a = occ_wait_draw(page, draws)
    check(a["cells"] == "15,15", f"15x15 attrs {a}")
    check_cells(page, 15, 15, 4, 2, 1.0)
    # cell (i, j) holds rows 1 + 2i .. 3 + 2i: y = 10.5 is cell 4
    tip_text = page.locator(f"{OCC} .cnnviz-tooltip").inner_text()
    check(tip_text.startswith("patch at (8, 8) ·"), f"tooltip after the map changed {tip_text!r}")
    page.mouse.move(5, 5)

    # --- draw time of a fine map --------------------------------------------------------------
    ms = page.evaluate(
        """async () => {
            const c = document.querySelector('.cnnviz-occlusion canvas.cnnviz-heatmap');
            const m = harness.models.occ;
            const before = Number(c.dataset.drawCount);
            const t0 = performance.now();
            harness.occPushMap(m, {ny: 29, nx: 29, patch: 4, stride: 1, mapsDone: 5});
            while (Number(c.dataset.drawCount) === before) await new Promise(r => setTimeout(r, 0));
            return performance.now() - t0;
        }"""
    )
    check(ms < 500, f"29x29 map draw took {ms:.0f} ms")
    notes.append(f"occlusion 29x29 draw {ms:.1f} ms")


def tp_label(t: int) -> str:
    """Expected tooltip of TopPatches fixture tile t (mirrors patchLabel in top_patches.js)."""
    c, r = TP_CHANNELS[t // TP_K], t % TP_K
    if TP_INDICES[t] < 0:
        return f"channel {c} · #{r} · no patch"
    s = f"channel {c} · #{r} · act {fmt3(f32(TP_VALUES[t])).removesuffix('.0')}"
    s += f" · image {TP_INDICES[t]}"
    if TP_LABELS[t] >= 0:
        s += f" ({TP_NAMES[TP_LABELS[t]]})"
    return s


def tp_wait_attr(page: Page, sel: str, attr: str, value: str) -> None:
    page.wait_for_function(
        "([s, a, v]) => { const e = document.querySelector(s); return e && e.dataset[a] === v; }",
        arg=[sel, attr, value],
        timeout=5000,
    )


def run_top_patches_checks(page: Page, notes: list[str]) -> None:
    tiles = f"{TP} canvas.cnnviz-tiles"

    def saves() -> int:
        return page.evaluate("harness.models.tp.saves")

    def headers() -> list[list]:
        return page.eval_on_selector_all(
            f"{TP} .cnnviz-channel",
            "els => els.map(e => { const r = e.getBoundingClientRect();"
            " return [e.dataset.channel, e.innerText, r.top + r.height / 2, r.right,"
            " e.classList.contains('cnnviz-selected')]; })",
        )

    page.locator(TP).scroll_into_view_if_needed()

    # --- initial render: 4 channels x k = 3 ------------------------------------------------
    g = wait_draw(page, TP)
    check(
        (g.n, g.cols, g.scale, g.gap, g.tile_h, g.tile_w) == (12, 3, 3, 2, 10, 10),
        f"top patches data attributes {g.attrs}",
    )
    check(g.order == list(range(12)), f"top patches order {g.order}")
    check(page.eval_on_selector(g.sel, "c => harness.distinctColors(c)") >= 12, "blank patches")
    colors = page.evaluate("() => Array.from({length: 12}, (_, t) => harness.tileColor(t))")
    for t in range(12):
        px = g.pixel(*g.center(t))
        check(px == [*colors[t], 255], f"patch {t}: {px} != {colors[t]}")
    root = page.eval_on_selector(TP, "e => ({...e.dataset})")
    check(
        (root.get("page"), root.get("channels"), root.get("running")) == ("1", "7,2,11,5", "false"),
        f"root data attributes {root}",
    )
    caption = page.locator(f"{TP} .cnnviz-caption").inner_text()
    check(caption == "layer3 · top 3 of 2000 images per channel", f"caption {caption!r}")

    # --- row headers: one per row, left of the canvas, centred on the row --------------------
    box = page.locator(tiles).bounding_box()
    assert box is not None
    hs = headers()
    check([h[0] for h in hs] == ["7", "2", "11", "5"], f"header channels {hs}")
    check([h[1] for h in hs] == [f"channel {c}" for c in TP_CHANNELS], f"header text {hs}")
    for r, h in enumerate(hs):
        want = box["y"] + g.center(r * TP_K)[1]
        check(abs(h[2] - want) <= 1, f"header {r} centred at {h[2]}, row at {want}")
        check(h[3] <= box["x"] + 0.5, f"header {r} overlaps the canvas ({h[3]} > {box['x']})")
        check(not h[4], f"header {r} selected initially")

    # --- tooltips, no redraw on hover ----------------------------------------------------------
    draws = g.draws
    for t in (3, 2, 11, 7):
        text = g.hover(t)
        check(text == tp_label(t), f"tooltip of patch {t}: {text!r} != {tp_label(t)!r}")
    check(g.hover(3) == "channel 2 · #0 · act 9.88 · image 42 (cat)", "tooltip literal")
    check(g.hover(2) == "channel 7 · #2 · act 1.13 · image 7", "tooltip without a label")
    check(Grid(page, TP).draws == draws, "hover must not redraw the patches")

    # --- click a patch: selected_index + selected_channel, two outlines -----------------------
    n = saves()
    g.click(4)  # channel 2, rank 1, image 8
    check(model_get(page, "tp", "selected_index") == 8, "selected_index after a patch click")
    check(model_get(page, "tp", "selected_channel") == 2, "selected_channel after a patch click")
    check(saves() == n + 1, "one save_changes per patch click")
    tp_wait_attr(page, tiles, "selected", "3,4,5")
    tp_wait_attr(page, tiles, "marked", "4")
    x, y = g.xy(3)
    check(g.pixel(x - 1, y + 5, overlay=True) == ORANGE, "selected row outline not orange")
    x, y = g.xy(4)
    check(g.pixel(x + 0.5, y + 5, overlay=True) == BLUE, "selected image outline not blue")
    check(g.pixel(x + 15, y + 15, overlay=True)[3] == 0, "outline covers the patch centre")
    x, y = g.xy(0)
    check(g.pixel(x + 0.5, y + 5, overlay=True)[3] == 0, "unmarked patch outlined")
    check([h[4] for h in headers()] == [False, True, False, False], "header of channel 2")

    g.click(0)  # channel 7, image 42: in rows 0, 1 and 2
    check(model_get(page, "tp", "selected_index") == 42, "selected_index image 42")
    tp_wait_attr(page, tiles, "marked", "0,3,8")
    tp_wait_attr(page, tiles, "selected", "0,1,2")
    x, y = g.xy(8)
    check(g.pixel(x + 0.5, y + 5, overlay=True) == BLUE, "image 42 in channel 11 not outlined")
    check(Grid(page, TP).draws == draws, "selection must not redraw the patches")

    # --- click a row header ----------------------------------------------------------------
    n = saves()
    page.click(f"{TP} .cnnviz-channel[data-channel='11']")
    check(model_get(page, "tp", "selected_channel") == 11, "selected_channel from the header")
    check(model_get(page, "tp", "selected_index") == 42, "header click changed selected_index")
    check(saves() == n + 1, "save_changes after the header click")
    tp_wait_attr(page, tiles, "selected", "6,7,8")
    check([h[4] for h in headers()] == [False, False, True, False], "header of channel 11")

    # --- Python selects a channel of another page, clears the image -------------------------
    kernel_set(page, "tp", "selected_channel", 99)
    tp_wait_attr(page, tiles, "selected", "")
    check(not any(h[4] for h in headers()), "a header is selected for channel 99")
    check(page.get_attribute(TP, "data-page") == "1", "page changed by the widget")
    kernel_set(page, "tp", "selected_index", -1)
    tp_wait_attr(page, tiles, "marked", "")

    # --- pager ---------------------------------------------------------------------------
    prev, nxt = f"{TP} button.cnnviz-prev", f"{TP} button.cnnviz-next"
    label = f"{TP} .cnnviz-page"

    def pager() -> tuple[str, bool, bool]:
        return (
            page.locator(label).inner_text(),
            page.locator(prev).is_disabled(),
            page.locator(nxt).is_disabled(),
        )

    check(pager() == ("page 2 / 3", False, False), f"pager {pager()}")
    n = saves()
    page.click(nxt)
    check(model_get(page, "tp", "page") == 2 and saves() == n + 1, "next page")
    check(pager() == ("page 3 / 3", False, True), f"pager at the end {pager()}")
    check(page.get_attribute(TP, "data-page") == "2", "data-page after next")
    nbox = page.locator(nxt).bounding_box()
    assert nbox is not None
    page.mouse.click(nbox["x"] + nbox["width"] / 2, nbox["y"] + nbox["height"] / 2)
    check(model_get(page, "tp", "page") == 2 and saves() == n + 1, "disabled next clicked")
    page.click(prev)
    page.click(prev)
    check(model_get(page, "tp", "page") == 0 and saves() == n + 3, "prev page")
    check(pager() == ("page 1 / 3", True, False), f"pager at the start {pager()}")
    kernel_set(page, "tp", "page", 1)
    check(pager() == ("page 2 / 3", False, False), f"pager from Python {pager()}")
    kernel_set(page, "tp", "n_pages", 2)
    check(pager() == ("page 2 / 2", False, True), f"pager after n_pages {pager()}")

    # --- layer and sort selects ----------------------------------------------------------
    layer = f"{TP} select.cnnviz-layer"
    opts = page.eval_on_selector(layer, "s => [...s.options].map(o => [o.value, o.text])")
    check(
        opts == [[f"layer{i}", lab] for i, lab in zip((2, 3, 4), TP_LAYER_LABELS, strict=True)],
        f"layer options {opts}",
    )
    check(page.input_value(layer) == "layer3", "layer select value")
    n = saves()
    page.select_option(layer, "layer4")
    check(model_get(page, "tp", "layer") == "layer4" and saves() == n + 1, "layer from select")
    kernel_set(page, "tp", "layer", "layer2")
    check(page.input_value(layer) == "layer2", "layer select not synced")
    sort = f"{TP} select.cnnviz-sort"
    check(page.input_value(sort) == "max", "sort select value")
    page.select_option(sort, "mean")
    check(model_get(page, "tp", "sort_by") == "mean" and saves() == n + 2, "sort_by from select")
    kernel_set(page, "tp", "sort_by", "index")
    check(page.input_value(sort) == "index", "sort select not synced")

    # --- progress ----------------------------------------------------------------------
    kernel_set(page, "tp", "running", True)
    kernel_set(page, "tp", "progress", 0.42)
    kernel_set(page, "tp", "status", "layer2 · 840 / 2000 images")
    value = page.eval_on_selector(f"{TP} progress.cnnviz-progress", "p => p.value")
    check(abs(value - 0.42) < 1e-6, f"progress value {value}")
    status = page.locator(f"{TP} .cnnviz-status").inner_text()
    check(status == "layer2 · 840 / 2000 images", f"status {status!r}")
    check(page.get_attribute(TP, "data-running") == "true", "data-running")

    # --- a new page from Python (all traits in one tick): one redraw, new headers ---------------
    kernel_set(page, "tp", "selected_channel", 3)
    draws = Grid(page, TP).draws
    page.evaluate(
        """async () => {
            const t = await harness.tpPageTraits({channels: [0, 1, 3], salt: 40});
            harness.tpPush(harness.models.tp, t);
        }"""
    )
    g = wait_draw(page, TP, draws)
    page.wait_for_timeout(100)
    g = Grid(page, TP)
    check(g.draws == draws + 1, f"new page in one tick: {g.draws - draws} draws")
    check((g.n, g.cols) == (9, 3), f"new page attrs {g.attrs}")
    check(page.get_attribute(TP, "data-channels") == "0,1,3", "data-channels of the new page")
    hs = headers()
    check([h[0] for h in hs] == ["0", "1", "3"], f"new page headers {hs}")
    check([h[4] for h in hs] == [False, False, True], "channel 3 selected on the new page")
    check(g.attrs.get("selected") == "6,7,8", f"selected row on the new page {g.attrs}")
    salted = page.evaluate("() => Array.from({length: 9}, (_, t) => harness.tileColor(t, 40))")
    for t in range(9):
        check(g.pixel(*g.center(t)) == [*salted[t], 255], f"new page patch {t}")
    text = g.hover(7)
    check(text == "channel 3 · #1 · act 3 · image 107 (bird)", f"new page tooltip {text!r}")
    page.mouse.move(5, 5)
    notes.append("top patches OK")


def ee_thumb_color(i: int) -> list[int]:
    """Solid colour of fixture thumbnail i (mirrors eeThumbColor)."""
    return [(17 * i) % 200, (60 + 7 * i) % 240, 220 - (i % 97)]


def ee_label(i: int) -> int:
    return i % 5


def ee_pred(i: int) -> int:
    return (i % 5 + 1) % 5 if i % 17 == 0 else i % 5


def ee_attrs(page: Page) -> dict[str, str]:
    return page.eval_on_selector(EE_SCATTER, "c => ({...c.dataset})")


def ee_wait(page: Page, js: str, arg=None, timeout: int = 5000) -> None:
    page.wait_for_function(js, arg=arg, timeout=timeout)


def ee_positions(page: Page) -> list[dict | None]:
    """Client CSS position of every point (None: not drawn)."""
    return page.evaluate(
        "n => { const r = document.querySelector('.cnnviz-embedding');"
        " return Array.from({length: n}, (_, i) => r.cnnvizPointToClient(i)); }",
        EE_N,
    )


def ee_isolated(pos: list[dict | None], k: int = 2) -> list[int]:
    """The k points farthest from their nearest neighbour (easy to hover without ambiguity)."""
    best = []
    for i, p in enumerate(pos):
        if p is None:
            continue
        d = min(
            (p["x"] - q["x"]) ** 2 + (p["y"] - q["y"]) ** 2
            for j, q in enumerate(pos)
            if j != i and q is not None
        )
        best.append((d**0.5, i))
    best.sort(reverse=True)
    return [i for _, i in best[:k]]


def ee_pixel(page: Page, sel: str, x: float, y: float) -> list[int]:
    """Pixel of a canvas at client (viewport) coordinates."""
    return page.evaluate(
        "([sel, x, y]) => { const c = document.querySelector(sel);"
        " const r = c.getBoundingClientRect(); return harness.pixelAt(c, x - r.left, y - r.top); }",
        [sel, x, y],
    )


def ee_selected_indices(page: Page) -> tuple[bool, list[int]]:
    """(is an int32 array as the codec sends it, its buffer a DataView; values) of the model's
    selected_indices."""
    got = page.evaluate(
        """() => { const v = harness.models.ee.get('selected_indices');
            const b = v.buffer;
            const ok = v.dtype === 'int32' && b instanceof DataView
                && v.shape.length === 1 && v.shape[0] * 4 === b.byteLength;
            const out = [];
            for (let k = 0; k + 4 <= b.byteLength; k += 4) out.push(b.getInt32(k, true));
            return [ok, out]; }"""
    )
    return bool(got[0]), [int(v) for v in got[1]]


def ee_ring_at(page: Page, p: dict, radius: float = 9) -> int:
    """How many of 12 samples on a circle around client point p are the selection orange."""
    hits = 0
    for k in range(12):
        a = 2 * math.pi * k / 12
        px = ee_pixel(
            page, EE_OVERLAY, p["x"] + radius * math.cos(a), p["y"] + radius * math.sin(a)
        )
        if px[3] > 200 and close(px, ORANGE, 60):
            hits += 1
    return hits


def run_embedding_checks(page: Page, notes: list[str]) -> None:
    def saves() -> int:
        return page.evaluate("harness.models.ee.saves")

    page.locator(EE).scroll_into_view_if_needed()
    ee_wait(
        page,
        "sel => { const c = document.querySelector(sel);"
        " return c && Number(c.dataset.drawCount || 0) > 0 && c.dataset.points === '500'; }",
        EE_SCATTER,
        timeout=15000,
    )
    a = ee_attrs(page)
    check(a["selected"] == "-1" and a["thumbs"] == "0", f"initial scatter attrs {a}")
    width = page.eval_on_selector(EE_SCATTER, "c => [c.clientWidth, c.clientHeight]")
    check(width[1] == 360 and width[0] > 800, f"scatter CSS size {width}")

    # --- the WebGL map is drawn: points in their class colours --------------------------------
    page.wait_for_timeout(100)
    pos = ee_positions(page)
    check(all(p is not None for p in pos), "a point has no screen position")
    colors = page.eval_on_selector(EE_SCATTER, "c => harness.distinctColors(c)")
    check(colors >= 5, f"scatter canvas looks blank ({colors} opaque colours)")
    iso = ee_isolated(pos, 3)
    for i in iso:
        got = ee_pixel(page, EE_SCATTER, pos[i]["x"], pos[i]["y"])
        want = EE_COLORS[ee_label(i)]
        check(got[3] > 200 and close(got, want, 40), f"point {i}: pixel {got} != class {want}")
    legend = page.eval_on_selector_all(
        f"{EE} .cnnviz-legend-item",
        "els => els.map(e => [e.dataset.class, e.querySelector('.cnnviz-legend-name').textContent,"
        " e.querySelector('.cnnviz-legend-count').textContent])",
    )
    check(legend == [[str(c), n, "100"] for c, n in enumerate(EE_NAMES)], f"legend {legend}")

    # --- hover: tooltip with the thumbnail and the text ------------------------------------------
    i = iso[0]
    page.mouse.move(pos[i]["x"] + 40, pos[i]["y"] + 40)
    page.mouse.move(pos[i]["x"], pos[i]["y"], steps=3)
    tip = page.locator(f"{EE} .cnnviz-tooltip")
    tip.wait_for(state="visible", timeout=3000)
    check(tip.get_attribute("data-index") == str(i), f"hovered {tip.get_attribute('data-index')}")
    text = page.locator(f"{EE} .cnnviz-tooltip-text").inner_text()
    conf = f32(0.5 + (i % 50) / 100)
    want = f"#{i} · label {EE_NAMES[ee_label(i)]} · predicted {EE_NAMES[ee_pred(i)]} ({conf:.2f})"
    check(text == want, f"tooltip {text!r} != {want!r}")
    thumb = f"{EE} canvas.cnnviz-tooltip-thumb"
    ee_wait(page, "sel => document.querySelector(sel).dataset.scale === '8'", thumb)
    tw = page.eval_on_selector(thumb, "c => [c.clientWidth, c.clientHeight]")
    check(tw == [96, 96], f"tooltip thumbnail size {tw}")
    got = page.evaluate("sel => harness.pixelAt(document.querySelector(sel), 48, 48)", thumb)
    check(got == [*ee_thumb_color(i), 255], f"tooltip thumbnail {got} != {ee_thumb_color(i)}")

    # --- click selects the point ------------------------------------------------------------
    n = saves()
    page.mouse.click(pos[i]["x"], pos[i]["y"])
    ee_wait(page, "i => harness.models.ee.get('selected_index') === i", i)
    check(saves() > n, "save_changes after the click")
    ee_wait(
        page,
        "([sel, i]) => document.querySelector(sel).dataset.selected === String(i)",
        [EE_SCATTER, i],
    )
    page.wait_for_timeout(100)
    check(ee_ring_at(page, pos[i]) >= 8, "no selection ring around the clicked point")
    check(ee_attrs(page)["selectedCount"] == "0", "a click must not change selected_indices")
    ok, sel = ee_selected_indices(page)
    check(sel == [], f"selected_indices after a click {sel}")

    # --- selected_index from Python: the highlight moves ----------------------------------------
    j = iso[1]
    ms = page.evaluate(
        """async ([j, x, y]) => {
            const c = document.querySelector('.cnnviz-embedding canvas.cnnviz-scatter-overlay');
            const r = c.getBoundingClientRect();
            const t0 = performance.now();
            harness.models.ee.kernelSet('selected_index', j);
            for (let k = 0; k < 200; k++) {
                await new Promise(res => requestAnimationFrame(res));
                const p = harness.pixelAt(c, x - r.left + 9, y - r.top);
                if (p[3] > 200 && p[0] > 200 && p[1] > 90 && p[1] < 170 && p[2] < 80) break;
            }
            return performance.now() - t0;
        }""",
        [j, pos[j]["x"], pos[j]["y"]],
    )
    check(ee_ring_at(page, pos[j]) >= 8, "selected_index from Python not highlighted")
    check(ee_ring_at(page, pos[i]) == 0, "old selection ring still drawn")
    check(ee_attrs(page)["selected"] == str(j), "data-selected after Python set")
    notes.append(f"selected_index -> ring {ms:.0f} ms")

    # --- legend: hide and show a class ----------------------------------------------------------
    n = saves()
    page.click(f"{EE} .cnnviz-legend-item[data-class='2']")
    check(model_get(page, "ee", "hidden_classes") == [2], "hidden_classes after the legend click")
    check(saves() == n + 1, "save_changes after the legend click")
    ee_wait(page, "sel => document.querySelector(sel).dataset.points === '400'", EE_SCATTER)
    check(
        page.evaluate("() => document.querySelector('.cnnviz-embedding').cnnvizPointToClient(2)")
        is None,
        "a hidden point still has a screen position",
    )
    hidden = page.eval_on_selector(
        f"{EE} .cnnviz-legend-item[data-class='2']", "e => e.classList.contains('cnnviz-hidden')"
    )
    check(hidden, "legend item not marked hidden")
    k2 = next(k for k in ee_isolated(pos, 60) if ee_label(k) == 2)
    page.mouse.move(pos[k2]["x"], pos[k2]["y"], steps=2)
    page.wait_for_timeout(150)
    shown = page.locator(f"{EE} .cnnviz-tooltip")
    check(
        not shown.is_visible() or ee_label(int(shown.get_attribute("data-index"))) != 2,
        "a hidden point is hoverable",
    )
    page.click(f"{EE} .cnnviz-legend-item[data-class='2']")
    check(model_get(page, "ee", "hidden_classes") == [], "hidden_classes after the second click")
    ee_wait(page, "sel => document.querySelector(sel).dataset.points === '500'", EE_SCATTER)
    page.mouse.move(5, 5)

    # --- lasso (shift-drag): selected_indices as binary ----------------------------------------
    c0 = [k for k in range(EE_N) if ee_label(k) == 0]
    xs = [pos[k]["x"] for k in c0]
    ys = [pos[k]["y"] for k in c0]
    x0, x1, y0, y1 = min(xs) - 12, max(xs) + 12, min(ys) - 12, max(ys) + 12
    inside = [k for k in range(EE_N) if x0 < pos[k]["x"] < x1 and y0 < pos[k]["y"] < y1]
    check(inside == c0, "fixture: the lasso box must hold class 0 only")
    n = saves()
    page.keyboard.down("Shift")
    page.mouse.move(x0, y0)
    page.mouse.down()
    for cx, cy in [(x1, y0), (x1, y1), (x0, y1), (x0, y0 + 2)]:
        page.mouse.move(cx, cy, steps=6)
        page.wait_for_timeout(40)
    page.mouse.up()
    page.keyboard.up("Shift")
    ee_wait(page, "() => harness.models.ee.get('selected_indices').buffer.byteLength === 400")
    ok, sel = ee_selected_indices(page)
    check(ok, "selected_indices must be set as an int32 array, its buffer a DataView (binary)")
    check(sel == c0, f"lasso selected {len(sel)} points, want class 0 ({len(c0)})")
    check(saves() > n, "save_changes after the lasso")
    ee_wait(page, "sel => document.querySelector(sel).dataset.selectedCount === '100'", EE_SCATTER)
    count = page.locator(f"{EE} .cnnviz-selection-count").inner_text()
    check(count == "100 selected", f"selection count {count!r}")
    check(model_get(page, "ee", "selected_index") == j, "the lasso changed selected_index")

    # programmatic lasso in data coordinates (class 1's cluster)
    cx, cy = 0.55 * math.cos(2 * math.pi / 5), 0.55 * math.sin(2 * math.pi / 5)
    page.evaluate(
        "([x, y]) => document.querySelector('.cnnviz-embedding').cnnvizLasso("
        "[[x - 0.2, y - 0.2], [x + 0.2, y - 0.2], [x + 0.2, y + 0.2], [x - 0.2, y + 0.2]])",
        [cx, cy],
    )
    ee_wait(page, "() => harness.models.ee.get('selected_indices').buffer.byteLength === 400")
    page.wait_for_timeout(50)
    ok, sel = ee_selected_indices(page)
    check(ok and sel == [k for k in range(EE_N) if ee_label(k) == 1], "programmatic lasso")

    # selected_indices from Python
    page.evaluate("() => harness.models.ee.kernelSet('selected_indices', harness.i32([3, 4, 5]))")
    ee_wait(page, "sel => document.querySelector(sel).dataset.selectedCount === '3'", EE_SCATTER)
    page.click(f"{EE} button.cnnviz-clear-selection")
    ok, sel = ee_selected_indices(page)
    check(ok and sel == [], f"clear: {sel}")
    ee_wait(page, "sel => document.querySelector(sel).dataset.selectedCount === '0'", EE_SCATTER)

    # --- neighbours strip -------------------------------------------------------------------------
    page.evaluate(
        """() => { const m = harness.models.ee;
            m.kernelSet('selected_index', 7);
            m.kernelSet('neighbours', harness.i32([7, 3, 9, 11]));
            m.kernelSet('neighbour_distances', harness.f32([0, 0.5, 0.75, 1.25]));
        }"""
    )
    strip = f"{EE} .cnnviz-neighbours"
    ee_wait(page, "sel => document.querySelector(sel).dataset.complete === 'true'", strip)
    items = page.eval_on_selector_all(
        f"{strip} .cnnviz-neighbour",
        "els => els.map(e => { const c = e.querySelector('canvas');"
        " return [Number(e.dataset.index), e.classList.contains('cnnviz-neighbour-self'),"
        " c.clientWidth, e.querySelector('.cnnviz-neighbour-label').textContent,"
        " harness.pixelAt(c, c.clientWidth / 2, c.clientHeight / 2)]; })",
    )
    check([it[0] for it in items] == [7, 3, 9, 11], f"neighbour strip {items}")
    check([it[1] for it in items] == [True, False, False, False], "selected image not first")
    check(items[0][2] == 96 and all(it[2] == 60 for it in items[1:]), f"sizes {items}")
    check([it[3] for it in items] == ["#7", "0.5", "0.75", "1.25"], f"labels {items}")
    for it in items:
        check(it[4] == [*ee_thumb_color(it[0]), 255], f"neighbour {it[0]} thumbnail {it[4]}")
    n = saves()
    page.click(f"{strip} .cnnviz-neighbour[data-index='9']")
    check(model_get(page, "ee", "selected_index") == 9, "neighbour click")
    check(saves() == n + 1, "save_changes after the neighbour click")

    # --- thumbnails instead of dots --------------------------------------------------------------
    page.click(f"{EE} input.cnnviz-thumbnails")
    check(model_get(page, "ee", "show_thumbnails") is True, "show_thumbnails not set")
    ee_wait(page, "sel => document.querySelector(sel).dataset.thumbs === '500'", EE_SCATTER)
    kernel_set(page, "ee", "selected_index", -1)  # no ring over the thumbnails
    pos = ee_positions(page)  # clicks may have scrolled the page
    # thumbnails are drawn in index order: the last point's own thumbnail is on top
    last = pos[EE_N - 1]
    got = ee_pixel(page, EE_OVERLAY, last["x"], last["y"])
    check(got == [*ee_thumb_color(EE_N - 1), 255], f"thumbnail of the last point: {got}")
    for k in iso:
        got = ee_pixel(page, EE_OVERLAY, pos[k]["x"], pos[k]["y"])
        check(got[3] == 255, f"no thumbnail at point {k}: {got}")
    n_colors = page.eval_on_selector(EE_OVERLAY, "c => harness.distinctColors(c)")
    check(n_colors > 50, f"thumbnail overlay has {n_colors} colours")
    page.click(f"{EE} input.cnnviz-thumbnails")
    ee_wait(page, "sel => document.querySelector(sel).dataset.thumbs === '0'", EE_SCATTER)

    # --- misclassified highlight -----------------------------------------------------------------
    draws = int(ee_attrs(page)["drawCount"])
    page.click(f"{EE} input.cnnviz-misclassified")
    check(model_get(page, "ee", "highlight_misclassified") is True, "highlight not set")
    label = page.locator(f"{EE} .cnnviz-field:has(input.cnnviz-misclassified)").inner_text()
    check(label.strip() == "highlight misclassified (30)", f"misclassified label {label!r}")
    ee_wait(
        page,
        "([sel, n]) => Number(document.querySelector(sel).dataset.drawCount) > n",
        [EE_SCATTER, draws],
    )
    page.wait_for_timeout(100)
    pos = ee_positions(page)
    wrong = next(k for k in ee_isolated(pos, 200) if ee_pred(k) != ee_label(k))
    right = next(
        k
        for k in ee_isolated(pos, 200)
        if ee_pred(k) == ee_label(k) and ee_label(k) == ee_label(wrong)
    )

    def opaque_around(k: int) -> int:
        return page.evaluate(
            """([sel, x, y]) => { const c = document.querySelector(sel);
                const r = c.getBoundingClientRect(); let n = 0;
                for (let dx = -8; dx <= 8; dx++) for (let dy = -8; dy <= 8; dy++) {
                    const p = harness.pixelAt(c, x - r.left + dx, y - r.top + dy);
                    if (p[3] > 128) n++;
                } return n; }""",
            [EE_SCATTER, pos[k]["x"], pos[k]["y"]],
        )

    check(opaque_around(wrong) > opaque_around(right), "misclassified point not drawn bigger")
    page.click(f"{EE} input.cnnviz-misclassified")
    check(model_get(page, "ee", "highlight_misclassified") is False, "highlight not cleared")

    # --- grid layout (animated) ------------------------------------------------------------------
    pos = ee_positions(page)
    page.click(f"{EE} input.cnnviz-layout")
    check(model_get(page, "ee", "arrangement") == "grid", "layout not set to grid")
    page.wait_for_timeout(900)
    gpos = ee_positions(page)
    cols = {round(p["x"]) for p in gpos}
    rows = {round(p["y"]) for p in gpos}
    check(len(cols) <= 23 * 2 and len(rows) <= 22 * 2, f"grid layout: {len(cols)} x {len(rows)}")
    kernel_set(page, "ee", "arrangement", "scatter")
    page.wait_for_timeout(900)
    back = ee_positions(page)
    check(
        all(
            abs(p["x"] - q["x"]) < 1 and abs(p["y"] - q["y"]) < 1
            for p, q in zip(back, pos, strict=True)
        ),
        "scatter layout not restored",
    )
    check(not page.is_checked(f"{EE} input.cnnviz-layout"), "layout checkbox not synced")
    notes.append("embedding explorer OK")


def run_checks(page: Page, dpr: float) -> list[str]:
    notes: list[str] = []
    fm_root = ".cnnviz-feature-maps"

    # --- FeatureMaps: initial render -----------------------------------------------------------
    g = wait_draw(page, fm_root)
    check(
        (g.n, g.scale, g.gap, g.cols, g.tile_h, g.tile_w) == (10, 4, 2, 4, 6, 8),
        f"feature maps data attributes {g.attrs}",
    )
    check(g.order == list(range(10)), f"index order {g.order}")
    size = page.eval_on_selector(g.sel, "c => [c.getBoundingClientRect().width, c.height]")
    check(size[0] == 2 + 4 * (32 + 2), f"canvas CSS width {size[0]}")
    check(page.eval_on_selector(g.sel, "c => harness.distinctColors(c)") >= 10, "blank tiles")
    colors = page.evaluate("() => Array.from({length: 10}, (_, t) => harness.tileColor(t))")
    for p, t in enumerate(g.order):
        px = g.pixel(*g.center(p))
        check(px == [*colors[t], 255], f"tile at position {p}: {px} != {colors[t]}")
    check(g.pixel(1, 1)[3] == 0, "gap pixel should be transparent")
    caption = page.locator(f"{fm_root} .cnnviz-caption").inner_text()
    check(caption == "conv2 · 10 channels · 6×8 · image 5", f"caption {caption!r}")
    inp = page.locator(f"{fm_root} canvas.cnnviz-input")
    check(inp.is_visible(), "input image hidden")
    ibox = inp.evaluate("c => [c.clientWidth, harness.distinctColors(c)]")
    check(ibox[0] == 96 and ibox[1] > 100, f"input canvas width/colours {ibox}")

    # --- hover: tooltip, and no tile redraw while moving ----------------------------------------
    draws = g.draws
    text = g.hover(3)
    check(text == "channel 3 · max 3.15 · mean 0.3", f"tooltip {text!r}")
    for p in range(10):
        g.page.mouse.move(*g.page_point(p))
    check(g.hover(5) == "channel 5 · max 5 · mean 0", "tooltip channel 5")
    check(Grid(page, fm_root).draws == draws, "hover must not redraw the tiles")

    # --- click selects the channel --------------------------------------------------------------
    g.click(5)
    check(model_get(page, "fm", "selected_channel") == 5, "selected_channel after click")
    check(page.evaluate("harness.models.fm.saves") == 1, "save_changes after click")
    page.wait_for_function(
        "() => document.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles')"
        ".dataset.selected === '5'"
    )
    x, y = g.xy(5)
    check(g.pixel(x - 1, y + 5, overlay=True) == ORANGE, "selection outline not orange")

    # --- sort via the <select> ------------------------------------------------------------------
    page.select_option(f"{fm_root} select.cnnviz-sort", "mean")
    g = wait_draw(page, fm_root, g.draws)
    check(model_get(page, "fm", "sort_by") == "mean", "sort_by not set from select")
    check(page.evaluate("harness.models.fm.saves") == 2, "save_changes after sort")
    check(g.order == order_by(FM_MEAN), f"mean order {g.order}")
    check(g.order[:2] == [2, 4], "tie on mean must keep channel order")
    for p, t in enumerate(g.order):
        check(g.pixel(*g.center(p)) == [*colors[t], 255], f"sorted tile at position {p}")
    check(g.hover(0) == "channel 2 · max 0.75 · mean 0.9", "tooltip after sort")
    g.click(1)
    check(model_get(page, "fm", "selected_channel") == 4, "click must select channel, not position")
    page.wait_for_function(
        "() => document.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles')"
        ".dataset.selected === '4'"
    )

    # --- Python-side changes ----------------------------------------------------------------
    kernel_set(page, "fm", "sort_by", "max")
    g = wait_draw(page, fm_root, g.draws)
    check(g.order == order_by(FM_MAX), f"max order {g.order}")
    check(page.input_value(f"{fm_root} select.cnnviz-sort") == "max", "select not synced")

    kernel_set(page, "fm", "input_png", page.evaluate("new DataView(new ArrayBuffer(0))"))
    page.wait_for_function(
        "() => document.querySelector('.cnnviz-feature-maps canvas.cnnviz-input')"
        ".style.display === 'none'"
    )

    # two atlas changes in a row: the second must win
    draws = g.draws
    page.evaluate(
        """async () => {
            const m = harness.models.fm;
            const mk = (salt) =>
                harness.makeAtlas({n: 10, tileH: 6, tileW: 8, rows: 3, cols: 4, salt});
            const [a, b] = await Promise.all([mk(50), mk(100)]);
            m.kernelSet("atlas_png", harness.asDataView(a));
            m.kernelSet("atlas_png", harness.asDataView(b));
        }"""
    )
    page.wait_for_timeout(200)
    g = Grid(page, fm_root)
    check(
        g.draws == draws + 1,
        f"expected one redraw for two quick atlas changes, got {g.draws - draws}",
    )
    salted = page.evaluate("() => Array.from({length: 10}, (_, t) => harness.tileColor(t, 100))")
    for p, t in enumerate(g.order):
        check(g.pixel(*g.center(p)) == [*salted[t], 255], f"new atlas tile at position {p}")

    # --- FilterGrid, rgb mode -------------------------------------------------------------------
    rgb_root = "#filter-grid-rgb .cnnviz-filter-grid"
    g = wait_draw(page, rgb_root)
    check((g.n, g.scale, g.cols) == (8, 8, 4), f"rgb grid attrs {g.attrs}")
    check(page.eval_on_selector(g.sel, "c => harness.distinctColors(c)") >= 8, "blank rgb grid")
    check(g.hover(6) == "filter 6", "rgb tooltip")
    g.click(6)
    check(model_get(page, "fgRgb", "selected_filter") == 6, "rgb selected_filter")
    check(
        page.locator(f"{rgb_root} .cnnviz-caption").inner_text().startswith("conv1 · 8 filters"),
        "rgb caption",
    )

    # --- FilterGrid, channels mode ----------------------------------------------------------
    ch_root = "#filter-grid-channels .cnnviz-filter-grid"
    g = wait_draw(page, ch_root)
    check((g.n, g.scale, g.cols) == (12, 8, 3), f"channels grid attrs {g.attrs}")
    check(g.attrs.get("selected") == "3,4,5", f"initial selected row {g.attrs.get('selected')}")
    check(g.hover(4) == "filter 1 · input channel 1", "channels tooltip")
    check(g.hover(11) == "filter 3 · input channel 2", "channels tooltip, last tile")
    g.click(7)
    check(model_get(page, "fgChannels", "selected_filter") == 2, "channels selected_filter")
    page.wait_for_function(
        "() => document.querySelector('#filter-grid-channels canvas.cnnviz-tiles')"
        ".dataset.selected === '6,7,8'"
    )

    # --- big grid: speed, hover without redraw --------------------------------------------------
    big_root = "#filter-grid-big .cnnviz-filter-grid"
    g = wait_draw(page, big_root)
    check(g.n == 512 and g.cols == 16, f"big grid attrs {g.attrs}")
    redraw_ms = page.evaluate(
        """async () => {
            const c = document.querySelector('#filter-grid-big canvas.cnnviz-tiles');
            const before = Number(c.dataset.drawCount);
            const t0 = performance.now();
            harness.models.fgBig.kernelSet("tile_px", 30);
            while (Number(c.dataset.drawCount) === before) await new Promise(r => setTimeout(r, 0));
            return performance.now() - t0;
        }"""
    )
    check(redraw_ms < 1000, f"512-tile redraw took {redraw_ms:.0f} ms")
    notes.append(f"512-tile redraw {redraw_ms:.1f} ms")
    g = Grid(page, big_root)
    page.locator(g.sel).scroll_into_view_if_needed()
    for p in range(0, 64, 3):
        page.mouse.move(*g.page_point(p))
    check(g.hover(17) == "filter 1 · input channel 1", "big grid tooltip")
    check(Grid(page, big_root).draws == g.draws, "hover redrew the big grid")

    # --- OcclusionMap ----------------------------------------------------------------------
    run_occlusion_checks(page, notes)

    # --- TopPatches ------------------------------------------------------------------------
    run_top_patches_checks(page, notes)

    # --- EmbeddingExplorer -----------------------------------------------------------------
    run_embedding_checks(page, notes)

    # --- cleanup ---------------------------------------------------------------------------
    left = page.evaluate(
        """() => {
            window.occCanvas = document.querySelector('.cnnviz-occlusion canvas.cnnviz-heatmap');
            window.tpHeader = document.querySelector('.cnnviz-top-patches .cnnviz-channel');
            window.tpNext = document.querySelector('.cnnviz-top-patches button.cnnviz-next');
            window.tpLayer = document.querySelector('.cnnviz-top-patches select.cnnviz-layer');
            window.eeCanvas = document.querySelector('.cnnviz-embedding canvas.cnnviz-scatter');
            window.eeLegend = document.querySelector('.cnnviz-embedding .cnnviz-legend-item');
            for (const f of Object.values(harness.cleanups)) f();
            return Object.values(harness.models).map(m => m.listenerCount());
        }"""
    )
    check(left == [0, 0, 0, 0, 0, 0, 0], f"listeners left after cleanup: {left}")
    check(
        page.locator(
            ".cnnviz-feature-maps, .cnnviz-filter-grid, .cnnviz-occlusion, .cnnviz-top-patches,"
            " .cnnviz-embedding"
        ).count()
        == 0,
        "DOM not removed",
    )
    # clicks and changes on the detached TopPatches controls must reach no listener
    tp_after = page.evaluate(
        """() => {
            const m = harness.models.tp;
            const before = m.saves;
            window.tpHeader.click();
            window.tpNext.disabled = false;
            window.tpNext.click();
            window.tpLayer.value = 'layer4';
            window.tpLayer.dispatchEvent(new Event('change'));
            return [m.saves - before, m.get('page'), m.get('layer'), m.get('selected_channel')];
        }"""
    )
    check(tp_after == [0, 1, "layer2", 3], f"TopPatches listeners still attached: {tp_after}")
    # a pointer event on the detached heatmap must find no listener (it would set data-hover)
    hover = page.evaluate(
        """() => {
            const c = window.occCanvas;
            c.dispatchEvent(new PointerEvent('pointermove', {clientX: 100, clientY: 100}));
            return c.dataset.hover;
        }"""
    )
    check(not hover, f"heatmap pointer listener still attached (hover {hover!r})")
    # the detached EmbeddingExplorer: no draws, no model writes, no errors
    ee_after = page.evaluate(
        """async () => {
            const m = harness.models.ee;
            const before = [m.saves, window.eeCanvas.dataset.drawCount];
            window.eeLegend.click();
            window.eeCanvas.dispatchEvent(new MouseEvent('mousedown', {buttons: 1}));
            window.dispatchEvent(new MouseEvent('mousemove', {clientX: 10, clientY: 10}));
            window.dispatchEvent(new MouseEvent('mouseup'));
            m.kernelSet('selected_index', 3);
            m.kernelSet('layout', 'grid');
            await new Promise(r => setTimeout(r, 100));
            return [m.saves - before[0], window.eeCanvas.dataset.drawCount === before[1]];
        }"""
    )
    check(ee_after == [0, True], f"EmbeddingExplorer still live after cleanup: {ee_after}")
    draws = page.evaluate("() => window.occCanvas.dataset.drawCount")
    page.evaluate(
        "() => harness.occPushMap(harness.models.occ, {ny: 3, nx: 3, patch: 8, stride: 12,"
        " mapsDone: 9})"
    )
    page.wait_for_timeout(50)
    check(
        page.evaluate("() => window.occCanvas.dataset.drawCount") == draws,
        "heatmap redrawn after cleanup",
    )
    page.wait_for_timeout(100)
    run_shadow_checks(page, notes)
    run_performance_mode_checks(page, notes)
    return notes


def run_shadow_checks(page: Page, notes: list[str]) -> None:
    """A widget rendered before its element joins a shadow root (marimo) still gets its styles
    there: styles in document.head do not reach into a shadow root."""
    page.evaluate("async () => { window.shadowCleanup = await harness.renderInShadow('ee'); }")
    display = """() => {
        const legend = document.querySelector('#shadow-ee').shadowRoot
            .querySelector('.cnnviz-legend');
        return legend ? getComputedStyle(legend).display : null;
    }"""
    try:
        page.wait_for_function(f"() => ({display})() === 'flex'", timeout=5000)
    except Exception:
        check(False, f"legend in a shadow root is unstyled: display {page.evaluate(display)!r}")
    page.evaluate(
        "() => { window.shadowCleanup(); document.querySelector('#shadow-ee').remove(); }"
    )
    notes.append("styles reach a shadow root")


def run_performance_mode_checks(page: Page, notes: list[str]) -> None:
    """The scatter's drawing mode is fixed when it is created: it follows `n_points` (the map's
    final size), not the points there are yet (none, or a preview)."""
    mode = "() => document.querySelector('#variant-ee canvas[data-performance-mode]')"
    for n_points, points, want in ((60_000, 0, "true"), (0, 0, "false"), (49_999, 500, "false")):
        page.evaluate(
            """async ([n, k]) => {
                const xy = new Float32Array(2 * k).map((_, i) => (i % 7) / 7);
                window.variantCleanup = await harness.renderVariant('ee', {
                    n_points: n,
                    points: {dtype: 'float32', shape: [k, 2], buffer: new DataView(xy.buffer)},
                });
            }""",
            [n_points, points],
        )
        got = page.evaluate(f"() => ({mode})()?.dataset.performanceMode ?? null")
        page.evaluate("() => window.variantCleanup()")
        check(got == want, f"n_points {n_points}, {points} points: performance mode {got}")
    notes.append("scatter's drawing mode follows n_points")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--screenshot", type=Path, help="save a screenshot of the dpr=2 page here")
    ap.add_argument("--dpr", type=float, nargs="*", default=[1, 1.5, 2])
    args = ap.parse_args()

    missing = [b for b in BUNDLES if not (STATIC / b).is_file()]
    if missing:
        print(f"missing bundles {missing} in {STATIC}; run `npm run build` in js/", file=sys.stderr)
        return 2

    httpd, base = serve(REPO)
    failures = 0
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for dpr in args.dpr:
                ctx = browser.new_context(
                    device_scale_factor=dpr, viewport={"width": 1000, "height": 900}
                )
                page = ctx.new_page()
                problems: list[str] = []
                page.on(
                    "console",
                    lambda m, problems=problems: (
                        problems.append(f"console.{m.type}: {m.text}")
                        if m.type in ("error", "assert")
                        else None
                    ),
                )
                page.on(
                    "pageerror", lambda e, problems=problems: problems.append(f"pageerror: {e}")
                )
                page.on(
                    "requestfailed",
                    lambda r, problems=problems: problems.append(f"request failed: {r.url}"),
                )

                def only_local(route, problems=problems) -> None:
                    if urlparse(route.request.url).hostname == "127.0.0.1":
                        route.continue_()
                    else:
                        problems.append(f"blocked off-host request {route.request.url}")
                        route.abort()

                page.route("**/*", only_local)
                try:
                    page.goto(f"{base}/js/test/harness.html")
                    page.wait_for_function("() => window.harness", timeout=10000)
                    if args.screenshot and dpr == max(args.dpr):
                        page.wait_for_timeout(100)
                        page.screenshot(path=str(args.screenshot), full_page=True)
                    notes = run_checks(page, dpr)
                    check(not problems, "; ".join(problems))
                    print(f"dpr={dpr}: OK ({'; '.join(notes)})")
                except Exception as e:
                    failures += 1
                    extra = f" [{'; '.join(problems)}]" if problems else ""
                    print(f"dpr={dpr}: FAIL {type(e).__name__}: {e}{extra}")
                finally:
                    ctx.close()
            browser.close()
    finally:
        httpd.shutdown()
    print("harness: " + ("FAILED" if failures else "all checks passed"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
