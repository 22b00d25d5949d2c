"""Steps the marimo and Voila tests share: a server run as a subprocess on 127.0.0.1, a Chromium
page that fails on console errors and on any request leaving the machine, and the checks of
CNNExplorer's layout and linked views. Every check runs on the explorer's own element, so it
works the same in a document (Voila) and inside the open shadow root marimo renders into."""

from __future__ import annotations

import contextlib
import importlib
import itertools
import os
import pathlib
import re
import subprocess
import time

import numpy as np
import pytest
import torch

from ._lab import NON_BLANK
from .conftest import ARTIFACTS, CHROMIUM_FLAGS, _free_port, chromium_path, stop, wait_until_up

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
except ImportError:  # the browser() fixture says what is missing
    PlaywrightTimeout = TimeoutError

APPS = pathlib.Path(__file__).with_name("apps")
# How many digits (the first of the demo's test split) the apps show; they read it from here.
IMAGES_ENV = "CNNVIZ_APP_IMAGES"
N_IMAGES = 300
X = ".cnnviz-explorer"


def need(module: str) -> None:
    """Skip (or fail under CI=true) when `module` cannot be imported."""
    try:
        importlib.import_module(module)
    except ImportError as e:
        why = f"{module} is not installed ({e}); `pip install -e .[test]` installs it"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why} (a browser test may not be skipped in CI)")
        pytest.skip(why)


def app_env(home: pathlib.Path) -> dict[str, str]:
    """The environment of a server: its own HOME, XDG and Jupyter folders under `home`, the
    notebooks' offline switch, and the number of images the apps show."""
    env = dict(os.environ)
    env["CNNVIZ_OFFLINE"] = "1"
    env[IMAGES_ENV] = str(N_IMAGES)
    env["MARIMO_SKIP_UPDATE_CHECK"] = "1"
    for var, sub in [
        ("HOME", "home"),
        ("XDG_CONFIG_HOME", "home/.config"),
        ("XDG_CACHE_HOME", "home/.cache"),
        ("XDG_DATA_HOME", "home/.local/share"),
        ("XDG_STATE_HOME", "home/.local/state"),
        ("JUPYTER_CONFIG_DIR", "jupyter/config"),
        ("JUPYTER_DATA_DIR", "jupyter/data"),
        ("JUPYTER_RUNTIME_DIR", "jupyter/runtime"),
        ("IPYTHONDIR", "ipython"),
    ]:
        env[var] = str(home / sub)
        (home / sub).mkdir(parents=True, exist_ok=True)
    return env


class Server:
    """A server process and its log."""

    def __init__(self, url: str, log: pathlib.Path):
        self.url = url
        self.log = log

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, n: int = 4000) -> str:
        return f"--- {self.log} ---\n{self.log_text()[-n:]}"


@contextlib.contextmanager
def serve(home: pathlib.Path, argv: list[str], ready: str, timeout: float = 90):
    """Run `argv` (with "{port}" replaced by a free port) until `ready` (a path) answers 200;
    yield a Server; then end the process (SIGTERM, then SIGKILL)."""
    chromium_path()  # no server without a browser to drive it
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = home / "server.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [a.replace("{port}", str(port)) for a in argv],
        env=app_env(home),
        cwd=home,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server(url, log_path)
    try:
        wait_until_up(f"{url}{ready}", proc, timeout, str(argv[:3]), log_path)
        yield server
    finally:
        stop(proc, 30)
        log.close()


@contextlib.contextmanager
def browser(profile: pathlib.Path, request, stub_css: tuple[str, ...] = ()):
    """A Chromium page. The test fails on a console error, a page error, a failed request or a
    request for anything but 127.0.0.1: such requests are aborted (nothing leaves the machine),
    except those matching a `stub_css` pattern, answered with an empty stylesheet. Saves a
    full-page screenshot under test-artifacts/ when the test fails."""
    from playwright.sync_api import sync_playwright

    problems: list[str] = []
    local = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)[:/]|^(data|blob):")
    stubs = [re.compile(p) for p in stub_css]

    def outside(route):
        url = route.request.url
        if any(p.search(url) for p in stubs):
            route.fulfill(status=200, content_type="text/css", body="")
        else:
            problems.append(f"request leaving the machine: {url}")
            route.abort()

    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile),
            executable_path=chromium_path(),
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": 1400, "height": 1000},
        )
        context.route(lambda url: not local.search(url), outside)
        page = context.new_page()
        page.on("console", lambda m: m.type == "error" and problems.append(f"console: {m.text}"))
        page.on("pageerror", lambda e: problems.append(f"pageerror: {e}\n{e.stack}"))
        page.on(
            "requestfailed",
            lambda r: (
                not r.url.startswith("ws")
                and problems.append(f"request failed: {r.url} {r.failure}")
            ),
        )
        page.problems = problems
        try:
            yield page
        except BaseException:
            ARTIFACTS.mkdir(exist_ok=True)
            shot = ARTIFACTS / f"{request.node.name}.png"
            page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot: {shot}")
            raise
        finally:
            context.close()


