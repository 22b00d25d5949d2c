// @ts-check
// FeatureMaps: the activations of one layer for one input image, one tile per channel, next to
// the input image. Channels can be sorted by their mean or max activation.

import { getInt, getStr, initialize, onChanges } from "./lib/anywidget.js";
import { createBitmapSlot, formatSig, readArray } from "./lib/codecs.js";
import { errorLine, make, showText } from "./lib/dom.js";
import { drawScaledImage } from "./lib/image.js";
import { fileName, saveButton } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle } from "./lib/style.js";
import { ATLAS_TRAITS, atlasState, createTileGrid } from "./lib/tilegrid.js";

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

const TRAITS = [
  ...ATLAS_TRAITS,
  "channel_max",
  "channel_mean",
  "sort_by",
  "selected_channel",
  "layer",
  "caption",
  "input_png",
];

const SORT_OPTIONS = ["index", "mean", "max"];

/** On-screen size (CSS px) of the input image's longer side. */
const INPUT_PX = 96;

/**
 * Display order of `n` channels: "index" ascending; "mean"/"max" descending by that statistic,
 * ties (and missing / NaN values, which go last) by channel index.
 * @param {string} sortBy
 * @param {number} n
 * @param {Float32Array} max
 * @param {Float32Array} mean
 */
function displayOrder(sortBy, n, max, mean) {
  const order = Array.from({ length: Math.max(0, n) }, (_, i) => i);
  const stat = sortBy === "mean" ? mean : sortBy === "max" ? max : null;
  if (!stat) return order;
  const value = (/** @type {number} */ c) => (c < stat.length ? stat[c] : Number.NaN);
  return order.sort((a, b) => {
    const [va, vb] = [value(a), value(b)];
    if (Number.isNaN(va) !== Number.isNaN(vb)) return Number.isNaN(va) ? 1 : -1;
    const d = vb - va;
    return d > 0 ? 1 : d < 0 ? -1 : a - b;
  });
}

/**
 * Tooltip text of channel `c`: "channel c · max 1.23 · mean 0.456".
 * @param {number} c
 * @param {Float32Array} max
 * @param {Float32Array} mean
 */
function channelLabel(c, max, mean) {
  let s = `channel ${c}`;
  if (c < max.length) s += ` · max ${formatSig(max[c])}`;
  if (c < mean.length) s += ` · mean ${formatSig(mean[c])}`;
  return s;
}

/** @param {import("./lib/anywidget.js").RenderProps} props */
function render({ model, el }) {
  const caption = make("span", "cnnviz-caption");
  const select = make("select", "cnnviz-sort");
  for (const opt of SORT_OPTIONS) select.add(new Option(opt, opt));
  const save = saveButton(
    () => grid.canvas,
    () => fileName("feature-maps", getStr(model, "layer")),
  );
  const sortLabel = make("label", "cnnviz-sort-label", "sort by", select);
  const toolbar = make("div", "cnnviz-toolbar", caption, sortLabel, save);
  const error = errorLine();
  const input = make("canvas", "cnnviz-input");
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
  const root = make("div", "cnnviz-feature-maps", toolbar, error);
  root.append(make("div", "cnnviz-body", input, grid.el));
  el.append(root);
  injectStyle(root, "cnnviz-style-feature-maps", CSS);

  const onSelect = () => {
    model.set("sort_by", select.value);
    model.save_changes();
  };
  select.addEventListener("change", onSelect);

  const atlas = createBitmapSlot();
  const inputImage = createBitmapSlot();

  function refresh() {
    showText(caption, getStr(model, "caption") || getStr(model, "layer"));
    const sortBy = getStr(model, "sort_by");
    if (select.value !== sortBy && SORT_OPTIONS.some((o) => o === sortBy)) select.value = sortBy;

    Promise.all([atlas.load(model.get("atlas_png")), inputImage.load(model.get("input_png"))]).then(
      ([a, img]) => {
        if (!a || !img) return;
        const errors = [];
        if (a.error) errors.push(`could not decode atlas_png: ${a.error}`);
        if (img.error) errors.push(`could not decode input_png: ${img.error}`);
        showText(error, errors.join("; "));

        max = /** @type {Float32Array} */ (readArray(model.get("channel_max")).data);
        mean = /** @type {Float32Array} */ (readArray(model.get("channel_mean")).data);

        const state = atlasState(model, 48);
        const selected = getInt(model, "selected_channel", -1);
        grid.update({
          ...state,
          atlas: a.bitmap,
          order: displayOrder(getStr(model, "sort_by"), state.n, max, mean),
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
    unsubscribe();
    select.removeEventListener("change", onSelect);
    grid.destroy();
    atlas.dispose();
    inputImage.dispose();
    root.remove();
  };
}

export default { initialize, render };
