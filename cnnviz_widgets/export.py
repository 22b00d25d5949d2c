"""Export what a widget shows: one self-contained HTML page, or a PNG of a panel.

`to_html(widget)` writes a page that renders the widget without a kernel and without network
access. The standard ipywidgets embedding loads require.js and the widget manager from CDNs;
this page instead carries the widget's own ES module (the `_esm` trait's text) and a small
in-page model (get / set / on / off / save_changes) holding the widget's synced state. Binary
traits travel base64-encoded and reach the module as DataView, as anywidget gives them.
Interaction works locally (clicks set traits and the views redraw); nothing is recomputed.

Notebooks: `jupyter nbconvert --to cnnviz-html notebook.ipynb` (`OfflineHTMLExporter`, an
nbconvert entry point) or `notebook_to_html(path_or_nb, out)` write nbconvert's page with each
anywidget view rendered the same way from the notebook's saved widget state: one loader per page,
each distinct bundle embedded and imported once. Plain ipywidgets need the widget manager from a
CDN; they become a short text.

The `*_image` functions compose what a panel shows as a uint8 array (see `render`);
the widgets' `save_png` methods write them with `write_png`.
"""

from __future__ import annotations

import base64
import copy
import functools
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


REF = "IPY_MODEL_"  # how ipywidgets' widget_serialization sends a child widget


def _model_state(state: dict) -> dict:
    """A model's state as the page keeps it: `{state, buffers}`, its binary values split out."""
    buffers: list[dict] = []
    state = {k: v for k, v in state.items() if k not in _BASE_TRAITS}
    return {"state": _split_buffers(state, [], buffers), "buffers": buffers}


def _references(state: dict) -> list[str]:
    """The model ids of the child widgets a state references (a trait, or a list of them)."""
    values = [
        v for value in state.values() for v in (value if isinstance(value, list) else [value])
    ]
    return [v.removeprefix(REF) for v in values if isinstance(v, str) and v.startswith(REF)]


def _children(state: dict, models: dict[str, dict], lookup) -> dict[str, dict]:
    """`models` with every child widget `state` references, and theirs: `lookup(id)` gives a
    child's full state (or None: not there)."""
    for model_id in _references(state):
        child = lookup(model_id) if model_id not in models else None
        if child is not None:
            models[model_id] = _model_state(child)
            _children(child, models, lookup)
    return models


def _descendants(widget, found: dict) -> dict:
    """`found` with every widget held in a synced trait of `widget` (or a list of them), and
    theirs, by model id."""
    for name in widget.keys:
        value = getattr(widget, name, None)
        for child in value if isinstance(value, list | tuple) else [value]:
            if isinstance(child, ipywidgets.Widget) and child.model_id not in found:
                found[child.model_id] = child
                _descendants(child, found)
    return found


def page_data(widget) -> dict:
    """What the page embeds: the ES module, the CSS, the state and its binary buffers, and
    `models`: the state of each child widget (by model id), which the view loads with
    `widget_manager.get_model`."""
    full = widget.get_state()
    widgets = _descendants(widget, {})

    def lookup(model_id):
        child = widgets.get(model_id)
        return None if child is None else child.get_state()

    return {
        "name": type(widget).__name__,
        "esm": _read_text(full.get("_esm", getattr(widget, "_esm", None)), "_esm"),
        "css": _read_text(full.get("_css", getattr(widget, "_css", None)), "_css"),
        **_model_state(full),
        "models": _children(full, {}, lookup),
    }


def _saved_buffers(entry: dict) -> list[dict]:
    """A saved model's buffers ({path, encoding, data}) as base64, base traits left out."""
    buffers = []
    for buf in entry.get("buffers") or []:
        path = list(buf.get("path") or [])
        if not path or path[0] in _BASE_TRAITS:
            continue
        data = buf.get("data", "")
        if buf.get("encoding") == "hex":
            data = base64.b64encode(bytes.fromhex(data)).decode("ascii")
        buffers.append({"path": path, "encoding": "base64", "data": data})
    return buffers


