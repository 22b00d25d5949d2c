// @ts-check
// EmbeddingExplorer: every dataset image as a point of a 2-D map (t-SNE / PCA of the model's
// penultimate features), coloured by class, drawn with WebGL by regl-scatterplot.
//
// Data (Python -> JS), arrays in the array codec (lib/codecs.js readArray): `points` /
// `grid_points` float32 (N, 2: x0,y0,x1,y1,..., in [-1, 1]);
// `labels` / `predictions` int32 (N, -1 unknown); `confidences` float32 (N); `class_names`,
// `class_colors` ("#rrggbb", one per class); thumbnails as paged sprite atlases (`thumb_pages`,
// `thumb_shape` [h, w], `thumb_cols`, `thumbs_per_page`; see lib/thumbs.js); `neighbours` int32
// and `neighbour_distances` float32 for the selected image.
// Two-way: `arrangement` ("scatter" | "grid"), `hidden_classes` (list of int), `highlight_misclassified`,
// `show_thumbnails`, `selected_index` (int, -1 none), `selected_indices` (int32; written
// with the codec's writeArray, so it travels as binary), `color_by` ("auto": the label where known, else the
// predicted class; "label"; "prediction"; see lib/coloring.js), `show_regions` (the names of
// `regions` / `point_regions` over the map, see lib/regions.js; a click on one selects its
// points as a lasso does).
//
// Interaction (regl-scatterplot's own): wheel zooms, drag pans, shift-drag lassoes, double-click
// or Escape clears both selections. A click on a point sets `selected_index`; a lasso sets
// `selected_indices` (the library's own selection is always `selected_indices`, restricted to
// the shown classes). `selected_index` is marked by an orange ring on the overlay canvas.
//
// Parts, in embedding/: plot.js (the plot element with its two canvases; regl-scatterplot's
// start, events and size; the PNG), scatter.js (the decoded traits, the point data of a draw, its
// draws, the filter, the selection), thumbnails.js (the overlay canvas: thumbnails and the
// selected image's ring), tooltip.js, neighbours.js (the neighbour strip), selection.js (both
// selections, the lasso, the named regions), legend.js and toolbar.js. Each documents its test
// hooks (data-* attributes, most on `canvas.cnnviz-scatter`). On the root element
// `.cnnviz-embedding`:
//   root.cnnvizPointToClient(i) -> {x, y} client (viewport) CSS px of point i, or null when it is
//     not drawn (no points yet, out of range, or its class hidden);
//   root.cnnvizLasso(vertices) lasso-selects in data coordinates ([[x, y], ...], the space of
//     `points`), as a shift-drag with the mouse would (sets `selected_indices`);
//   root.cnnvizRegionMembers(r) the points of region r, as a click on its name selects them;
//   root.cnnvizScatterplot the regl-scatterplot instance (benchmarks drive its camera).

import { createClassLegend, legendCss } from "./embedding/legend.js";
import { createNeighbours } from "./embedding/neighbours.js";
import { createPlot } from "./embedding/plot.js";
import { createScatter, createTraits } from "./embedding/scatter.js";
import { createSelection } from "./embedding/selection.js";
import { createOverlay } from "./embedding/thumbnails.js";
import { createToolbar } from "./embedding/toolbar.js";
import { createTooltip } from "./embedding/tooltip.js";
import { getInt, getPair, getStr, initialize, onChanges } from "./lib/anywidget.js";
import { createProgress, errorLine, make, showText } from "./lib/dom.js";
import { watchPixelRatio } from "./lib/dpr.js";
import { regionCss } from "./lib/regions.js";
import { fileName, saveButton } from "./lib/save.js";
import {
  BG,
  BORDER,
  FG,
  FG2,
  FONT,
  injectStyle,
  SELECT_COLOR,
  TOOLTIP_RULES,
} from "./lib/style.js";
import { createThumbAtlas } from "./lib/thumbs.js";

