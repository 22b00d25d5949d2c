"""The occlusion notebook in JupyterLab: the heatmap streams coarse-to-fine in a real browser."""

from __future__ import annotations

import pytest

from ._lab import NON_BLANK, open_and_run_all, rerun_cell

pytestmark = pytest.mark.e2e

# Every completed heatmap draw, with what the progress bar showed at that moment.
RECORD_DRAWS = """
window.__draws = [];
new MutationObserver((records) => {
  for (const r of records) {
    const c = r.target;
    if (!c.classList || !c.classList.contains("cnnviz-heatmap")) continue;
    const root = c.closest(".cnnviz-occlusion");
    window.__draws.push({
      widget: [...document.querySelectorAll(".cnnviz-occlusion")].indexOf(root),
      cells: c.dataset.cells,
      maps: Number(c.dataset.maps),
      progress: root.querySelector("progress.cnnviz-progress").value,
    });
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["data-draw-count"]});
"""

IDLE = """n => {
  const roots = [...document.querySelectorAll(".cnnviz-occlusion")];
  return roots.length === n && roots.every(r => r.dataset.running === "false"
    && Number(r.querySelector("canvas.cnnviz-heatmap").dataset.maps) >= 3);
}"""


def test_heatmap_streams_coarse_to_fine_and_the_class_picker_reaches_the_kernel(lab, page):
    page.add_init_script(RECORD_DRAWS)
    open_and_run_all(page, lab, "04_occlusion.ipynb")
    page.wait_for_function(IDLE, arg=2, timeout=120_000)
    page.locator(".cnnviz-occlusion").nth(0).scroll_into_view_if_needed()
    heatmaps = page.locator("canvas.cnnviz-heatmap")
    assert heatmaps.nth(0).get_attribute("data-cells") == "32,32"  # demo: 32 px, stride 1, centred
    assert (
        heatmaps.nth(1).get_attribute("data-cells") == "14,14"
    )  # ResNet-18: 112 px, stride 8, centred
    for i in range(2):
        assert heatmaps.nth(i).evaluate(NON_BLANK) > 16

    # choose the second-ranked class of the ResNet view: a new run streams in
    page.evaluate("window.__draws = []")
    select = page.locator(".cnnviz-occlusion").nth(1).locator("select.cnnviz-target")
    second = select.locator("option").nth(1).get_attribute("value")
    select.select_option(second)
    page.wait_for_function(
        "() => window.__draws.some(d => d.widget === 1 && d.progress >= 1)", timeout=120_000
    )
    draws = [d for d in page.evaluate("window.__draws") if d["widget"] == 1]
    early = [d for d in draws if d["progress"] < 1 and d["maps"] >= 1]
    assert len({d["cells"] for d in early}) >= 2, f"the map did not stream: {draws}"
    sizes = [int(d["cells"].split(",")[0]) for d in draws if d["maps"] >= 1]
    assert sizes == sorted(sizes), f"maps did not come coarse-to-fine: {draws}"

    out = rerun_cell(page, 3)  # prints the finished map's shape and the kernel's target
    out.filter(has_text=f"(14, 14) target {second}:").wait_for(timeout=60_000)
    assert page.console_errors == []