# --- what the explorer should show, computed here with torch ----------------------------------


class Expected:
    """The apps' model and images, and what the views should show for image i, computed
    directly with torch (not through cnnviz_widgets' own inspection code)."""

    def __init__(self):
        from cnnviz_widgets.demo import load_demo

        self.model, digits, self.classes = load_demo(split="test")
        self.images = torch.utils.data.Subset(digits, range(N_IMAGES))
        xs = torch.stack([self.images[i][0] for i in range(N_IMAGES)])
        self.labels = [int(self.images[i][1]) for i in range(N_IMAGES)]
        maps = []
        hook = self.model.relu2.register_forward_hook(lambda m, i, o: maps.append(o.clone()))
        with torch.no_grad():
            self.probs = torch.softmax(self.model(xs), dim=1).numpy()
        hook.remove()
        self.relu2 = maps[0].numpy()  # (N, channels, h, w): the apps' post-activation layer

    def predicted(self, i: int) -> int:
        return int(self.probs[i].argmax())

    def top5(self, i: int) -> list[str]:
        return [self.classes[c] for c in np.argsort(-self.probs[i], kind="stable")[:5]]


# --- the page ---------------------------------------------------------------------------------


def explorer(page, server: Server, timeout: float = 150_000):
    """The explorer's element, once its map shows every image and its panels are done."""
    deadline = time.monotonic() + timeout / 1000
    loc = page.locator(X)
    while not loc.count():  # (marimo's app page shows no error of a cell: its log does)
        failed = "Traceback" in server.log_text()
        assert not failed and time.monotonic() < deadline, f"no {X} on the page\n{server.tail()}"
        page.wait_for_timeout(250)
    handle = loc.element_handle()
    left = max(1000, (deadline - time.monotonic()) * 1e3)
    try:
        page.wait_for_function(SETTLED, arg=[handle, -1, N_IMAGES], timeout=left)
    except PlaywrightTimeout:
        raise AssertionError(f"the explorer did not settle: {state(handle)}") from None
    return handle


def state(x) -> dict:
    """What SETTLED looks at, for a failure message."""
    return x.evaluate(
        """x => ({index: x.dataset.selectedIndex, ...Object.fromEntries([
      ['scatter', '.cnnviz-embedding canvas.cnnviz-scatter'], ['embedding', '.cnnviz-embedding'],
      ['occlusion', '.cnnviz-occlusion'], ['heatmap', '.cnnviz-occlusion canvas.cnnviz-heatmap'],
      ['maps', '.cnnviz-feature-maps canvas.cnnviz-tiles'], ['patches', '.cnnviz-top-patches'],
    ].map(([k, s]) => { const e = x.querySelector(s); return [k, e && {...e.dataset}]; }))})"""
    )


# The explorer x shows image i (i < 0: any) and its map all n points; no panel is still at work.
SETTLED = """([x, i, n]) => {
  const q = s => x.querySelector(s);
  const scatter = q('.cnnviz-embedding canvas.cnnviz-scatter');
  const heat = q('.cnnviz-occlusion canvas.cnnviz-heatmap');
  const maps = q('.cnnviz-feature-maps canvas.cnnviz-tiles');
  if (!scatter || !heat || !maps || !q('.cnnviz-top-patches')) return false;
  const done = s => q(s).dataset.running === 'false';
  return (i < 0 || x.dataset.selectedIndex === String(i)) && scatter.dataset.points === String(n)
    && Number(scatter.dataset.drawCount) > 0 && Number(maps.dataset.drawCount) > 0
    && done('.cnnviz-embedding') && done('.cnnviz-occlusion') && done('.cnnviz-top-patches')
    && Number(heat.dataset.maps) >= 1;
}"""

