"""CNNExplorer responsiveness: from a click on a point to each view drawn, end to end.

    python benchmarks/explorer.py [--clicks 15]                  # browser + kernel, digits demo
    python benchmarks/explorer.py --kernel-only --model resnet18 --device cuda   # on a GPU

Browser mode (the default) starts JupyterLab on 127.0.0.1 and Debian's headless Chromium (the
e2e tests' setup), shows a CNNExplorer on the digits demo, then clicks `--clicks` random points
of the scatter, one at a time, waiting for every view to settle in between. In the page, a
capture-phase `pointerup` listener on the scatter stamps the click and MutationObservers stamp
every feature-map and heatmap draw (all `performance.now()`, one clock), so each figure is
click -> kernel -> views drawn, as a user sees it:
  - feature_maps_ms: the first feature-map draw after the click (target < 150 ms on CPU);
  - first_map_ms: the first (coarsest) occlusion map of the new image drawn (target < 0.5 s);
  - fine_map_ms: the finest map drawn (target < 2 s on CPU).

Kernel-only mode runs no browser: it sets `selected_index` from Python and times the kernel's
part (feature maps computed and sent; the occlusion maps, coarse to fine). With `--model
resnet18` (weights=None, random 224x224 images: speed does not depend on the weights) and
`--device cuda` it gives the GPU figure: the stride-4 map complete (target < 0.3 s).

Prints one JSON line per mode: medians and p90 in ms, with the machine's load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import nbformat
import numpy as np
from playwright.sync_api import TimeoutError

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from selection_latency import lab_page, percentile  # noqa: E402

from tests.e2e._lab import open_and_run_all  # noqa: E402

NOTEBOOK = "explorer_bench.ipynb"
X = ".cnnviz-explorer"
SETUP = """\
from cnnviz_widgets import CNNExplorer
from cnnviz_widgets.demo import load_demo
model, dataset, classes = load_demo(split="test")
explorer = CNNExplorer(model, dataset, classes=classes, progress=False)
explorer
"""
STAMPS = """() => {
  const root = document.querySelector('.cnnviz-explorer');
  const fm = root.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles');
  const heat = root.querySelector('canvas.cnnviz-heatmap');
  const x = (window.__x = { clicks: [], fm: [], heat: [] });
  root.querySelector('canvas.cnnviz-scatter')
    .addEventListener('pointerup', () => x.clicks.push(performance.now()), true);
  new MutationObserver(() => x.fm.push(performance.now()))
    .observe(fm, { attributes: true, attributeFilter: ['data-draw-count'] });
  new MutationObserver(() => x.heat.push([performance.now(), Number(heat.dataset.maps)]))
    .observe(heat, { attributes: true, attributeFilter: ['data-draw-count', 'data-maps'] });
}"""
SETTLED = """([previous, maps]) => {
  const root = document.querySelector('.cnnviz-explorer');
  const occ = root && root.querySelector('.cnnviz-occlusion');
  const heat = occ && occ.querySelector('canvas.cnnviz-heatmap');
  return heat && root.dataset.selectedIndex !== String(previous)
    && occ.dataset.running === 'false' && Number(heat.dataset.maps) >= maps;
}"""


def summary(name: str, values: list[float]) -> dict:
    return {
        f"{name}_median_ms": round(statistics.median(values), 1),
        f"{name}_p90_ms": round(percentile(values, 90), 1),
    }


def machine() -> dict:
    return {
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
    }


def browser(clicks: int, seed: int) -> dict:
    with lab_page("explorer-bench-") as (page, lab, errors):
        record = _clicks(page, lab, clicks, seed)
        if errors:
            record["errors"] = errors[:5]
    return record


def _clicks(page, lab, clicks: int, seed: int) -> dict:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP)])
    nbformat.write(nb, lab["dir"] / NOTEBOOK)
    open_and_run_all(page, lab, NOTEBOOK)
    page.wait_for_function(SETTLED, arg=[-1, 3], timeout=180_000)
    page.locator(f"{X} canvas.cnnviz-scatter").scroll_into_view_if_needed()
    page.evaluate(STAMPS)
    emb = page.locator(f"{X} .cnnviz-embedding")
    fm, first, fine, missed = [], [], [], 0
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(1, 360), clicks, replace=False):
        page.wait_for_timeout(600)  # not a double click (that clears the selection)
        previous = page.locator(X).get_attribute("data-selected-index")
        clicked = len(page.evaluate("() => window.__x.clicks"))
        where = emb.evaluate(f"r => r.cnnvizPointToClient({int(i)})")
        page.mouse.click(where["x"], where["y"])
        try:  # a point under the selected one (overlapping points) changes nothing
            page.wait_for_function(SETTLED, arg=[int(previous), 3], timeout=20_000)
        except TimeoutError:
            missed += 1
            continue
        page.wait_for_timeout(100)  # the last draw's stamp
        x = page.evaluate("() => window.__x")
        if len(x["clicks"]) != clicked + 1:
            raise RuntimeError(f"the click on point {i} did not reach the scatter")
        t = x["clicks"][-1]
        fm.append(min(s for s in x["fm"] if s > t) - t)
        first.append(min(s for s, maps in x["heat"] if s > t and maps >= 1) - t)
        fine.append(min(s for s, maps in x["heat"] if s > t and maps >= 3) - t)
    return {
        "bench": "explorer_browser",
        "model": "digits demo",
        "clicks": len(fm),
        "missed_clicks": missed,
        **summary("feature_maps", fm),
        **summary("first_map", first),
        **summary("fine_map", fine),
        "renderer": "swiftshader",
        **machine(),
    }


def kernel_only(model_name: str, device: str | None, clicks: int, seed: int) -> dict:
    import torch

    from cnnviz_widgets import CNNExplorer
    from cnnviz_widgets.demo import load_demo

    occlusion = None
    if model_name == "demo":
        model, dataset, classes = load_demo(split="test")
    else:
        import torchvision

        model = getattr(torchvision.models, model_name)(weights=None).eval()
        g = torch.Generator().manual_seed(seed)
        images = torch.randn(64, 3, 224, 224, generator=g)
        dataset = torch.utils.data.TensorDataset(images, torch.arange(64) % 10)
        classes = [f"class {c}" for c in range(1000)]
        occlusion = {"stride": 4}
    if device:
        model.to(device)
    explorer = CNNExplorer(
        model, dataset, classes, device=device, progress=False, occlusion=occlusion
    )
    explorer.wait()
    occ = explorer.occlusion
    selected, first, fine = [], [], []
    rng = np.random.default_rng(seed)
    for i in rng.choice(np.arange(1, len(dataset)), clicks, replace=False):
        t = time.perf_counter()
        explorer.selected_index = int(i)
        selected.append(time.perf_counter() - t)  # feature maps, image, top-5: sent
        while not occ.results:
            time.sleep(0.0005)
        first.append(time.perf_counter() - t)
        explorer.wait()
        fine.append(time.perf_counter() - t)
    ms = lambda xs: [1000 * x for x in xs]  # noqa: E731
    return {
        "bench": "explorer_kernel",
        "model": model_name,
        "device": str(device or "cpu"),
        "strides": occ.schedule(),
        "patch": occ.patch_size,
        "clicks": clicks,
        **summary("selection", ms(selected)),
        **summary("first_map", ms(first)),
        **summary("fine_map", ms(fine)),
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        **machine(),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clicks", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--kernel-only", action="store_true", help="no browser: the kernel's part")
    ap.add_argument("--model", default="demo", help="demo, or a torchvision model name")
    ap.add_argument("--device", default=None)
    args = ap.parse_args()
    if args.kernel_only or args.model != "demo":
        print(json.dumps(kernel_only(args.model, args.device, args.clicks, args.seed)))
        return 0
    if not (REPO / "cnnviz_widgets" / "static" / "cnn_explorer.js").is_file():
        print("missing the JS bundle; run `npm run build` in js/", file=sys.stderr)
        return 2
    print(json.dumps(kernel_only("demo", None, args.clicks, args.seed)), flush=True)
    print(json.dumps(browser(args.clicks, args.seed)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
