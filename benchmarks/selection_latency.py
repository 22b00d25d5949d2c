"""EmbeddingExplorer: time from a Python `selected_index` change to the highlight drawn.

    cd js && npm run build && cd .. && python benchmarks/selection_latency.py [--changes 20]
    python benchmarks/selection_latency.py --explorer   # CNNExplorer: until every view follows

With ``--explorer`` the notebook shows a CNNExplorer (PCA map) on the same data, and a change's
latency is until the frame's text of the selected image (``.cnnviz-x-selected``) last changed
for it: the explorer's own `selected_info`, set after the feature maps and the occlusion map
have taken the image, so every view's message has been sent by then (the occlusion map's
streamed stages aside); ``ring_median_ms`` is the map's selection ring, as without it.

End to end through a real JupyterLab kernel: starts JupyterLab on 127.0.0.1 (the e2e tests'
server, ``tests/e2e/conftest.py``) and Debian's headless Chromium, opens a scratch notebook that
shows an EmbeddingExplorer on the digits demo (``load_demo(split="all")``, 1797 points) and
runs it. The notebook's last cell sets ``w.selected_index`` ``--changes`` times (a random image
other than the current one, ``--pause`` seconds apart), recording ``time.time()`` just before
each assignment. Run All runs it once as a warm-up (often before the map is drawn); once the map
is drawn the benchmark runs that cell again and reports that run.

The browser side: the view stamps ``data-ring-index`` and ``data-ring-drawn-at`` on its scatter
canvas when it first draws the selection ring of a newly selected image
(``performance.timeOrigin + performance.now()``, ms since the epoch); a MutationObserver in the
page keeps every stamp. The latency of a change is its first stamp for that index minus the
kernel's ``time.time()``: kernel trait change -> comm message -> jupyter_server -> websocket ->
JupyterLab's widget manager -> the model's change event -> the overlay redraw in the next
animation frame. Not included: the compositor putting that frame on screen (at most one more
frame). ``arrival_median_ms`` is the median time until the change reached the view (the page's
MutationObserver sees the view's ``data-selected`` change): the rest is waiting for the next
animation frame and drawing. Both clocks are this machine's wall clock; ``clock_offset_ms`` is
the page's clock minus Python's, measured around a round trip (``clock_uncertainty_ms``), and is
not subtracted.

Prints one JSON line: {"bench": "selection_latency", "median_ms": ..., "p90_ms": ..., ...}.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import nbformat

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.e2e import conftest  # noqa: E402
from tests.e2e._lab import open_and_run_all, rerun_cell  # noqa: E402

if TYPE_CHECKING:
    from playwright.sync_api import Page

NOTEBOOK = "selection_latency.ipynb"
SCATTER = ".cnnviz-embedding canvas.cnnviz-scatter"
MEASURE = """\
import json
import random
import time

rng = random.Random(runs)
runs += 1
stamps = []
for _ in range({changes}):
    i = w.selected_index
    while i == w.selected_index:
        i = rng.randrange(len(w))
    time.sleep({pause})
    t = time.time()
    w.selected_index = i
    stamps.append([i, t])
print(f"run {{runs}}: " + json.dumps(stamps))
"""
SETUP = """\
from cnnviz_widgets import EmbeddingExplorer
from cnnviz_widgets.demo import load_demo

model, dataset, classes = load_demo(split="all")
w = EmbeddingExplorer(model, dataset, classes)
runs = 0
w
"""
EXPLORER = """\
from cnnviz_widgets import CNNExplorer
from cnnviz_widgets.demo import load_demo

model, dataset, classes = load_demo(split="all")
w = CNNExplorer(model, dataset, classes, method="pca")
w.wait()
runs = 0
len(dataset)
w
"""
# the explorer's frame: each text of the selected image's line, with its time
FRAME = """() => {
  window.frameStamps = [];
  const line = document.querySelector('.cnnviz-explorer .cnnviz-x-selected');
  new MutationObserver(() => {
    const m = /^image (\\d+)/.exec(line.textContent);
    if (m) window.frameStamps.push([Number(m[1]), performance.timeOrigin + performance.now()]);
  }).observe(line, { childList: true, characterData: true, subtree: true });
}"""
COLLECT = """sel => {
  const canvas = document.querySelector(sel);
  const ds = canvas.dataset;
  window.ringStamps = [];
  window.changeStamps = [];
  new MutationObserver((records) => {
    const now = performance.timeOrigin + performance.now();
    for (const r of records) {
      if (r.attributeName === "data-selected") {
        window.changeStamps.push([Number(ds.selected), now]);
      } else {
        window.ringStamps.push([Number(ds.ringIndex), Number(ds.ringDrawnAt)]);
      }
    }
  }).observe(canvas, {
    attributes: true, attributeFilter: ["data-selected", "data-ring-drawn-at"]
  });
}"""


class _TmpDirs:
    """What the `lab` fixture asks of pytest's tmp_path_factory."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def mktemp(self, name: str) -> Path:
        return Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))


