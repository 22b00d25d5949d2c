"""EmbeddingExplorer frame rate: pan/zoom the WebGL map of N points in headless Chromium.

    cd js && npm run build && cd .. && python benchmarks/scatter_fps.py [--points 100000 1000000]
        [--repeat 3]

For each N, a fresh page renders the built bundle (cnnviz_widgets/static/embedding_explorer.js)
against an in-page fake model holding N random clustered points (10 Gaussian clusters, one
class each), waits for the first draw, then for ``--seconds`` moves the camera every animation
frame through regl-scatterplot's own API (``scatterplot.view(matrix)``: a zoom between 1x and
4x while panning around a circle) and records the time of every frame the library draws (its
synchronous ``drawing`` event). Prints one JSON line per N:

    {"bench": "scatter_fps", "points": N, "fps_median": ..., "frames": ..., "seconds": ...,
     "renderer": "swiftshader", ...}

``fps_median`` is 1 / the median time between drawn frames; ``fps_mean`` is frames / seconds;
``setup_s`` is the time from render() to the first draw (decoding, spatial index, upload);
``load_avg_1m`` is the machine's load when the run ended. ``--repeat`` runs each N that many
times (a fresh page each), one line per run: other work on the machine moves these figures a
lot, so compare medians of runs made together.

WebGL here is SwiftShader, a software renderer (``--use-angle=swiftshader
--enable-unsafe-swiftshader``), on this machine's CPU cores: a floor for what a real GPU does.
The page is 900 x 480 CSS px at devicePixelRatio 1; only 127.0.0.1 is reachable from it.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import itertools
import json
import os
import platform
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

from playwright.sync_api import sync_playwright

REPO = Path(__file__).resolve().parents[1]
BUNDLE = REPO / "cnnviz_widgets" / "static" / "embedding_explorer.js"
sys.path.insert(0, str(REPO))

from tests.e2e.conftest import CHROMIUM_FLAGS, chromium_path  # noqa: E402

WIDTH, HEIGHT = 900, 480

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>scatter fps</title></head>
<body style="margin: 0"><div id="host" style="width: %(width)dpx"></div>
<script type="module">
class FakeModel {
  constructor(state) { this.state = state; this.listeners = new Map(); }
  get(name) { return this.state[name]; }
  set(name, value) { this.state[name] = value; }
  save_changes() {}
  on(event, cb) {
    if (!this.listeners.has(event)) this.listeners.set(event, new Set());
    this.listeners.get(event).add(cb);
  }
  off(event, cb) { this.listeners.get(event)?.delete(cb); }
}

function lcg(seed) {
  let s = seed >>> 0;
  return () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return (s + 0.5) / 4294967296; };
}

/** N points in 10 Gaussian clusters inside [-1, 1]; label = cluster. */
function clustered(n) {
  const rand = lcg(12345);
  const k = 10;
  const cx = [], cy = [], sd = [];
  for (let c = 0; c < k; c++) {
    cx.push(-0.7 + 1.4 * rand()); cy.push(-0.7 + 1.4 * rand()); sd.push(0.04 + 0.08 * rand());
  }
  const xy = new Float32Array(2 * n);
  const labels = new Int32Array(n);
  const conf = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const c = i %% k;
    const r = Math.sqrt(-2 * Math.log(rand()));
    const a = 2 * Math.PI * rand();
    xy[2 * i] = Math.max(-1, Math.min(1, cx[c] + sd[c] * r * Math.cos(a)));
    xy[2 * i + 1] = Math.max(-1, Math.min(1, cy[c] + sd[c] * r * Math.sin(a)));
    labels[i] = c;
    conf[i] = 0.5 + 0.5 * rand();
  }
  return { xy, labels, conf };
}

window.runBench = async (n, seconds) => {
  const mod = await import("/cnnviz_widgets/static/embedding_explorer.js");
  const { xy, labels, conf } = clustered(n);
  // the array codec's values, as Python sends them (cnnviz_widgets/widgets/_array.py)
  const arr = (dtype, a, shape = [a.length]) => ({ dtype, shape, buffer: new DataView(a.buffer) });
  const empty = arr("int32", new Int32Array(0));
  const model = new FakeModel({
    points: arr("float32", xy, [n, 2]), grid_points: arr("float32", new Float32Array(0), [0, 2]),
    arrangement: "scatter",
    labels: arr("int32", labels), predictions: arr("int32", labels),
    confidences: arr("float32", conf),
    class_names: Array.from({ length: 10 }, (_, c) => `class ${c}`),
    class_colors: ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                   "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"],
    hidden_classes: [], highlight_misclassified: false, thumb_pages: [], thumb_shape: [0, 0],
    thumb_cols: 1, thumbs_per_page: 1, show_thumbnails: false, selected_index: -1,
    selected_indices: empty, neighbours: empty,
    neighbour_distances: arr("float32", new Float32Array(0)),
    caption: `${n} points`, status: "", progress: 1, running: false, view_px: %(height)d,
  });
  const host = document.getElementById("host");
  const t0 = performance.now();
  const cleanup = await mod.default.render({ model, el: host });
  const root = host.querySelector(".cnnviz-embedding");
  const canvas = root.querySelector("canvas.cnnviz-scatter");
  const error = root.querySelector(".cnnviz-error").textContent;
  if (error) throw new Error(error);
  while (!(Number(canvas.dataset.drawCount) > 0 && canvas.dataset.points === String(n))) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const setup = (performance.now() - t0) / 1000;
  const sp = root.cnnvizScatterplot;
  const gl = document.createElement("canvas").getContext("webgl");
  const info = gl && gl.getExtension("WEBGL_debug_renderer_info");
  const glRenderer = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : "";

  const stamps = [];
  const sub = sp.subscribe("drawing", () => stamps.push(performance.now()));
  const start = performance.now();
  await new Promise((resolve) => {
    const step = (now) => {
      const t = (now - start) / 1000;
      if (t >= seconds) { resolve(); return; }
      // zoom 1x..4x while the target circles the origin
      const s = 2.5 - 1.5 * Math.cos(1.3 * t);
      const tx = -0.3 * Math.cos(0.9 * t) * s;
      const ty = -0.3 * Math.sin(0.9 * t) * s;
      sp.view([s, 0, 0, 0, 0, s, 0, 0, 0, 0, 1, 0, tx, ty, 0, 1]);
      requestAnimationFrame(step);
    };
    requestAnimationFrame(step);
  });
  const end = performance.now();
  sp.unsubscribe(sub);
  cleanup();
  return { setup, stamps, elapsed: (end - start) / 1000, glRenderer };
};
window.benchReady = true;
</script></body></html>
"""


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def median(xs: list[float]) -> float:
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--repeat", type=int, default=1, help="runs per N")
    args = ap.parse_args()
    if not BUNDLE.is_file():
        print(f"missing {BUNDLE}; run `npm run build` in js/", file=sys.stderr)
        return 2

    handler = functools.partial(QuietHandler, directory=str(REPO))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    html = PAGE % {"width": WIDTH, "height": HEIGHT}
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
            for n in [n for n in args.points for _ in range(args.repeat)]:
                ctx = browser.new_context(
                    device_scale_factor=1, viewport={"width": WIDTH + 100, "height": 800}
                )
                page = ctx.new_page()
                errors: list[str] = []
                page.on(
                    "console",
                    lambda m, errors=errors: (
                        errors.append(m.text) if m.type in ("error", "assert") else None
                    ),
                )
                page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))

                def route(r, errors=errors) -> None:
                    url = urlparse(r.request.url)
                    if url.hostname != "127.0.0.1":
                        errors.append(f"blocked {r.request.url}")
                        r.abort()
                    elif url.path == "/scatter_fps.html":
                        r.fulfill(status=200, content_type="text/html", body=html)
                    else:
                        r.continue_()

                page.route("**/*", route)
                page.goto(f"{base}/scatter_fps.html")
                page.wait_for_function("() => window.benchReady === true")
                res = page.evaluate("([n, s]) => window.runBench(n, s)", [n, args.seconds])
                stamps = res["stamps"]
                gaps = [b - a for a, b in itertools.pairwise(stamps) if b > a]
                record = {
                    "bench": "scatter_fps",
                    "points": n,
                    "fps_median": round(1000 / median(gaps), 2) if gaps else 0.0,
                    "fps_mean": round(len(stamps) / res["elapsed"], 2),
                    "frames": len(stamps),
                    "seconds": round(res["elapsed"], 3),
                    "setup_s": round(res["setup"], 3),
                    "renderer": "swiftshader",
                    "gl_renderer": res["glRenderer"],
                    "viewport": [WIDTH, HEIGHT],
                    "dpr": 1,
                    "load_avg_1m": round(os.getloadavg()[0], 2),
                    "cpus": os.cpu_count(),
                    "machine": platform.machine(),
                }
                if errors:
                    record["errors"] = errors[:5]
                print(json.dumps(record), flush=True)
                ctx.close()
            browser.close()
    finally:
        httpd.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