const CSS = `
.cnnviz-embedding { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 6px; max-width: 100%; min-width: 0; }
.cnnviz-embedding .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; }
.cnnviz-embedding .cnnviz-caption { font-weight: 600; }
.cnnviz-embedding .cnnviz-field { display: inline-flex; align-items: center; gap: 4px; color: ${FG2}; cursor: pointer; }
.cnnviz-embedding .cnnviz-field input { margin: 0; }
.cnnviz-embedding .cnnviz-field.cnnviz-disabled { opacity: 0.5; cursor: default; }
.cnnviz-embedding button.cnnviz-small {
  font: inherit; font-size: 12px; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 0 6px; cursor: pointer;
}
.cnnviz-embedding .cnnviz-selection { color: ${FG2}; display: inline-flex; align-items: center; gap: 6px; }
.cnnviz-embedding .cnnviz-progress-box { display: inline-flex; align-items: center; gap: 8px; color: ${FG2}; font-size: 12px; }
.cnnviz-embedding .cnnviz-progress { width: 120px; height: 10px; }
.cnnviz-embedding[data-running="false"] .cnnviz-progress { opacity: 0.5; }
.cnnviz-embedding .cnnviz-error { color: ${FG2}; font-style: italic; }
.cnnviz-embedding select.cnnviz-color-by { font: inherit; font-size: 12px; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; }
${legendCss(".cnnviz-embedding")}${regionCss(".cnnviz-embedding")}.cnnviz-embedding .cnnviz-plot { position: relative; width: 100%; border: 1px solid ${BORDER}; box-sizing: border-box; overflow: hidden; line-height: 0; }
.cnnviz-embedding .cnnviz-scatter { display: block; }
.cnnviz-embedding .cnnviz-scatter-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.cnnviz-embedding .cnnviz-hint { position: absolute; right: 6px; bottom: 4px; font: 11px/1.2 ${FONT}; color: ${FG2}; opacity: 0.8; pointer-events: none; }
.cnnviz-embedding .cnnviz-tooltip { ${TOOLTIP_RULES} display: flex; flex-direction: column; align-items: flex-start; gap: 3px; padding: 4px 6px; line-height: 1.4; }
.cnnviz-embedding .cnnviz-tooltip-thumb { display: block; image-rendering: pixelated; }
.cnnviz-embedding .cnnviz-neighbours { display: flex; align-items: flex-end; gap: 6px; overflow-x: auto; padding-bottom: 2px; min-height: 0; }
.cnnviz-embedding .cnnviz-neighbour { display: flex; flex-direction: column; align-items: center; gap: 2px; cursor: pointer; flex: none; font-size: 11px; color: ${FG2}; font-variant-numeric: tabular-nums; }
.cnnviz-embedding .cnnviz-neighbour canvas { display: block; border: 2px solid transparent; image-rendering: pixelated; }
.cnnviz-embedding .cnnviz-neighbour:hover canvas { border-color: ${BORDER}; }
.cnnviz-embedding .cnnviz-neighbour-self canvas { border-color: ${SELECT_COLOR}; }
.cnnviz-embedding .cnnviz-neighbour-self { color: ${FG}; font-weight: 600; margin-right: 6px; }
`;

/** Traits whose change needs new point data in the scatterplot. */
const DATA_TRAITS = ["points", "grid_points", "labels", "predictions", "class_colors", "color_by"];
const LEGEND_TRAITS = [
  "class_names",
  "class_colors",
  "labels",
  "predictions",
  "color_by",
  "hidden_classes",
];
const REGION_TRAITS = ["regions", "point_regions", "show_regions"];
const THUMB_TRAITS = ["thumb_pages", "thumb_shape", "thumb_cols", "thumbs_per_page"];
const STRIP_TRAITS = [
  "neighbours",
  "neighbour_distances",
  "selected_index",
  "labels",
  "class_names",
];

