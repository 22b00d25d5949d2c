// @ts-check
// FilterGrid: the weights of a conv layer as a grid of small images.
//   mode "filters":  tile t = filter t (RGB for 3 input channels, grayscale for 1)
//   mode "channels": atlas rows = filters, cols = input channels; tile t = (t / cols, t % cols)
// Clicking a tile selects its filter (`selected_filter`); every tile of that filter is outlined.

import { getInt, getPair, getStr, onChanges } from "./lib/anywidget.js";
import { createBitmapSlot } from "./lib/codecs.js";
import { fileName, saveButton, styleSaveButtons } from "./lib/save.js";
import { FG, FG2, FONT, injectStyle } from "./lib/style.js";
import { initialize } from "./lib/sync.js";
import { createTileGrid } from "./lib/tilegrid.js";

/** @typedef {import("./lib/anywidget.js").RenderProps} RenderProps */

const CSS = `
.cnnviz-filter-grid { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 4px; max-width: 100%; }
.cnnviz-filter-grid .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; }
.cnnviz-filter-grid .cnnviz-caption { font-weight: 600; }
.cnnviz-filter-grid .cnnviz-error { color: ${FG2}; font-style: italic; }
`;

const TRAITS = /** @type {const} */ ([
  "atlas_png",
  "tile_shape",
  "grid_shape",
  "n_tiles",
  "mode",
  "n_filters",
  "n_channels_shown",
  "layer",
  "caption",
  "tile_px",
  "selected_filter",
]);

/**
 * Filter index shown by tile `t`.
 * @param {string} mode
 * @param {number} t
 * @param {number} cols atlas grid columns
 */
export function filterOfTile(mode, t, cols) {
  return mode === "channels" ? Math.floor(t / Math.max(1, cols)) : t;
}

/**
 * Tile indices showing filter `f`.
 * @param {string} mode
 * @param {number} f
 * @param {number} cols atlas grid columns
 * @param {number} n number of tiles
 * @returns {number[]}
 */
export function tilesOfFilter(mode, f, cols, n) {
  if (!Number.isInteger(f) || f < 0) return [];
  if (mode !== "channels") return f < n ? [f] : [];
  const out = [];
  for (let t = f * cols; t < Math.min(n, (f + 1) * cols); t++) out.push(t);
  return out;
}

/** @param {RenderProps} props */
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "cnnviz-filter-grid";
  const caption = document.createElement("div");
  caption.className = "cnnviz-caption";
  const error = document.createElement("div");
  error.className = "cnnviz-error";
  error.style.display = "none";

  const grid = createTileGrid({
    label(t) {
      const mode = getStr(model, "mode");
      if (mode !== "channels") return `filter ${t}`;
      const cols = Math.max(1, getPair(model, "grid_shape")[1]);
      return `filter ${Math.floor(t / cols)} · input channel ${t % cols}`;
    },
    onClick(t) {
      const cols = getPair(model, "grid_shape")[1];
      model.set("selected_filter", filterOfTile(getStr(model, "mode"), t, cols));
      model.save_changes();
    },
  });
  const toolbar = document.createElement("div");
  toolbar.className = "cnnviz-toolbar";
  const save = saveButton(
    () => grid.canvas,
    () => fileName("filters", getStr(model, "layer")),
  );
  toolbar.append(caption, save);
  root.append(toolbar, error, grid.el);
  el.append(root);
  injectStyle(root, "cnnviz-style-filter-grid", CSS);
  styleSaveButtons(root);

  const atlas = createBitmapSlot();
  let disposed = false;

  function refresh() {
    const text = getStr(model, "caption") || getStr(model, "layer");
    caption.textContent = text;
    caption.style.display = text ? "" : "none";
    atlas.load(model.get("atlas_png")).then((res) => {
      if (!res || disposed) return;
      error.textContent = res.error ? `could not decode atlas_png: ${res.error}` : "";
      error.style.display = res.error ? "" : "none";
      const mode = getStr(model, "mode");
      const [tileH, tileW] = getPair(model, "tile_shape");
      const [rows, cols] = getPair(model, "grid_shape");
      const n = getInt(model, "n_tiles", rows * cols);
      grid.update({
        atlas: res.bitmap,
        tileH,
        tileW,
        rows,
        cols,
        n,
        tilePx: getInt(model, "tile_px", 48),
        selected: tilesOfFilter(mode, getInt(model, "selected_filter", -1), cols, n),
      });
      atlas.show(res.bitmap);
    });
  }

  const unsubscribe = onChanges(model, TRAITS, refresh);
  refresh();

  return () => {
    disposed = true;
    unsubscribe();
    grid.destroy();
    atlas.dispose();
    root.remove();
  };
}

export default { initialize, render };
