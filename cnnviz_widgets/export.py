"""Export what a widget shows: one self-contained HTML page, or a PNG of a panel.

`to_html(widget)` writes a page that renders the widget without a kernel and without network
access. The standard ipywidgets embedding loads require.js and the widget manager from CDNs;
this page instead carries the widget's own ES module (the `_esm` trait's text) and a small
in-page model (get / set / on / off / save_changes) holding the widget's synced state. Binary
traits travel base64-encoded and reach the module as DataView, as anywidget gives them.
Interaction works locally (clicks set traits and the views redraw); nothing is recomputed.

The `*_image` functions compose what a panel shows as a uint8 array (see `render`);
the widgets' `save_png` methods write them with `write_png`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import math
import os
import pathlib

import ipywidgets
import numpy as np

from . import render

# Traits of the ipywidgets / anywidget base classes: layout, tooltip, model and view names, the
# ES module itself... The page has no widget manager, so they mean nothing there.
_BASE_TRAITS = frozenset(ipywidgets.DOMWidget.class_trait_names(sync=True)) | {
    "_esm",
    "_css",
    "_anywidget_id",
}


def _split_buffers(value, path: list, buffers: list[dict]):
    """`value` made JSON-safe: bytes become None with their path and base64 text in `buffers`
    (the layout of the Jupyter widget-state format); non-finite floats become None."""
    if isinstance(value, bytes | bytearray | memoryview):
        data = base64.b64encode(bytes(value)).decode("ascii")
        buffers.append({"path": list(path), "encoding": "base64", "data": data})
        return None
    if isinstance(value, dict):
        return {k: _split_buffers(v, [*path, k], buffers) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_split_buffers(v, [*path, i], buffers) for i, v in enumerate(value)]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN / Infinity
    return value


def _read_text(value, what: str) -> str:
    if value is None:
        return ""
    if isinstance(value, os.PathLike):
        return pathlib.Path(value).read_text(encoding="utf-8")
    text = str(value)
    if text.startswith(("http://", "https://")):
        raise ValueError(f"the widget's {what} is a URL ({text}): a page loading it is not offline")
    return text


def page_data(widget) -> dict:
    """What the page embeds: the ES module, the CSS, the state and its binary buffers."""
    full = widget.get_state()
    state = {k: v for k, v in full.items() if k not in _BASE_TRAITS}
    buffers: list[dict] = []
    state = _split_buffers(state, [], buffers)
    return {
        "name": type(widget).__name__,
        "esm": _read_text(full.get("_esm", getattr(widget, "_esm", None)), "_esm"),
        "css": _read_text(full.get("_css", getattr(widget, "_css", None)), "_css"),
        "state": state,
        "buffers": buffers,
    }


def json_for_script(data) -> str:
    """JSON that is safe inside a `<script>` element: no `<`, `>` or `&` appear literally, so no
    `</script>` or `<!--` can end or change the element (JSON.parse reads the \\u escapes back)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# The loader: decode the buffers, build the model, import the module from a Blob URL (a data:
