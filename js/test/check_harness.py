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
import os
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
STATIC = REPO / "cnnviz_widgets" / "static"
BUNDLES = ("filter_grid.js", "feature_maps.js")
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")

# Mirrors the fixtures in harness.js.
FM_MEAN = [0.5, 0.1, 0.9, 0.3, 0.9, 0.0, 0.7, 0.2, 0.4, 0.6]
FM_MAX = [1.23456, 2.5, 0.75, 3.14678, 0.1, 5.0, 1.0, 2.0, 0.456789, 4.0]
ORANGE = [0xFF, 0x7F, 0x0E, 255]


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

    # --- cleanup ---------------------------------------------------------------------------
    left = page.evaluate(
        """() => {
            for (const f of Object.values(harness.cleanups)) f();
            return Object.values(harness.models).map(m => m.listenerCount());
        }"""
    )
    check(left == [0, 0, 0, 0], f"listeners left after cleanup: {left}")
    check(page.locator(".cnnviz-feature-maps, .cnnviz-filter-grid").count() == 0, "DOM not removed")
    page.wait_for_timeout(100)
    return notes


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
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--headless"]
            )
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