LAYOUT = """x => {
  const q = s => x.querySelector(s);
  const box = e => { const r = e.getBoundingClientRect();
    return {x: r.left, y: r.top, right: r.right, bottom: r.bottom, w: r.width, h: r.height}; };
  const style = (s, p) => getComputedStyle(s ? q(s) : x)[p];
  const root = x.getRootNode();
  return {
    shadow: typeof ShadowRoot !== 'undefined' && root instanceof ShadowRoot,
    styles: [...root.querySelectorAll('style[id^="cnnviz-style-"]')].map(s => s.id),
    display: {
      explorer: style(null, 'display'), legend: style('.cnnviz-legend', 'display'),
      strip: style('.cnnviz-neighbours', 'display'), row: style('.cnnviz-x-row', 'display'),
      bars: style('.cnnviz-x-bars', 'display'),
    },
    overlayPosition: style('canvas.cnnviz-scatter-overlay', 'position'),
    scatter: box(q('canvas.cnnviz-scatter')),
    overlay: box(q('canvas.cnnviz-scatter-overlay')),
    legend: box(q('.cnnviz-legend')),
    legendItems: [...x.querySelectorAll('.cnnviz-legend-item')].map(box),
    strip: box(q('.cnnviz-neighbours')),
    neighbours: [...x.querySelectorAll('.cnnviz-neighbour')].map(box),
    card: box(q('.cnnviz-x-card')),
    panels: Object.fromEntries([
      ['image', 'canvas.cnnviz-x-image'], ['maps', '.cnnviz-feature-maps canvas.cnnviz-tiles'],
      ['heatmap', 'canvas.cnnviz-heatmap'], ['patches', '.cnnviz-top-patches canvas.cnnviz-tiles'],
    ].map(([k, s]) => [k, box(q(s))])),
  };
}"""


def _overlap(a: dict, b: dict) -> float:
    w = min(a["right"], b["right"]) - max(a["x"], b["x"])
    h = min(a["bottom"], b["bottom"]) - max(a["y"], b["y"])
    return max(0.0, w) * max(0.0, h)


def check_layout(x, expected: Expected, shadow: bool) -> dict:
    """The explorer's stylesheets reached the node it lives in, and its parts are laid out as
    the stylesheets say: the ring overlay on the scatter, the legend items side by side, the
    neighbour strip a row, the map beside the selected image's card."""
    lay = x.evaluate(LAYOUT)
    assert lay["shadow"] is shadow, f"rendered {'outside' if shadow else 'inside'} a shadow root"
    for sid in ("cnnviz-style-explorer", "cnnviz-style-embedding", "cnnviz-style-feature-maps"):
        assert sid in lay["styles"], f"<style id={sid}> is not where the explorer lives"
    assert lay["display"] == dict.fromkeys(lay["display"], "flex") | {"bars": "grid"}
    assert lay["overlayPosition"] == "absolute"

    scatter, overlay = lay["scatter"], lay["overlay"]
    assert scatter["w"] > 100 and scatter["h"] > 100, scatter
    for k in ("x", "y", "w", "h"):  # the ring overlay lies exactly on the scatter
        assert abs(overlay[k] - scatter[k]) <= 1, (overlay, scatter)

    items = lay["legendItems"]
    assert len(items) == len(set(expected.labels)), items  # one item per class shown
    for i, a in enumerate(items):
        assert a["w"] > 10 and 10 < a["h"] < 40, a  # one line each
        assert all(_overlap(a, b) == 0 for b in items[i + 1 :]), items
    rows = sorted({round(a["y"]) for a in items})
    assert len(rows) <= 2, f"legend items on {len(rows)} rows: {items}"
    assert lay["legend"]["bottom"] <= scatter["y"] + 1  # above the map

    strip = lay["neighbours"]
    assert len(strip) >= 3, strip
    for a, b in itertools.pairwise(strip):  # a row: left to right, bottoms aligned
        assert b["x"] >= a["right"] - 0.5, strip
        assert abs(b["bottom"] - a["bottom"]) <= 1, strip
    assert lay["strip"]["h"] <= max(a["h"] for a in strip) + 12, lay["strip"]
    assert lay["strip"]["y"] >= scatter["bottom"] - 1  # below the map

    assert lay["card"]["x"] >= scatter["right"], (lay["card"], scatter)  # side by side
    assert lay["card"]["y"] < scatter["bottom"]
    for name, b in lay["panels"].items():
        assert b["w"] > 20 and b["h"] > 20, (name, b)
    return lay