def saved_widget_data(entry: dict, saved: dict | None = None) -> dict | None:
    """`page_data` for one model of a notebook's saved widget state (`{model_name, model_module,
    state, buffers?}`, buffers as `{path, encoding, data}`; `saved`: every saved model by id,
    where its children are), or None when the model is not an anywidget (no `_esm` text: a
    plain ipywidgets widget needs the widget manager's JavaScript). Raises ValueError when the
    bundle is a URL."""
    full = entry.get("state") or {}
    if not isinstance(full.get("_esm"), str) or not full["_esm"].strip():
        return None
    saved = saved or {}

    def lookup(model_id):
        child = saved.get(model_id)
        return None if not isinstance(child, dict) else child.get("state") or {}

    models = _children(full, {}, lookup)
    for model_id in models:  # their binary values, as saved
        models[model_id]["buffers"] = _saved_buffers(saved[model_id])
    anywidget_id = str(full.get("_anywidget_id") or "")
    return {
        "name": anywidget_id.rsplit(".", 1)[-1] or str(entry.get("model_name") or "widget"),
        "esm": _read_text(full["_esm"], "_esm"),
        "css": _read_text(full.get("_css"), "_css"),
        "state": _split_buffers({k: v for k, v in full.items() if k not in _BASE_TRAITS}, [], []),
        "buffers": _saved_buffers(entry),
        "models": models,
    }


def json_for_script(data) -> str:
    """JSON that is safe inside a `<script>` element: no `<`, `>` or `&` appear literally, so no
    `</script>` or `<!--` can end or change the element (JSON.parse reads the \\u escapes back)."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for char, escape in (("&", "\\u0026"), ("<", "\\u003c"), (">", "\\u003e")):
        text = text.replace(char, escape)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


# The loader, one per page however many widgets it shows. Each `.cnnviz-export-root` element
# holds one widget's data (state, base64 buffers, the keys of its module and style sheet); the
# `#cnnviz-modules` block holds each distinct ES module and style sheet once. For each root: decode
# the buffers, build the model, import the module from a Blob URL (a data: URL when that fails;
# once per module) and render it. `window.cnnvizExport` exposes the models for scripts/tests.
_LOADER = """
const SHARED = JSON.parse(document.getElementById("cnnviz-modules").textContent);
const widgets = [];
const imported = new Map();
const styled = new Set();
window.cnnvizExport = {
  widgets,
  imports: 0,
  get model() { return widgets[0]?.model; },
  get name() { return widgets[0]?.name; },
  get loadedFrom() { return widgets[0]?.loadedFrom ?? ""; },
};

function fromBase64(text) {
  const bin = atob(text);
  const bytes = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
  return bytes;
}

