// @ts-check
// TopPatches: maximally activating patches. For each channel of a layer, the k dataset image
// patches (each the exact receptive field of the unit, padded gray past the image border) that
// drive that channel hardest. Python sends one page of channels at a time:
//
//   atlas row r = the channel `channels[r]`, atlas columns = the k patches, best first;
//   tile t = row floor(t / cols), rank t % cols (cols = grid_shape[1], which Python sets to k);
//   values[t], indices[t], labels[t] = activation, dataset index and class of tile t's image.
//
// Channel order, paging and the dataset pass happen in Python; this view shows the page and sets
// `page`, `sort_by`, `layer`, `selected_channel` and `selected_index`. Row headers (one
// `.cnnviz-channel` button per row) live in the tile grid's gutter, aligned with the tile rows.
// Outlines: every tile of the selected channel's row (orange, outside the tile) and every patch
// whose image is `selected_index` (blue, inside the tile).

import { getInt, getPair, getStr, initialize, onChanges, setTrait } from "./lib/anywidget.js";
import { createBitmapSlot, formatSig, memoDecoder, readArray } from "./lib/codecs.js";
import {
  button,
  createProgress,
  errorLine,
  field,
  listen,
  make,
  onPick,
  showText,
} from "./lib/dom.js";
import { fileName, saveButton } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle, SELECT_COLOR } from "./lib/style.js";
import { ATLAS_TRAITS, atlasState, createTileGrid } from "./lib/tilegrid.js";

/** @typedef {import("./lib/anywidget.js").AnyModel} AnyModel */
/** @typedef {import("./lib/tilegrid.js").TileGridLayout} TileGridLayout */

const CSS = `
.cnnviz-top-patches { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 6px; max-width: 100%; }
.cnnviz-top-patches .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; }
.cnnviz-top-patches .cnnviz-caption { font-weight: 600; }
.cnnviz-top-patches .cnnviz-field { display: inline-flex; align-items: center; gap: 4px; color: ${FG2}; }
.cnnviz-top-patches select, .cnnviz-top-patches .cnnviz-pager button {
  font: inherit; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 1px 3px;
}
.cnnviz-top-patches .cnnviz-layer { max-width: 28em; }
.cnnviz-top-patches .cnnviz-pager { display: inline-flex; align-items: center; gap: 6px; color: ${FG2}; }
.cnnviz-top-patches .cnnviz-pager button { min-width: 2em; cursor: pointer; }
.cnnviz-top-patches .cnnviz-pager button:disabled { opacity: 0.4; cursor: default; }
.cnnviz-top-patches .cnnviz-page { font-variant-numeric: tabular-nums; }
.cnnviz-top-patches .cnnviz-progress-box { display: inline-flex; align-items: center; gap: 8px; color: ${FG2}; font-size: 12px; }
.cnnviz-top-patches .cnnviz-progress { width: 120px; height: 10px; }
.cnnviz-top-patches[data-running="false"] .cnnviz-progress { opacity: 0.5; }
.cnnviz-top-patches .cnnviz-error { color: ${FG2}; font-style: italic; }
.cnnviz-top-patches .cnnviz-channel {
  display: flex; align-items: center; justify-content: flex-end; box-sizing: border-box; width: 100%; margin: 0;
  padding: 0 8px 0 4px; border: 0; border-left: 3px solid transparent; background: none;
  font: 12px/1 ${FONT}; color: ${FG2}; white-space: nowrap; overflow: hidden; cursor: pointer;
}
.cnnviz-top-patches .cnnviz-channel:hover { color: ${FG}; text-decoration: underline; }
.cnnviz-top-patches .cnnviz-channel.cnnviz-selected { color: ${FG}; font-weight: 600; border-left-color: ${SELECT_COLOR}; }
`;

/** Traits that change the tiles, their tooltips, the row headers or the outlines. */
const GRID_TRAITS = [
  ...ATLAS_TRAITS,
  "channels",
  "values",
  "indices",
  "labels",
  "class_names",
  "selected_channel",
  "selected_index",
];
const LAYER_TRAITS = ["layer", "layer_options"];
const PAGER_TRAITS = ["page", "n_pages", "channels_per_page"];