def tile_means(x) -> list[float] | None:
    """Mean red value of each feature-map tile as drawn, by channel (None while not drawn)."""
    return x.evaluate(
        """x => {
      const c = x.querySelector('.cnnviz-feature-maps canvas.cnnviz-tiles');
      const d = c.dataset;
      if (!d.order) return null;
      const k = c.width / c.clientWidth;  // canvas px per CSS px
      const [gap, scale, cols] = [Number(d.gap), Number(d.scale), Number(d.cols)];
      const [tw, th] = [Number(d.tileW) * scale, Number(d.tileH) * scale];
      const ctx = c.getContext('2d');
      const means = [];
      d.order.split(',').map(Number).forEach((ch, p) => {
        const x0 = Math.ceil((gap + (p % cols) * (tw + gap)) * k) + 1;
        const y0 = Math.ceil((gap + Math.floor(p / cols) * (th + gap)) * k) + 1;
        const w = Math.floor(tw * k) - 2, h = Math.floor(th * k) - 2;
        if (y0 + h > c.height) return;
        const data = ctx.getImageData(x0, y0, w, h).data;
        let sum = 0;
        for (let i = 0; i < data.length; i += 4) sum += data[i];
        means[ch] = sum / (w * h);
      });
      return means;
    }"""
    )


def shown(x) -> dict:
    return x.evaluate(
        """x => ({
      index: x.dataset.selectedIndex,
      info: x.querySelector('.cnnviz-x-selected').textContent,
      bars: [...x.querySelectorAll('.cnnviz-x-bar-name')].map(e => e.textContent),
      self: x.querySelector('.cnnviz-neighbour-self')?.dataset.index,
      ring: x.querySelector('canvas.cnnviz-scatter').dataset.ringIndex,
      image: (() => { const c = x.querySelector('canvas.cnnviz-x-image');
        const {data} = c.getContext('2d').getImageData(0, 0, c.width, c.height);
        const seen = new Set();
        for (let i = 0; i < data.length; i += 4) seen.add(data[i]);
        return seen.size; })(),
    })"""
    )


def _views_wrong(x, expected: Expected, i: int) -> list[str]:
    got = shown(x)
    wrong = []
    if got["index"] != str(i):
        wrong.append(f"explorer shows image {got['index']}")
    label, pred = expected.classes[expected.labels[i]], expected.classes[expected.predicted(i)]
    for part in (f"image {i}", f"label {label}", f"predicted {pred}"):
        if part not in got["info"]:
            wrong.append(f"{part!r} not in {got['info']!r}")
    if got["bars"] != expected.top5(i):
        wrong.append(f"top classes {got['bars']} != {expected.top5(i)}")
    if got["self"] != str(i) or got["ring"] != str(i):
        wrong.append(f"neighbour strip starts at {got['self']}, ring on {got['ring']}")
    if got["image"] < 4:
        wrong.append("the selected image is blank")
    means = tile_means(x)
    channels = expected.relu2[i].mean(axis=(1, 2))
    drawn = [c for c in range(len(channels)) if means and c < len(means) and means[c] is not None]
    if len(drawn) < 8:
        wrong.append(f"only {len(drawn)} feature maps drawn")
    else:
        r = np.corrcoef([means[c] for c in drawn], channels[drawn])[0, 1]
        if not r > 0.99:  # post-activation tiles, gray from 0: brightness is activation / max
            wrong.append(f"feature maps are not image {i}'s relu2 maps (r={r:.3f})")
    return wrong


def check_views(page, x, expected: Expected, i: int, timeout: float = 30.0) -> None:
    """The explorer shows image i in every view (waits: views decode images asynchronously)."""
    try:
        page.wait_for_function(SETTLED, arg=[x, i, N_IMAGES], timeout=timeout * 1000)
    except PlaywrightTimeout:
        raise AssertionError(f"image {i} not settled after {timeout} s: {state(x)}") from None
    deadline = time.monotonic() + timeout
    while (wrong := _views_wrong(x, expected, i)) and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert not wrong, wrong