@contextlib.contextmanager
def lab_page(prefix: str) -> Iterator[tuple[Page, dict, list[str]]]:
    """JupyterLab (the e2e tests' `lab` server, scratch copy of notebooks/) and a page of
    headless Chromium: yields (page, lab {"url", "dir"}, the page's console and page errors).
    The kernels, the browser and the server are stopped on exit."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        server = conftest.lab.__wrapped__(_TmpDirs(Path(tmp)))
        lab = next(server)
        try:
            with sync_playwright() as pw:
                context = pw.chromium.launch_persistent_context(
                    str(Path(tmp) / "profile"),
                    executable_path=conftest.chromium_path(),
                    headless=True,
                    args=conftest.CHROMIUM_FLAGS,
                    viewport={"width": 1400, "height": 1000},
                )
                try:
                    page = context.new_page()
                    errors: list[str] = []
                    page.on("console", lambda m: m.type == "error" and errors.append(m.text))
                    page.on("pageerror", lambda e: errors.append(str(e)))
                    yield page, lab, errors
                finally:
                    context.close()
        finally:
            next(server, None)  # stops the kernels and the server


def percentile(xs: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    s = sorted(xs)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def clock_offset(page) -> tuple[float, float]:
    """The page's clock minus Python's (ms), and half the round trip it was measured in."""
    best = None
    for _ in range(5):
        before = time.time()
        js = page.evaluate("() => performance.timeOrigin + performance.now()")
        after = time.time()
        sample = (js - 500 * (before + after), 500 * (after - before))
        if best is None or sample[1] < best[1]:
            best = sample
    return best


def match(kernel: list[list[float]], browser: list[list[float]]) -> list[float | None]:
    """For each kernel change [i, t s], ms until the first ring stamp of i drawn after t."""
    out: list[float | None] = []
    for i, t in kernel:
        later = [ms - 1000 * t for j, ms in browser if j == i and ms >= 1000 * t - 5]
        out.append(min(later) if later else None)
    return out


def settled(kernel: list[list[float]], stamps: list[list[float]]) -> list[float | None]:
    """For each kernel change [i, t s], ms until the LAST stamp of i before the next change."""
    out: list[float | None] = []
    for n, (i, t) in enumerate(kernel):
        end = 1000 * kernel[n + 1][1] if n + 1 < len(kernel) else float("inf")
        times = [ms - 1000 * t for j, ms in stamps if j == i and 1000 * t - 5 <= ms < end]
        out.append(max(times) if times else None)
    return out


def measure(page, lab, changes: int, pause: float, explorer: bool = False) -> dict:
    cells = [EXPLORER if explorer else SETUP, MEASURE.format(changes=changes, pause=pause)]
    if explorer:
        cells[1] = cells[1].replace("len(w)", "len(dataset)")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nbformat.write(nb, lab["dir"] / NOTEBOOK)
    open_and_run_all(page, lab, NOTEBOOK)
    page.wait_for_function(
        f"() => {{ const c = document.querySelector('{SCATTER}');"
        " return c && Number(c.dataset.drawCount) > 0 && c.dataset.points === '1797'; }",
        timeout=180_000,
    )
    out = page.locator(".jp-Notebook .jp-CodeCell").nth(1).locator(".jp-OutputArea-output")
    out.filter(has_text="run 1:").wait_for(timeout=120_000)  # the warm-up of Run All
    page.locator(SCATTER).scroll_into_view_if_needed()
    page.evaluate(COLLECT, SCATTER)
    if explorer:
        page.evaluate(FRAME)
    offset, uncertainty = clock_offset(page)
    out = rerun_cell(page, 1)
    out.filter(has_text="run 2:").wait_for(timeout=60_000 + 2000 * changes * pause)
    kernel = json.loads(re.search(r"run 2: (\[.*\])", out.inner_text()).group(1))
    page.wait_for_timeout(500)  # the last ring
    browser = page.evaluate("() => window.ringStamps")
    lat = match(kernel, browser)
    ring = [x for x in lat if x is not None]
    if explorer:
        lat = settled(kernel, page.evaluate("() => window.frameStamps"))
    got = [x for x in lat if x is not None]
    if not got:
        raise RuntimeError(f"no ring drawn for any change; browser stamps: {browser[:5]}")
    arrived = [
        x for x in match(kernel, page.evaluate("() => window.changeStamps")) if x is not None
    ]
    return {
        "bench": "selection_latency_explorer" if explorer else "selection_latency",
        "ring_median_ms": round(statistics.median(ring), 2) if ring else None,
        "points": 1797,
        "changes": len(kernel),
        "drawn": len(got),
        "median_ms": round(statistics.median(got), 2),
        "p90_ms": round(percentile(got, 90), 2),
        "min_ms": round(min(got), 2),
        "max_ms": round(max(got), 2),
        "latencies_ms": [None if x is None else round(x, 2) for x in lat],
        "arrival_median_ms": round(statistics.median(arrived), 2) if arrived else None,
        "clock_offset_ms": round(offset, 2),
        "clock_uncertainty_ms": round(uncertainty, 2),
        "pause_s": pause,
        "renderer": "swiftshader",
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20)
    ap.add_argument("--pause", type=float, default=0.3, help="seconds between changes")
    ap.add_argument("--explorer", action="store_true", help="CNNExplorer: until every view follows")
    args = ap.parse_args()
    if not (REPO / "cnnviz_widgets" / "static" / "embedding_explorer.js").is_file():
        print("missing the JS bundle; run `npm run build` in js/", file=sys.stderr)
        return 2

    with lab_page("selection-latency-") as (page, lab, errors):
        record = measure(page, lab, args.changes, args.pause, args.explorer)
        if errors:
            record["errors"] = errors[:5]
    print(json.dumps(record), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