const SORT_OPTIONS = ["index", "max", "mean"];

/**
 * One page of patches as drawn: the channel id of each atlas row; the activation, dataset index
 * (-1: none) and class (-1: unknown) of each tile's image; class names; tiles per row (k).
 * @param {AnyModel} model
 * @param {(raw: unknown) => string[]} decodeNames
 */
function readPage(model, decodeNames) {
  /** @param {string} name */
  const ints = (name) => /** @type {Int32Array} */ (readArray(model.get(name)).data);
  return {
    channels: ints("channels"),
    values: /** @type {Float32Array} */ (readArray(model.get("values")).data),
    indices: ints("indices"),
    labels: ints("labels"),
    names: decodeNames(model.get("class_names")),
    cols: Math.max(1, getPair(model, "grid_shape")[1]),
  };
}

/** @typedef {ReturnType<typeof readPage>} PageData */

/**
 * The `layer_options` trait (a list of dicts) as a clean list of `layer` values and their labels
 * (entries without a name are dropped).
 * @param {unknown} raw
 */
function readLayerOptions(raw) {
  if (!Array.isArray(raw)) return [];
  /** @type {{ name: string, label: string }[]} */
  const out = [];
  for (const item of raw) {
    if (item == null || typeof item !== "object") continue;
    const rec = /** @type {Record<string, unknown>} */ (item);
    const name = rec.name == null ? "" : String(rec.name);
    if (!name) continue;
    out.push({ name, label: rec.label == null || rec.label === "" ? name : String(rec.label) });
  }
  return out;
}

/**
 * Channel id of atlas row `row` (-1 when `channels` is too short).
 * @param {Int32Array} channels
 * @param {number} row
 */
function channelOfRow(channels, row) {
  return row >= 0 && row < channels.length ? channels[row] : -1;
}

/**
 * Tooltip text of tile t: "channel c · #r · act 1.23 · image i (label name)". The class part is
 * left out for an unknown label (-1), and a tile without an image (index -1) reads
 * "channel c · #r · no patch". `r` is the 0-based rank (t % cols; #0 drives the channel hardest).
 * @param {number} t
 * @param {PageData} page
 */
function patchLabel(t, page) {
  const cols = Math.max(1, page.cols);
  const c = channelOfRow(page.channels, Math.floor(t / cols));
  let s = `channel ${c >= 0 ? c : "?"} · #${t % cols}`;
  const index = t < page.indices.length ? page.indices[t] : -1;
  if (index < 0) return `${s} · no patch`;
  if (t < page.values.length) s += ` · act ${formatSig(page.values[t])}`;
  s += ` · image ${index}`;
  const label = t < page.labels.length ? page.labels[t] : -1;
  if (label >= 0) s += ` (${label < page.names.length ? page.names[label] : `class ${label}`})`;
  return s;
}

/**
 * Tiles of every row showing channel `c` (none for c < 0).
 * @param {Int32Array} channels
 * @param {number} c
 * @param {number} cols
 * @param {number} n number of tiles
 */
function tilesOfChannel(channels, c, cols, n) {
  /** @type {number[]} */
  const out = [];
  if (c < 0 || cols < 1) return out;
  for (let r = 0; r < channels.length && r * cols < n; r++) {
    if (channels[r] !== c) continue;
    for (let t = r * cols; t < Math.min(n, (r + 1) * cols); t++) out.push(t);
  }
  return out;
}

/**
 * Tiles whose image has dataset index `index` (none for index < 0).
 * @param {Int32Array} indices
 * @param {number} index
 * @param {number} n number of tiles
 */
function tilesOfImage(indices, index, n) {
  /** @type {number[]} */
  const out = [];
  if (index < 0) return out;
  const end = Math.min(n, indices.length);
  for (let t = 0; t < end; t++) if (indices[t] === index) out.push(t);
  return out;
}

/**
 * The toolbar's controls: the layer (`layer`, `layer_options`), the channel order (`sort_by`)
 * and the pager (`page` of `n_pages`; the root's data-page).
 * @param {AnyModel} model
 * @param {HTMLElement} root
 */