/** @param {import("./lib/anywidget.js").RenderProps} props */
function render({ model, el }) {
  const root = make("div", "cnnviz-embedding");
  const traits = createTraits(model);
  const status = createProgress(model, root, "span");
  const error = errorLine();
  const onError = (/** @type {string} */ text) => showText(error, text);
  const plot = createPlot({ model, onError, onResize: () => overlay.schedule() });
  const scatter = createScatter({
    model,
    traits,
    plot,
    onError,
    onDrawn() {
      selection.syncCount();
      toolbar.update();
      overlay.schedule();
    },
    onFiltered() {
      const hovered = tooltip.hovered();
      if (hovered >= 0 && !scatter.isShown(hovered)) tooltip.hide();
      selection.syncCount();
      overlay.schedule();
    },
  });
  const thumbs = createThumbAtlas(() => {
    overlay.schedule();
    selection.updateRegions();
    tooltip.refresh();
    neighbours.update();
  });
  const view = { model, traits, plot, scatter, thumbs };
  const overlay = createOverlay(view);
  const hint = "scroll: zoom · drag: pan · shift-drag: lasso · double-click: clear";
  const tooltip = createTooltip(view);
  plot.el.append(make("div", "cnnviz-hint", hint), tooltip.el);
  const selection = createSelection(view, tooltip.hovered);
  const legend = createClassLegend(view);
  const toolbar = createToolbar(view);
  const neighbours = createNeighbours(view, selection.setIndex);
  const save = saveButton(
    () => plot.snapshot(selection.drawRegions),
    () => fileName("embedding", getStr(model, "method"), getStr(model, "arrangement")),
  );
  const controls = [status.caption, ...toolbar.controls, save, selection.el, status.box];
  const bar = make("div", "cnnviz-toolbar", ...controls);
  root.append(bar, legend.el, error, plot.el, neighbours.el);
  el.append(root);
  injectStyle(root, "cnnviz-style-embedding", CSS);
  plot.start(root);

  Object.assign(root, {
    /** @param {number} i */
    cnnvizPointToClient(i) {
      const pos = scatter.isShown(i) ? scatter.screenPos(i) : null;
      if (!pos) return null;
      const r = plot.canvas.getBoundingClientRect();
      return { x: r.left + pos[0], y: r.top + pos[1] };
    },
    ...selection.hooks,
    cnnvizScatterplot: plot.sp,
  });

  const updateThumbs = () => {
    const pages = model.get("thumb_pages");
    const [h, w] = getPair(model, "thumb_shape");
    const cols = getInt(model, "thumb_cols", 0);
    const perPage = getInt(model, "thumbs_per_page", 0);
    thumbs.update({ pages: Array.isArray(pages) ? pages : [], h, w, cols, perPage });
    neighbours.reset();
    neighbours.update();
    overlay.schedule();
    toolbar.update();
  };
  const unsubscribers = [
    onChanges(model, DATA_TRAITS, () => {
      scatter.requestDraw();
      toolbar.update();
    }),
    onChanges(model, ["arrangement"], () => {
      scatter.requestDraw({ transition: true });
      toolbar.update();
    }),
    onChanges(model, LEGEND_TRAITS, legend.update),
    onChanges(model, REGION_TRAITS, () => {
      selection.updateRegions();
      toolbar.update();
    }),
    onChanges(model, ["hidden_classes"], scatter.applyFilter),
    onChanges(model, ["highlight_misclassified"], () => {
      scatter.applyEncodings();
      toolbar.update();
    }),
    onChanges(model, ["show_thumbnails"], () => {
      overlay.schedule();
      toolbar.update();
    }),
    onChanges(model, ["selected_index"], () => {
      plot.canvas.dataset.selected = String(getInt(model, "selected_index", -1));
      overlay.schedule();
    }),
    onChanges(model, ["selected_indices"], () => {
      if (scatter.applySelection()) selection.syncCount();
    }),
    onChanges(model, ["confidences", "class_names"], tooltip.refresh),
    onChanges(model, THUMB_TRAITS, updateThumbs),
    onChanges(model, STRIP_TRAITS, neighbours.update),
    status.off,
    onChanges(model, ["view_px"], plot.resize),
    watchPixelRatio(plot.forceResize),
  ];
  const observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(plot.resize) : null;
  observer?.observe(plot.el);

  legend.update();
  updateThumbs();
  selection.updateRegions();
  toolbar.update();
  scatter.requestDraw();
  selection.syncCount();

  return () => {
    for (const off of unsubscribers) off();
    observer?.disconnect();
    for (const part of [scatter, overlay, legend, selection, toolbar, neighbours, plot]) {
      part.destroy();
    }
    thumbs.dispose();
    root.remove();
  };
}

export default { initialize, render };
