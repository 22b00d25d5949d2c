// @ts-check
// FilterGrid: the weights of a conv layer as a grid of small images.
//   mode "filters":  tile t = filter t (RGB for 3 input channels, grayscale for 1)
//   mode "channels": atlas rows = filters, cols = input channels; tile t = (t / cols, t % cols)
// Clicking a tile selects its filter (`selected_filter`); every tile of that filter is outlined.

import { getInt, getPair, getStr, initialize, onChanges } from "./lib/anywidget.js";
import { createBitmapSlot } from "./lib/codecs.js";
import { errorLine, make, showText } from "./lib/dom.js";
import { fileName, saveButton } from "./lib/save.js";
import { FG, FG2, FONT, injectStyle } from "./lib/style.js";
import { ATLAS_TRAITS, atlasState, createTileGrid } from "./lib/tilegrid.js";

const CSS = `
.cnnviz-filter-grid { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 4px; max-width: 100%; }
.cnnviz-filter-grid .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; }
.cnnviz-filter-grid .cnnviz-caption { font-weight: 600; }
.cnnviz-filter-grid .cnnviz-error { color: ${FG2}; font-style: italic; }
`;

const TRAITS = [
  ...ATLAS_TRAITS,
  "mode",
  "n_filters",
  "n_channels_shown",
  "layer",
  "caption",
  "selected_filter",
];

/**
 * Tile indices showing filter `f`.
 * @param {string} mode
 * @param {number} f
 * @param {number} cols atlas grid columns
 * @param {number} n number of tiles
 */
function tilesOfFilter(mode, f, cols, n) {
  if (!Number.isInteger(f) || f < 0) return [];
  if (mode !== "channels") return f < n ? [f] : [];
  const out = [];
  for (let t = f * cols; t < Math.min(n, (f + 1) * cols); t++) out.push(t);
  return out;
}

/** @param {import("./lib/anywidget.js").RenderProps} props */
function render({ model, el }) {
  const caption = make("div", "cnnviz-caption");
  const error = errorLine();
  const grid = createTileGrid({
    label(t) {
      const mode = getStr(model, "mode");
      if (mode !== "channels") return `filter ${t}`;
      const cols = Math.max(1, getPair(model, "grid_shape")[1]);
      return `filter ${Math.floor(t / cols)} · input channel ${t % cols}`;
    },
    onClick(t) {
      // in "channels" mode, the filter of a tile is its atlas row
      const cols = Math.max(1, getPair(model, "grid_shape")[1]);
      model.set("selected_filter", getStr(model, "mode") === "channels" ? Math.floor(t / cols) : t);
      model.save_changes();
    },
  });
  const save = saveButton(
    () => grid.canvas,
    () => fileName("filters", getStr(model, "layer")),
  );
  const toolbar = make("div", "cnnviz-toolbar", caption, save);
  const root = make("div", "cnnviz-filter-grid", toolbar, error, grid.el);
  el.append(root);
  injectStyle(root, "cnnviz-style-filter-grid", CSS);

  const atlas = createBitmapSlot();

  function refresh() {
    showText(caption, getStr(model, "caption") || getStr(model, "layer"));
    atlas.draw(model.get("atlas_png"), (bitmap, err) => {
      showText(error, err ? `could not decode atlas_png: ${err}` : "");
      const state = atlasState(model, 48);
      const filter = getInt(model, "selected_filter", -1);
      const selected = tilesOfFilter(getStr(model, "mode"), filter, state.cols, state.n);
      grid.update({ ...state, atlas: bitmap, selected });
    });
  }

  const unsubscribe = onChanges(model, TRAITS, refresh);
  refresh();

  return () => {
    unsubscribe();
    grid.destroy();
    atlas.dispose();
    root.remove();
  };
}

export default { initialize, render };