# URL when that fails) and render it. `window.cnnvizExport` exposes the model for scripts/tests.
_LOADER = """
const ROOT = document.getElementById("cnnviz-root");
const data = JSON.parse(document.getElementById("cnnviz-data").textContent);

function fromBase64(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function putBuffers(state, buffers) {
  for (const { path, data: text } of buffers) {
    let obj = state;
    for (const key of path.slice(0, -1)) obj = obj[key];
    const bytes = fromBase64(text);
    obj[path[path.length - 1]] = new DataView(bytes.buffer);
  }
  return state;
}

function equal(a, b) {
  if (Object.is(a, b)) return true;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    if (a.byteLength !== b.byteLength) return false;
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return x.every((v, i) => v === y[i]);
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((v, i) => equal(v, b[i]));
  }
  if (a && b && typeof a === "object" && typeof b === "object"
      && Object.getPrototypeOf(a) === Object.prototype
      && Object.getPrototypeOf(b) === Object.prototype) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => k in b && equal(a[k], b[k]));
  }
  return false;
}

/** The model anywidget gives a view, without a kernel: state lives in the page. */
class PageModel {
  constructor(state) {
    this.state = state;
    this.handlers = new Map();
    this.changed = new Set();
  }
  get(name) {
    return this.state[name];
  }
  set(name, value) {
    const old = this.state[name];
    this.state[name] = value;
    if (equal(old, value)) return;
    this.changed.add(name);
    this.emit(`change:${name}`, this, value);
    this.emit("change", this);
  }
  save_changes() {
    this.changed.clear();  // no kernel to send them to
  }
  send() {}
  on(events, callback, context) {
    for (const event of String(events).split(/\\s+/).filter(Boolean)) {
      if (!this.handlers.has(event)) this.handlers.set(event, []);
      this.handlers.get(event).push({ callback, context });
    }
  }
  off(events, callback) {
    const names = events ? String(events).split(/\\s+/).filter(Boolean) : [...this.handlers.keys()];
    for (const event of names) {
      const list = this.handlers.get(event) ?? [];
      this.handlers.set(event, callback ? list.filter((h) => h.callback !== callback) : []);
    }
  }
  emit(event, ...args) {
    for (const h of [...(this.handlers.get(event) ?? [])]) {
      try {
        h.callback.apply(h.context ?? this, args);
      } catch (err) {
        console.error(err);
      }
    }
  }
}

async function importModule(code) {
  const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
  try {
    return [await import(url), "blob"];
  } catch (err) {
    try {
      const dataUrl = `data:text/javascript;charset=utf-8,${encodeURIComponent(code)}`;
      return [await import(dataUrl), "data"];
    } catch {
      throw err;
    }
  } finally {
    URL.revokeObjectURL(url);
  }
}

function fail(err) {
  const box = document.createElement("pre");
  box.className = "cnnviz-export-error";
  box.textContent = `This page could not show the widget: ${err?.stack ?? err}`;
  ROOT.append(box);
  document.documentElement.dataset.cnnvizReady = "error";
  console.error(err);
}

async function main() {
  if (data.css) {
    const style = document.createElement("style");
    style.textContent = data.css;
    document.head.append(style);
  }
  const model = new PageModel(putBuffers(data.state, data.buffers));
  window.cnnvizExport = { model, name: data.name, loadedFrom: "" };
  const [mod, loadedFrom] = await importModule(data.esm);
  window.cnnvizExport.loadedFrom = loadedFrom;
  let widget = mod.default ?? mod;
  if (typeof widget === "function") widget = await widget();
  const el = document.createElement("div");
  el.className = "cnnviz-export-widget";
  ROOT.append(el);
  await widget.initialize?.({ model });
  await widget.render?.({ model, el });
  document.documentElement.dataset.cnnvizReady = "true";
}

main().catch(fail);
"""