function createControls(model, root) {
  const layerSelect = make("select", "cnnviz-layer");
  layerSelect.title = "layer";
  const layerField = field("layer", layerSelect);
  const sortSelect = make("select", "cnnviz-sort");
  sortSelect.title = "channel order";
  for (const opt of SORT_OPTIONS) sortSelect.add(new Option(opt, opt));
  const prev = button("cnnviz-prev", "◀", "previous page");
  const pageLabel = make("span", "cnnviz-page");
  const next = button("cnnviz-next", "▶", "next page");
  for (const b of [prev, next]) b.setAttribute("aria-label", b.title);
  const pager = make("span", "cnnviz-pager", prev, pageLabel, next);

  const page = () => getInt(model, "page", 0);
  const onPrev = () => {
    if (page() > 0) setTrait(model, "page", page() - 1);
  };
  const onNext = () => {
    if (page() < getInt(model, "n_pages", 0) - 1) setTrait(model, "page", page() + 1);
  };
  const destroy = listen([
    [layerSelect, "change", () => setTrait(model, "layer", layerSelect.value)],
    [sortSelect, "change", () => setTrait(model, "sort_by", sortSelect.value)],
    [prev, "click", onPrev],
    [next, "click", onNext],
  ]);

  return {
    fields: [layerField, field("sort by", sortSelect), pager],
    updateLayers() {
      const options = readLayerOptions(model.get("layer_options"));
      const layer = getStr(model, "layer");
      layerSelect.replaceChildren();
      for (const o of options) layerSelect.add(new Option(o.label, o.name));
      if (layer && !options.some((o) => o.name === layer)) {
        layerSelect.add(new Option(layer, layer));
      }
      layerSelect.value = layer;
      layerField.style.display = layerSelect.options.length ? "" : "none";
    },
    updateSort() {
      const sortBy = getStr(model, "sort_by");
      if (SORT_OPTIONS.some((o) => o === sortBy)) sortSelect.value = sortBy;
    },
    updatePager() {
      const n = Math.max(0, getInt(model, "n_pages", 0));
      const p = getInt(model, "page", 0);
      pageLabel.textContent = n > 0 ? `page ${p + 1} / ${n}` : "page 0 / 0";
      prev.disabled = p <= 0;
      next.disabled = p >= n - 1;
      const per = getInt(model, "channels_per_page", 0);
      pager.title = per > 0 ? `${per} channels per page` : "";
      root.dataset.page = String(p);
    },
    destroy,
  };
}

/**
 * Row headers in the tile grid's gutter: one `.cnnviz-channel` button per displayed row
 * (data-channel, data-row), aligned with the tile rows of the last draw; the selected channel's
 * is marked, and a click selects a channel. The root's data-channels lists them.
 * @param {AnyModel} model
 * @param {HTMLElement} gutter
 * @param {HTMLElement} root
 * @param {() => Int32Array} channels channel id of each atlas row
 */
