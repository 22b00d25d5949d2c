// @ts-check
// FeatureMaps: the activations of one layer for one input image, one tile per channel, next to
// the input image. Channels can be sorted by their mean or max activation.

import { getInt, getPair, getStr, onChanges } from "./lib/anywidget.js";
import { createBitmapSlot, formatSig, readArray } from "./lib/codecs.js";
import { drawScaledImage } from "./lib/image.js";
import { fileName, saveButton, styleSaveButtons } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle } from "./lib/style.js";
import { initialize } from "./lib/sync.js";
import { createTileGrid } from "./lib/tilegrid.js";

/** @typedef {import("./lib/anywidget.js").RenderProps} RenderProps */

const CSS = `
.cnnviz-feature-maps { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 6px; max-width: 100%; }
.cnnviz-feature-maps .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; }
.cnnviz-feature-maps .cnnviz-caption { font-weight: 600; }
.cnnviz-feature-maps .cnnviz-sort-label { display: inline-flex; align-items: center; gap: 4px; color: ${FG2}; }
.cnnviz-feature-maps .cnnviz-sort { font: inherit; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 1px 2px; }
.cnnviz-feature-maps .cnnviz-body { display: flex; align-items: flex-start; gap: 12px; max-width: 100%; }
.cnnviz-feature-maps .cnnviz-input { display: block; flex: none; border: 1px solid ${BORDER}; }
.cnnviz-feature-maps .cnnviz-error { color: ${FG2}; font-style: italic; }
`;

const TRAITS = /** @type {const} */ ([
  "atlas_png",
  "tile_shape",
  "grid_shape",
  "n_tiles",
  "channel_max",
  "channel_mean",
  "sort_by",
  "selected_channel",
  "layer",
  "caption",
  "input_png",
  "tile_px",
]);

const SORT_OPTIONS = /** @type {const} */ (["index", "mean", "max"]);

/** On-screen size (CSS px) of the input image's longer side. */
const INPUT_PX = 96;

/**
 * Display order of `n` channels: "index" ascending; "mean"/"max" descending by that statistic,
 * ties (and missing / NaN values, which go last) by channel index.
 * @param {string} sortBy
 * @param {number} n
 * @param {Float32Array} max
 * @param {Float32Array} mean
 * @returns {number[]}
 */
export function displayOrder(sortBy, n, max, mean) {
  const order = Array.from({ length: Math.max(0, n) }, (_, i) => i);
  const stat = sortBy === "mean" ? mean : sortBy === "max" ? max : null;
  if (!stat) return order;
  const key = (/** @type {number} */ c) => {
    const v = c < stat.length ? stat[c] : Number.NaN;
    return Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v;
  };
  const nan = (/** @type {number} */ c) => (c < stat.length ? Number.isNaN(stat[c]) : true);
  return order.sort((a, b) => {
    const na = nan(a);
    const nb = nan(b);
    if (na !== nb) return na ? 1 : -1;
    const d = key(b) - key(a);
    return d > 0 ? 1 : d < 0 ? -1 : a - b;
  });
}

/**
 * Tooltip text of channel `c`: "channel c · max 1.23 · mean 0.456".
 * @param {number} c
 * @param {Float32Array} max
 * @param {Float32Array} mean
 */
export function channelLabel(c, max, mean) {
  let s = `channel ${c}`;
  if (c < max.length) s += ` · max ${formatSig(max[c])}`;
  if (c < mean.length) s += ` · mean ${formatSig(mean[c])}`;
  return s;
}

/** @param {RenderProps} props */
function render({ model, el }) {
  const root = document.createElement("div");
  root.className = "cnnviz-feature-maps";

  const toolbar = document.createElement("div");
  toolbar.className = "cnnviz-toolbar";
  const caption = document.createElement("span");
  caption.className = "cnnviz-caption";
  const sortLabel = document.createElement("label");
  sortLabel.className = "cnnviz-sort-label";
  sortLabel.append("sort by");
  const select = document.createElement("select");
  select.className = "cnnviz-sort";
  for (const opt of SORT_OPTIONS) select.add(new Option(opt, opt));
  sortLabel.append(select);
  const save = saveButton(
    () => grid.canvas,
    () => fileName("feature-maps", getStr(model, "layer")),
  );
  toolbar.append(caption, sortLabel, save);

  const error = document.createElement("div");
  error.className = "cnnviz-error";
  error.style.display = "none";

  const body = document.createElement("div");
  body.className = "cnnviz-body";
  const input = document.createElement("canvas");
  input.className = "cnnviz-input";
  input.style.display = "none";

  /** Channel statistics (`channel_max`, `channel_mean`) of the last draw. */
  let max = /** @type {Float32Array} */ (readArray(null).data);
  let mean = max;

  const grid = createTileGrid({
    label: (c) => channelLabel(c, max, mean),
    onClick(c) {
      model.set("selected_channel", c);
      model.save_changes();
    },
  });
  body.append(input, grid.el);
  root.append(toolbar, error, body);
  el.append(root);
  injectStyle(root, "cnnviz-style-feature-maps", CSS);
  styleSaveButtons(root);

  const onSelect = () => {
    model.set("sort_by", select.value);
    model.save_changes();
  };
  select.addEventListener("change", onSelect);

  const atlas = createBitmapSlot();
  const inputImage = createBitmapSlot();
  let disposed = false;

  function refresh() {
    const text = getStr(model, "caption") || getStr(model, "layer");
    caption.textContent = text;
    caption.style.display = text ? "" : "none";
    const sortBy = getStr(model, "sort_by");
    if (select.value !== sortBy && SORT_OPTIONS.some((o) => o === sortBy)) select.value = sortBy;

    Promise.all([atlas.load(model.get("atlas_png")), inputImage.load(model.get("input_png"))]).then(
      ([a, img]) => {
        if (!a || !img || disposed) return;
        const errors = [];
        if (a.error) errors.push(`could not decode atlas_png: ${a.error}`);
        if (img.error) errors.push(`could not decode input_png: ${img.error}`);
        error.textContent = errors.join("; ");
        error.style.display = errors.length ? "" : "none";

        max = /** @type {Float32Array} */ (readArray(model.get("channel_max")).data);
        mean = /** @type {Float32Array} */ (readArray(model.get("channel_mean")).data);

        const [tileH, tileW] = getPair(model, "tile_shape");
        const [rows, cols] = getPair(model, "grid_shape");
        const n = Math.max(0, Math.min(getInt(model, "n_tiles", rows * cols), rows * cols));
        const selected = getInt(model, "selected_channel", -1);
        grid.update({
          atlas: a.bitmap,
          tileH,
          tileW,
          rows,
          cols,
          n,
          order: displayOrder(getStr(model, "sort_by"), n, max, mean),
          tilePx: getInt(model, "tile_px", 48),
          selected: selected >= 0 ? [selected] : [],
        });
        atlas.show(a.bitmap);

        drawScaledImage(input, img.bitmap, INPUT_PX);
        input.style.display = img.bitmap ? "" : "none";
        inputImage.show(img.bitmap);
      },
    );
  }

  const unsubscribe = onChanges(model, TRAITS, refresh);
  refresh();

  return () => {
    disposed = true;
    unsubscribe();
    select.removeEventListener("change", onSelect);
    grid.destroy();
    atlas.dispose();
    inputImage.dispose();
    root.remove();
  };
}

export default { initialize, render };