_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="{csp}">
<meta name="generator" content="cnnviz-widgets">
<title>{title}</title>
<style>
body {{ margin: 16px; font: 13px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif;
  color: #222; background: #fff; }}
.cnnviz-export-note {{ color: #555; font-size: 12px; margin: 0 0 12px; }}
.cnnviz-export-error {{ color: #b00; white-space: pre-wrap; }}
</style>
</head>
<body>
<p class="cnnviz-export-note">{note}</p>
<div id="cnnviz-root"></div>
<script type="application/json" id="cnnviz-data">{data}</script>
<script type="module">{loader}</script>
</body>
</html>
"""


def _csp(loader: str) -> str:
    """Nothing leaves the page: only this loader runs inline (no injected handler can), modules
    and workers come from blob:/data: URLs, images from blob:/data:. WebGL libraries such as
    regl compile code at run time, hence 'unsafe-eval'."""
    digest = base64.b64encode(hashlib.sha256(loader.encode("utf-8")).digest()).decode("ascii")
    return "; ".join(
        [
            "default-src 'none'",
            f"script-src 'sha256-{digest}' 'unsafe-eval' blob: data:",
            "worker-src blob: data:",
            "style-src 'unsafe-inline'",
            "img-src blob: data:",
            "connect-src blob: data:",
            "font-src data:",
            "base-uri 'none'",
            "form-action 'none'",
        ]
    )


def to_html(widget, path: str | os.PathLike | None = None, *, title: str | None = None) -> str:
    """One self-contained HTML page showing `widget` with its current state; renders offline.

    Works for any anywidget whose front end uses only the model's get / set / on / off /
    save_changes (no kernel messages). The page embeds the widget's ES module and its synced
    state (binary traits base64-encoded); clicks change traits in the page, but nothing that
    the kernel would compute is recomputed. Writes the page to `path` (UTF-8) when given;
    returns the HTML.
    """
    data = page_data(widget)
    name = data["name"]
    title = f"{name} · cnnviz-widgets" if title is None else str(title)
    note = (
        f"{name}, exported by cnnviz-widgets: a snapshot without a kernel. Selections and "
        "options change the views here, but nothing new is computed."
    )
    page = _PAGE.format(
        csp=html.escape(_csp(_LOADER), quote=False).replace('"', "&quot;"),
        title=html.escape(title),
        note=html.escape(note),
        data=json_for_script(data),
        loader=_LOADER,
    )
    if path is not None:
        pathlib.Path(path).write_text(page, encoding="utf-8")
    return page


# --- PNG of a panel ------------------------------------------------------------------------------

# The panels' tile background (BG_TILES in js/src/lib/style.js), seen through the gaps.
TILE_GAP_COLOR = 0xBD


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write a uint8 (H, W) or (H, W, 3) array as a PNG file."""
    pathlib.Path(path).write_bytes(render.png_bytes(image))


def stat_order(stat: np.ndarray, n: int) -> np.ndarray:
    """Tiles 0..n-1 by `stat` descending; ties by index; missing or NaN values last (the order
    of FeatureMaps' "mean" / "max" sorting in the browser)."""
    key = np.full(n, np.nan)
    m = min(n, len(stat))
    key[:m] = stat[:m]
    missing = np.isnan(key)
    return np.lexsort((np.arange(n), -np.where(missing, 0.0, key), missing))


def tile_grid_image(widget, order=None) -> np.ndarray:
    """A tile-grid widget's tiles as it shows them: in `order` (default: atlas order), as many
    per row as the atlas has, upscaled nearest-neighbour to about `tile_px`, 1-px gaps."""
    if not widget.atlas_png or not widget.n_tiles:
        return np.full((1, 1), TILE_GAP_COLOR, np.uint8)
    atlas = render.decode_png(widget.atlas_png)
    h, w = widget.tile_shape
    cols = widget.grid_shape[1]
    order = range(widget.n_tiles) if order is None else order
    tiles = np.stack([render.unpack_tile(atlas, int(t), (h, w), cols) for t in order])
    scale = render.tile_scale(widget.tile_px, h, w)
    return render.tile_sheet(tiles, cols, scale=scale, gap=1, background=TILE_GAP_COLOR)


def feature_maps_order(widget) -> np.ndarray:
    """FeatureMaps' display order of its tiles (`sort_by`)."""
    n = widget.n_tiles
    if widget.sort_by == "index":
        return np.arange(n)
    raw = widget.channel_mean if widget.sort_by == "mean" else widget.channel_max
    return stat_order(np.frombuffer(raw, "<f4").astype(np.float64), n)


def occlusion_image(widget) -> np.ndarray:
    """OcclusionMap's view: the image at about `view_px`, the current map over it at `opacity`."""
    if not widget.image_png:
        return np.zeros((1, 1, 3), np.uint8)
    image = render.decode_png(widget.image_png)
    scores = np.frombuffer(widget.scores, "<f4").reshape(-1)
    ny, nx = widget.scores_shape
    scores = scores.reshape(ny, nx) if scores.size and scores.size == ny * nx else None
    lut = np.frombuffer(widget.colormap_lut, np.uint8)
    lut = lut[:768].reshape(256, 3) if lut.size >= 768 else render.colormap_lut("gray")
    return render.occlusion_overlay(
        image,
        scores,
        patch=tuple(widget.map_patch),
        stride=tuple(widget.map_stride),
        lut=lut,
        vmin=widget.vmin,
        vmax=widget.vmax,
        opacity=widget.opacity,
        view_px=widget.view_px,
    )


def embedding_image(widget) -> np.ndarray:
    """EmbeddingExplorer's map: the points coloured by class on a `view_px` square, hidden
    classes left out, the selected point ringed."""
    raw = widget.grid_points if widget.arrangement == "grid" else widget.points
    xy = np.frombuffer(raw, "<f4").reshape(-1, 2)
    labels = np.frombuffer(widget.labels, "<i4")
    return render.scatter_image(
        xy,
        labels,
        widget.class_colors,
        size=widget.view_px,
        hidden=widget.hidden_classes,
        selected=widget.selected_index,
    )