def pick_point(page, x, expected: Expected, current: int) -> tuple[int, dict]:
    """A point to click: one with no other point within 12 px on screen, inside the map, whose
    predicted class differs from that of image `current` (so the top classes change)."""
    x.evaluate("x => x.querySelector('canvas.cnnviz-scatter').scrollIntoView({block: 'center'})")
    for _ in range(50):  # the page may still be laying out: two equal reads in a row
        before = x.evaluate(POINTS, N_IMAGES)
        page.wait_for_timeout(100)
        points = x.evaluate(POINTS, N_IMAGES)
        if points == before:
            break
    box = x.evaluate(
        "x => { const r = x.querySelector('canvas.cnnviz-scatter').getBoundingClientRect();"
        " return [r.left, r.top, r.right, r.bottom]; }"
    )
    xy = np.array([p if p else (np.nan, np.nan) for p in points], dtype=float)
    dist = np.linalg.norm(xy[:, None] - xy[None], axis=-1)
    np.fill_diagonal(dist, np.inf)
    for i in np.argsort(-np.nan_to_num(np.nanmin(dist, axis=1), nan=-1)):
        i = int(i)
        inside = box[0] + 10 < xy[i, 0] < box[2] - 10 and box[1] + 10 < xy[i, 1] < box[3] - 30
        if (
            inside
            and i != current
            and expected.predicted(i) != expected.predicted(current)
            and np.nanmin(dist[i]) >= 12
        ):
            where = {"x": float(xy[i, 0]), "y": float(xy[i, 1])}
            hit = x.evaluate(
                "(x, p) => x.getRootNode().elementFromPoint(p.x, p.y)"
                " === x.querySelector('canvas.cnnviz-scatter')",
                where,
            )
            if hit:
                return i, where
    raise AssertionError("no isolated point of another class to click in the map")


# Record the clicks the scatter's canvas gets and the points its scatterplot selects.
LISTEN = """x => { const e = x.querySelector('.cnnviz-embedding');
  const log = x.cnnvizTestLog = [];
  e.querySelector('canvas.cnnviz-scatter').addEventListener('click',
    ev => log.push(`click at ${ev.clientX},${ev.clientY}`));
  e.cnnvizScatterplot.subscribe('select', ev => log.push(`select ${ev.points}`)); }"""


def click_point(page, x, expected: Expected, current: int, timeout: float = 20.0) -> int:
    """Click a point picked by pick_point; returns its index once the explorer selected it."""
    x.evaluate(LISTEN)
    chosen, where = pick_point(page, x, expected, current)
    # Hover first and let two frames pass: the scatterplot's camera pans, in its animation frame,
    # by how far the mouse moved since the last frame while the button is down; a pointer that
    # jumps onto the point and presses in the same frame (Playwright's bare click) can pan the
    # map by the whole jump before the click lands, so that the click hits empty space.
    page.mouse.move(where["x"], where["y"])
    page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
    page.mouse.click(where["x"], where["y"])
    try:
        page.wait_for_function(
            "([x, i]) => x.dataset.selectedIndex === String(i)", arg=[x, chosen],
            timeout=timeout * 1000,
        )  # fmt: skip
    except PlaywrightTimeout:
        log = x.evaluate("x => x.cnnvizTestLog")
        now = x.evaluate(POINTS, N_IMAGES)[chosen]
        where_x = x.evaluate(
            "x => { const r = x.querySelector('canvas.cnnviz-scatter').getBoundingClientRect();"
            " return {connected: x.isConnected, canvas: [r.left, r.top, r.width, r.height]}; }"
        )
        raise AssertionError(
            f"clicked point {chosen} at {where} (now at {now}); events: {log}; "
            f"{page.locator(X).count()} explorers, this one: {where_x}; {state(x)}"
        ) from None
    return chosen


# Client (viewport) coordinates of every point, null when not shown.
POINTS = """(x, n) => { const e = x.querySelector('.cnnviz-embedding');
  return Array.from({length: n}, (_, i) => { const p = e.cnnvizPointToClient(i);
    return p && [p.x, p.y]; }); }"""


def explorer_screenshot(page, x, name: str) -> pathlib.Path:
    """test-artifacts/NAME.png: the whole explorer."""
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    x.screenshot(path=str(shot))
    return shot


def run_app(page, server: Server, expected: Expected, shadow: bool, name: str) -> None:
    """Open the app, check the explorer's layout, that it shows image 0, that a click on a point
    shows that image in every view, that the page had no errors; save a screenshot."""
    t0 = time.monotonic()
    page.goto(server.url, timeout=90_000)
    x = explorer(page, server)
    shown_after = time.monotonic() - t0
    scatter = x.evaluate_handle("x => x.querySelector('canvas.cnnviz-scatter')")
    assert scatter.evaluate(NON_BLANK) >= 10  # colours drawn: the points
    check_layout(x, expected, shadow)
    check_views(page, x, expected, 0)

    chosen = click_point(page, x, expected, current=0)
    check_views(page, x, expected, chosen)
    check_layout(x, expected, shadow)  # still laid out after the update
    shot = explorer_screenshot(page, x, name)
    print(f"\nexplorer shown after {shown_after:.1f} s; clicked image {chosen}; screenshot: {shot}")
    assert page.problems == [], page.problems
    assert "Traceback" not in server.log_text(), server.tail()