function createRowHeaders(model, gutter, root, channels) {
  /** @type {TileGridLayout | null} layout of the last draw of the tiles (null before the first) */
  let drawn = null;
  /** What the row headers were built for. */
  let key = "";
  /** @type {HTMLButtonElement[]} */
  let headers = [];

  /** @param {number} c @param {number} r @param {TileGridLayout} lay */
  function header(c, r, { cellH, gap }) {
    const b = button("cnnviz-channel", `channel ${c >= 0 ? c : "?"}`);
    b.dataset.channel = String(c);
    b.dataset.row = String(r);
    b.title = c >= 0 ? `select channel ${c}` : "";
    b.style.height = `${cellH}px`;
    b.style.marginBottom = `${gap}px`;
    if (cellH < 14) b.style.fontSize = `${Math.max(7, cellH - 2)}px`;
    return b;
  }

  function sync() {
    if (!drawn) return;
    const lay = drawn;
    const rows = Math.ceil(lay.order.length / lay.cols);
    const ids = Array.from({ length: rows }, (_, r) => channelOfRow(channels(), r));
    const k = `${ids.join(",")}|${lay.cellH}|${lay.gap}`;
    if (k !== key) {
      key = k;
      headers = ids.map((c, r) => header(c, r, lay));
      gutter.replaceChildren(...headers);
      gutter.style.paddingTop = `${lay.gap}px`;
      gutter.style.display = rows > 0 ? "" : "none";
      root.dataset.channels = ids.join(",");
    }
    const selected = getInt(model, "selected_channel", -1);
    for (const b of headers) {
      const on = selected >= 0 && Number(b.dataset.channel) === selected;
      b.classList.toggle("cnnviz-selected", on);
      b.setAttribute("aria-pressed", String(on));
    }
  }

  const destroy = onPick(gutter, ".cnnviz-channel", "channel", (c) => {
    model.set("selected_channel", c);
    model.save_changes();
  });

  return {
    /** Follow a draw of the tiles. @param {TileGridLayout} lay */
    drawn(lay) {
      drawn = lay;
      sync();
    },
    /** Follow the channels and the selected channel. */
    sync,
    destroy,
  };
}

/** @param {import("./lib/anywidget.js").RenderProps} props */
function render({ model, el }) {
  const root = make("div", "cnnviz-top-patches");
  const progress = createProgress(model, root, "span");
  const controls = createControls(model, root);
  const save = saveButton(
    () => grid.canvas,
    () => fileName("top-patches", getStr(model, "layer"), `page${getInt(model, "page", 0) + 1}`),
  );
  const tools = [progress.caption, ...controls.fields, save, progress.box];
  const toolbar = make("div", "cnnviz-toolbar", ...tools);
  const error = errorLine();

  const decodeNames = memoDecoder((raw) => (Array.isArray(raw) ? raw.map(String) : []));
  /** The page drawn last (label and click read it only once its tiles are drawn). */
  let shown = readPage(model, decodeNames);

  const grid = createTileGrid({
    label: (t) => patchLabel(t, shown),
    onClick(t) {
      const c = channelOfRow(shown.channels, Math.floor(t / Math.max(1, shown.cols)));
      const index = t < shown.indices.length ? shown.indices[t] : -1;
      if (index >= 0) model.set("selected_index", index);
      if (c >= 0) model.set("selected_channel", c);
      if (index >= 0 || c >= 0) model.save_changes();
    },
    gutter: true,
    onDraw: (lay) => headers.drawn(lay),
  });
  const gutter = /** @type {HTMLDivElement} */ (grid.gutter);
  const headers = createRowHeaders(model, gutter, root, () => shown.channels);

  root.append(toolbar, error, grid.el);
  el.append(root);
  injectStyle(root, "cnnviz-style-top-patches", CSS);

  const atlas = createBitmapSlot();

  function refreshGrid() {
    atlas.draw(model.get("atlas_png"), (bitmap, err) => {
      showText(error, err ? `could not decode atlas_png: ${err}` : "");
      const state = atlasState(model, 64);
      const { cols, n } = state;
      shown = readPage(model, decodeNames);
      grid.update({
        ...state,
        atlas: bitmap,
        selected: tilesOfChannel(shown.channels, getInt(model, "selected_channel", -1), cols, n),
        marked: tilesOfImage(shown.indices, getInt(model, "selected_index", -1), n),
      });
      // The channels may change without the tiles (then there is no draw to rebuild them).
      headers.sync();
    });
  }

  const unsubscribers = [
    onChanges(model, GRID_TRAITS, refreshGrid),
    progress.off,
    onChanges(model, LAYER_TRAITS, controls.updateLayers),
    onChanges(model, ["sort_by"], controls.updateSort),
    onChanges(model, PAGER_TRAITS, controls.updatePager),
  ];
  controls.updateLayers();
  controls.updateSort();
  controls.updatePager();
  refreshGrid();

  return () => {
    for (const off of unsubscribers) off();
    headers.destroy();
    controls.destroy();
    grid.destroy();
    atlas.dispose();
    root.remove();
  };
}

export default { initialize, render };
