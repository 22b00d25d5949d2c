"""Steps the browser tests share: open a notebook in JupyterLab, run it, click and read back."""

from __future__ import annotations

from cnnviz_widgets.demo import load_photos

NON_BLANK = """canvas => {
  const ctx = canvas.getContext("2d");
  const {data} = ctx.getImageData(0, 0, canvas.width, canvas.height);
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) seen.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
  return seen.size;
}"""


# The explorer's t-SNE map has been drawn with `n` points.
# The explorer's map is drawn with all n points and final: the dataset pass and the t-SNE
# (which moves the points while it runs) are done.
SCATTER_DRAWN = """n => {
  const c = document.querySelector('.cnnviz-explorer canvas.cnnviz-scatter');
  const e = c && c.closest('.cnnviz-embedding');
  return Boolean(e) && Number(c.dataset.drawCount) > 0 && c.dataset.points === String(n)
    && e.dataset.running === 'false';
}"""


def quickstart_points() -> int:
    """How many points the quickstart's explorer shows: every photo of `load_photos()`."""
    return len(load_photos()[1])


def open_and_run_all(page, lab, name):
    # A workspace of its own, reset: no tabs restored from an earlier test.
    workspace = name.replace(".", "-")
    page.goto(f"{lab['url']}/lab/workspaces/{workspace}/tree/{name}?reset")
    ready = '.jp-DebuggerBugButton[aria-disabled="false"]'
    dialog = ".jp-Dialog .jp-mod-accept"
    # The kernel is really connected only once the debugger button is enabled (see TESTING.md);
    # JupyterLab may first ask which kernel to start.
    page.wait_for_selector(f"{ready}, {dialog}", timeout=90_000)
    if page.locator(dialog).count():
        page.locator(dialog).click()
        page.wait_for_selector(ready, timeout=90_000)
    page.click('.lm-MenuBar-itemLabel:text-is("Run")')
    page.click('.lm-Menu-itemLabel:text-is("Run All Cells")')


# Every code cell has run: each input prompt holds an execution count, none is queued ("[*]").
ALL_RUN = """() => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')];
  return prompts.length > 0 && prompts.every(p => /\\[\\d+\\]/.test(p.textContent));
}"""


def wait_all_run(page, timeout: float = 300_000) -> None:
    """Wait until Run All has reached the last cell, so a cell run again is not queued behind it."""
    page.wait_for_function(ALL_RUN, timeout=timeout)


def tile_center(canvas, position: int) -> tuple[float, float]:
    """Where display position `position` sits in the canvas, from its data attributes."""
    d = canvas.evaluate("c => ({...c.dataset})")
    gap, scale, cols = int(d["gap"]), int(d["scale"]), int(d["cols"])
    tw, th = int(d["tileW"]) * scale, int(d["tileH"]) * scale
    col, row = position % cols, position // cols
    return gap + col * (tw + gap) + tw / 2, gap + row * (th + gap) + th / 2


def rerun_cell(page, index: int):
    """Run code cell `index` again; returns its output locator."""
    cell = page.locator(".jp-Notebook .jp-CodeCell").nth(index)
    cell.locator(".jp-InputArea-editor").click()
    page.keyboard.press("Shift+Enter")
    return cell.locator(".jp-OutputArea-output")