function putBuffers(state, buffers) {
  for (const { path, data: text } of buffers) {
    let obj = state;
    for (const key of path.slice(0, -1)) obj = obj?.[key];
    if (obj === null || typeof obj !== "object") continue;  // a stale path: no container
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

/** The model anywidget gives a view, without a kernel: state lives in the page. Its
 * `widget_manager.get_model(id)` gives the models of the child widgets its state references. */
class PageModel {
  constructor(state, models = new Map()) {
    this.state = state;
    this.handlers = new Map();
    this.changed = new Set();
    this.widget_manager = {
      async get_model(id) {
        if (!models.has(id)) throw new Error(`no widget model ${id} in this page`);
        return models.get(id);
      },
    };
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
  window.cnnvizExport.imports += 1;
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

function loadModule(key) {
  if (!imported.has(key)) imported.set(key, importModule(SHARED.modules[key]));
  return imported.get(key);
}

function addStyle(key) {
  if (key == null || styled.has(key)) return;
  styled.add(key);
  const style = document.createElement("style");
  style.textContent = SHARED.styles[key];
  document.head.append(style);
}

function fail(root, err) {
  const box = document.createElement("pre");
  box.className = "cnnviz-export-error";
  box.textContent = `This page could not show the widget: ${err?.stack ?? err}`;
  root.append(box);
  root.dataset.cnnvizReady = "error";
  console.error(err);
}

async function show(root, entry) {
  const data = JSON.parse(root.querySelector(":scope > script.cnnviz-data").textContent);
  addStyle(data.style);
  const models = new Map();
  for (const [id, child] of Object.entries(data.models ?? {})) {
    models.set(id, new PageModel(putBuffers(child.state, child.buffers), models));
  }
  entry.model = new PageModel(putBuffers(data.state, data.buffers), models);
  entry.name = data.name;
  const [mod, loadedFrom] = await loadModule(data.module);
  entry.loadedFrom = loadedFrom;
  let widget = mod.default ?? mod;
  if (typeof widget === "function") widget = await widget();
  const el = document.createElement("div");
  el.className = "cnnviz-export-widget";
  root.append(el);
  await widget.initialize?.({ model: entry.model });
  await widget.render?.({ model: entry.model, el });
  root.dataset.cnnvizReady = "true";
}

async function main() {
  const roots = [...document.querySelectorAll(".cnnviz-export-root")];
  for (const root of roots) widgets.push({ root, model: null, name: "", loadedFrom: "" });
  const results = await Promise.allSettled(widgets.map((entry) => show(entry.root, entry)));
  results.forEach((r, i) => r.status === "rejected" && fail(roots[i], r.reason));
  const ok = results.every((r) => r.status === "fulfilled");
  document.documentElement.dataset.cnnvizReady = ok ? "true" : "error";
}

main().catch((err) => fail(document.body, err));
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


def _csp_meta() -> str:
    """The page's policy, as the first thing its <head> holds after the title."""
    content = html.escape(_csp(_LOADER), quote=False).replace('"', "&quot;")
    return f'<meta http-equiv="Content-Security-Policy" content="{content}">'


# the look of what stands for a widget that cannot be shown, in a notebook's page
_NB_STYLE = """<style>
.cnnviz-export-placeholder { color: #666; font: 12px/1.4 monospace; white-space: pre-wrap;
  margin: 4px 0; }
.cnnviz-export-error { color: #b00; white-space: pre-wrap; }
</style>"""


class _Bundles:
    """The widgets of one page: each widget's data goes where the widget shows (`fragment`);
    each distinct ES module and style sheet is embedded, and imported, once (`scripts`)."""

    def __init__(self):
        self.modules: dict[str, str] = {}
        self.styles: dict[str, str] = {}

    @staticmethod
    def _key(table: dict[str, str], text: str) -> str:
        key = hashlib.sha256(text.encode("utf-8")).hexdigest()[:20]
        table[key] = text
        return key

    def fragment(self, data: dict) -> str:
        """The HTML that shows one widget (`page_data` / `saved_widget_data`) where it stands."""
        spec = {
            "name": data["name"],
            "module": self._key(self.modules, data["esm"]),
            "style": self._key(self.styles, data["css"]) if data["css"] else None,
            "state": data["state"],
            "buffers": data["buffers"],
            "models": data.get("models", {}),
        }
        return (
            '<div class="cnnviz-export-root">'
            f'<script type="application/json" class="cnnviz-data">{json_for_script(spec)}</script>'
            "</div>"
        )

    def scripts(self) -> str:
        """The modules, the style sheets and the loader: once per page, after every fragment."""
        shared = {"modules": self.modules, "styles": self.styles}
        return (
            '<script type="application/json" id="cnnviz-modules">'
            f"{json_for_script(shared)}</script>\n"
            f'<script type="module">{_LOADER}</script>'
        )


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{csp_meta}
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
{fragment}
{scripts}
</body>
</html>
"""


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
    bundles = _Bundles()
    page = _PAGE.format(
        csp_meta=_csp_meta(),
        title=html.escape(title),
        note=html.escape(note),
        fragment=bundles.fragment(data),
        scripts=bundles.scripts(),
    )
    if path is not None:
        pathlib.Path(path).write_text(page, encoding="utf-8")
    return page


# --- notebooks (nbconvert) -----------------------------------------------------------------------

WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
# ipywidgets' layout boxes: their anywidget children are shown inside them, in a row or column
_BOXES = {"HBoxModel": "row", "VBoxModel": "column", "BoxModel": "row", "GridBoxModel": "row"}


def _placeholder(text: str) -> str:
    return f'<pre class="cnnviz-export-placeholder">{html.escape(text)}</pre>'


def _view_html(model_id, saved: dict, bundles: _Bundles, depth: int = 0) -> str:
    """The HTML that stands for the view of `model_id`: the anywidget itself, the anywidgets
    of a layout box, or a short text saying why nothing can be shown."""
    entry = saved.get(model_id) if isinstance(model_id, str) else None
    if not isinstance(entry, dict):
        return _placeholder("[a widget whose state was not saved with the notebook]")
    try:
        data = saved_widget_data(entry, saved)
    except ValueError as err:
        return _placeholder(f"[{err}]")
    if data is not None:
        return bundles.fragment(data)
    name = str(entry.get("model_name") or "widget")
    children = (entry.get("state") or {}).get("children")
    if name in _BOXES and isinstance(children, list) and depth < 20:
        inner = "".join(
            _view_html(str(c).removeprefix("IPY_MODEL_"), saved, bundles, depth + 1)
            for c in children
        )
        return (
            f'<div class="cnnviz-export-box" style="display: flex; flex-direction: '
            f'{_BOXES[name]}; flex-wrap: wrap; gap: 8px">{inner}</div>'
        )
    kind = name.removesuffix("Model")
    return _placeholder(
        f"[{kind} widget: it needs a kernel or the ipywidgets JavaScript, which this offline "
        "page does not load]"
    )


def offline_widget_views(nb) -> tuple:
    """A copy of the notebook `nb` whose widget views carry (under the key "cnnviz_html") the
    HTML that shows them offline, and the page's `_Bundles`, whose `scripts()` must follow them
    in the page. The copy's saved widget state keeps an empty entry per view, no more: nbconvert
    renders a widget view only when its model is there."""
    nb = copy.deepcopy(nb)
    metadata = nb.setdefault("metadata", {})
    widgets = metadata.get("widgets") or {}
    saved = (widgets.get(WIDGET_STATE) or {}).get("state") or {}
    bundles = _Bundles()
    views = {}
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(WIDGET_VIEW)
            if isinstance(view, dict):
                view["cnnviz_html"] = _view_html(view.get("model_id"), saved, bundles)
                views[str(view.get("model_id"))] = {}
    metadata["widgets"] = {WIDGET_STATE: {"state": views, "version_major": 2, "version_minor": 0}}
    return nb, bundles


_NB_TEMPLATE_NAME = "cnnviz-offline.html.j2"
# nbconvert's lab (or classic) page without its CDN scripts (require.js, the widget manager,
# MathJax, Mermaid) and inline JavaScript outputs, which the policy would refuse anyway; widget
# views are the fragments `offline_widget_views` made.
_NB_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}
{{ resources.cnnviz.head }}
{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block data_javascript scoped -%}
<pre class="cnnviz-export-placeholder jp-OutputArea-output {{ extra_class }}">\
[JavaScript output: not run in this offline page]</pre>
{%- endblock data_javascript -%}
{%- block data_widget_view scoped -%}
<div class="jupyter-widgets jp-OutputArea-output {{ extra_class }}">
{{ output.data['application/vnd.jupyter.widget-view+json'].cnnviz_html }}
</div>
{%- endblock data_widget_view -%}
{%- block footer_js -%}
{{ resources.cnnviz.foot }}
{%- endblock footer_js -%}
"""


@functools.cache
def _exporter_class():
    from jinja2 import DictLoader
    from nbconvert.exporters import HTMLExporter
    from traitlets import default

    class OfflineHTMLExporter(HTMLExporter):
        """nbconvert's HTML, offline: the notebook's anywidgets (cnnviz-widgets' and others')
        render from their saved widget state with `to_html`'s loader, under the same policy
        (nothing leaves the page, only the loader runs). Plain ipywidgets widgets, which need
        the CDN's widget manager, become a short text. `jupyter nbconvert --to cnnviz-html`."""

        export_from_notebook = "HTML with offline widgets (cnnviz)"

        @default("extra_loaders")
        def _cnnviz_loaders(self):
            return [DictLoader({_NB_TEMPLATE_NAME: _NB_TEMPLATE})]

        @default("template_file")
        def _cnnviz_template_file(self):
            return _NB_TEMPLATE_NAME

        @default("embed_images")
        def _cnnviz_embed_images(self):
            return True  # markdown images as data: URLs; the policy refuses files

        def from_notebook_node(self, nb, resources=None, **kw):
            nb, bundles = offline_widget_views(nb)
            head = f"{_csp_meta()}\n{_NB_STYLE}"
            resources = {**(resources or {}), "cnnviz": {"head": head, "foot": bundles.scripts()}}
            return super().from_notebook_node(nb, resources, **kw)

    OfflineHTMLExporter.__module__ = __name__
    OfflineHTMLExporter.__qualname__ = "OfflineHTMLExporter"
    return OfflineHTMLExporter


def __getattr__(name: str):
    # The exporter class is built on first use: importing nbconvert is slow and optional.
    if name == "OfflineHTMLExporter":
        return _exporter_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def notebook_to_html(notebook, out: str | os.PathLike | None = None, **config) -> str:
    """`jupyter nbconvert --to cnnviz-html` from Python: the notebook (a path or a notebook
    node) as one HTML page whose anywidgets render from the saved widget state without a kernel
    or network. `config`: traits of the exporter (e.g. `exclude_input=True`). Writes the page
    to `out` (UTF-8) when given; returns the HTML."""
    import nbformat

    resources: dict = {"metadata": {"name": "Notebook"}}
    if isinstance(notebook, str | os.PathLike):
        path = pathlib.Path(notebook)
        nb = nbformat.read(path, as_version=4)
        resources["metadata"] = {"name": path.stem, "path": str(path.parent)}
    else:
        nb = notebook
    page, _ = _exporter_class()(**config).from_notebook_node(nb, resources)
    if out is not None:
        pathlib.Path(out).write_text(page, encoding="utf-8")
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
    return stat_order(raw.astype(np.float64), n)


def occlusion_image(widget) -> np.ndarray:
    """OcclusionMap's view: the image at about `view_px`, the current map over it at `opacity`."""
    if not widget.image_png:
        return np.zeros((1, 1, 3), np.uint8)
    image = render.decode_png(widget.image_png)
    scores = widget.scores if widget.scores.size else None
    lut = widget.colormap_lut
    lut = lut if lut.shape == (256, 3) else render.colormap_lut("gray")
    return render.occlusion_overlay(
        image,
        scores,
        patch=tuple(widget.map_patch),
        stride=tuple(widget.map_stride),
        origin=tuple(widget.map_origin),
        lut=lut,
        vmin=widget.vmin,
        vmax=widget.vmax,
        opacity=widget.opacity,
        view_px=widget.view_px,
    )


def embedding_image(widget) -> np.ndarray:
    """EmbeddingExplorer's map: the points coloured by class (label, else prediction: its
    `point_colors`) on a `view_px` square, hidden classes left out, the selected point ringed."""
    raw = widget.grid_points if widget.arrangement == "grid" else widget.points
    xy = raw.reshape(-1, 2)
    classes, _ = widget.point_colors
    return render.scatter_image(
        xy,
        classes,
        widget.class_colors,
        size=widget.view_px,
        hidden=widget.hidden_classes,
        selected=widget.selected_index,
    )
