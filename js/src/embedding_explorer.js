// @ts-check
// EmbeddingExplorer: every dataset image as a point of a 2-D map (t-SNE / PCA of the model's
// penultimate features), coloured by class, drawn with WebGL by regl-scatterplot.
//
// Data (Python -> JS): `points` / `grid_points` float32 (N*2, x0,y0,x1,y1,..., in [-1, 1]);
// `labels` / `predictions` int32 (N, -1 unknown); `confidences` float32 (N); `class_names`,
// `class_colors` ("#rrggbb", one per class); thumbnails as paged sprite atlases (`thumb_pages`,
// `thumb_shape` [h, w], `thumb_cols`, `thumbs_per_page`; see lib/thumbs.js); `neighbours` int32
// and `neighbour_distances` float32 for the selected image.
// Two-way: `layout` ("scatter" | "grid"), `hidden_classes` (list of int), `highlight_misclassified`,
// `show_thumbnails`, `selected_index` (int, -1 none), `selected_indices` (int32 Bytes; written
// as a DataView so it travels as binary), `color_by` ("auto": the label where known, else the
// predicted class; "label"; "prediction"; see lib/coloring.js), `show_regions` (the names of
// `regions` / `point_regions` over the map, see lib/regions.js; a click on one selects its
// points as a lasso does).
//
// Interaction (regl-scatterplot's own): wheel zooms, drag pans, shift-drag lassoes, double-click
// or Escape clears both selections. A click on a point sets `selected_index`; a lasso sets
// `selected_indices` (the library's own selection is always `selected_indices`, restricted to
// the shown classes). `selected_index` is marked by an orange ring on the overlay canvas.
//
// Canvases: `canvas.cnnviz-scatter` (2-D canvas the library copies each WebGL frame into) and
// `canvas.cnnviz-scatter-overlay` above it (selected-image ring and thumbnails), redrawn in the
// same animation frame as the scatter (the library's synchronous `drawing` event). The toolbar's
// "PNG" button saves both, on the plot's background, as one image.
//
// Test hooks. On `canvas.cnnviz-scatter`, updated after each draw: `data-draw-count`,
// `data-points` (points drawn: not hidden), `data-selected` (selected_index),
// `data-selected-count` (points of selected_indices drawn as selected), `data-thumbs` (thumbnails
// on the overlay in the last draw); when the ring of a newly selected image is first drawn,
// `data-ring-index` (that image) and `data-ring-drawn-at` (ms since the epoch,
// performance.timeOrigin + performance.now()). On the root element `.cnnviz-embedding`:
//   root.cnnvizPointToClient(i) -> {x, y} client (viewport) CSS px of point i, or null when it is
//     not drawn (no points yet, out of range, or its class hidden);
//   root.cnnvizLasso(vertices) lasso-selects in data coordinates ([[x, y], ...], the space of
//     `points`), as a shift-drag with the mouse would (sets `selected_indices`);
//   root.cnnvizRegionMembers(r) the points of region r, as a click on its name selects them;
//   root.cnnvizScatterplot the regl-scatterplot instance (benchmarks drive its camera).

import createScatterplot, { createRenderer } from "regl-scatterplot";
import { getInt, getPair, getStr, onChanges } from "./lib/anywidget.js";
import { formatSig, fromInt32, memoDecoder, toBytes, toFloat32, toInt32 } from "./lib/codecs.js";
import { colorClasses } from "./lib/coloring.js";
import { make, showProgress } from "./lib/dom.js";
import { watchPixelRatio } from "./lib/dpr.js";
import { drawScaledImage } from "./lib/image.js";
import { createLegend, legendCss } from "./lib/legend.js";
import { createRegionLayer, parseRegions, regionCss, regionMembers } from "./lib/regions.js";
import { fileName, saveButton, styleSaveButtons } from "./lib/save.js";
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
import { initialize } from "./lib/sync.js";
import { createThumbAtlas } from "./lib/thumbs.js";

/** @typedef {import("./lib/anywidget.js").RenderProps} RenderProps */
/** @typedef {import("./lib/anywidget.js").AnyModel} AnyModel */
/** @typedef {ReturnType<typeof createScatterplot>} Scatterplot */
/** @typedef {ReturnType<typeof createRenderer>} Renderer */
/** @typedef {import("./lib/thumbs.js").ThumbRect} ThumbRect */

/** From this many points on, the plot is created in performance mode. */
const MANY_POINTS = 50_000;

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

/** Default height of the plot (CSS px) when `view_px` is missing. */
const VIEW_PX = 480;
/** Width used before the plot has been laid out. */
const FALLBACK_WIDTH = 640;
/** At most this many thumbnails are drawn on the overlay (more in view: dots only). */
const MAX_THUMBS = 2000;
/** Bounds of the side of a thumbnail drawn on the map (CSS px). */
const THUMB_MIN_PX = 12;
const THUMB_MAX_PX = 72;
/** Target size of the hover thumbnail (CSS px; small images are enlarged by an integer factor). */
const TOOLTIP_THUMB_PX = 96;
/** Size of the selected image in the neighbour strip, and of its neighbours (CSS px). */
const SELF_THUMB_PX = 96;
const NEIGHBOUR_THUMB_PX = 56;
/** Colour of points whose label is unknown or has no class colour. */
const UNKNOWN_COLOR = "#8c8c8c";
/** Used when `class_colors` has fewer entries than there are classes (matplotlib's tab10). */
const TAB10 = [
  "#1f77b4",
  "#ff7f0e",
  "#2ca02c",
  "#d62728",
  "#9467bd",
  "#8c564b",
  "#e377c2",
  "#7f7f7f",
  "#bcbd22",
  "#17becf",
];

/** Traits whose change needs new point data in the scatterplot. */
const DATA_TRAITS = /** @type {const} */ ([
  "points",
  "grid_points",
  "labels",
  "predictions",
  "class_colors",
  "color_by",
]);
const LEGEND_TRAITS = /** @type {const} */ ([
  "class_names",
  "class_colors",
  "labels",
  "predictions",
  "color_by",
  "hidden_classes",
]);
const REGION_TRAITS = /** @type {const} */ (["regions", "point_regions", "show_regions"]);
const THUMB_TRAITS = /** @type {const} */ ([
  "thumb_pages",
  "thumb_shape",
  "thumb_cols",
  "thumbs_per_page",
]);
const STRIP_TRAITS = /** @type {const} */ ([
  "neighbours",
  "neighbour_distances",
  "selected_index",
  "labels",
  "class_names",
]);
const TEXT_TRAITS = /** @type {const} */ (["caption", "status", "progress", "running"]);

/**
 * A checkbox with a label.
 * @param {string} className class of the input
 * @param {string} text
 * @returns {[HTMLLabelElement, HTMLInputElement]}
 */
function checkbox(className, text) {
  const label = /** @type {HTMLLabelElement} */ (make("label", "cnnviz-field"));
  const input = /** @type {HTMLInputElement} */ (make("input", className));
  input.type = "checkbox";
  label.append(input, text);
  return [label, input];
}

/**
 * Dataset-level arrays of one draw.
 * @typedef {object} Dataset
 * @property {number} n number of points
 * @property {Float32Array} xy positions drawn (N*2)
 * @property {Float32Array} scatterXY `points` (N*2)
 * @property {Float32Array | null} gridXY `grid_points` when it has N positions, else null
 * @property {Int32Array} labels class of each point (-1 unknown; length N)
 * @property {Int32Array} predictions predicted class (-1 unknown; length N)
 * @property {import("./lib/coloring.js").Coloring} coloring the class that colours each point
 * @property {Uint8Array} wrong 1 where prediction and label are known and differ
 * @property {number} nWrong number of misclassified points
 * @property {string[]} colors colour of each class (then UNKNOWN_COLOR for category nClasses)
 * @property {number} nClasses
 */

/**
 * Tooltip text: "#12 · label cat · predicted dog (0.98)". Unknown parts are left out.
 * @param {number} i
 * @param {Int32Array} labels
 * @param {Int32Array} predictions
 * @param {Float32Array} confidences
 * @param {string[]} names
 * @returns {string}
 */
export function pointLabel(i, labels, predictions, confidences, names) {
  const name = (/** @type {number} */ c) => (c < names.length ? names[c] : `class ${c}`);
  let s = `#${i}`;
  const label = i < labels.length ? labels[i] : -1;
  if (label >= 0) s += ` · label ${name(label)}`;
  const pred = i < predictions.length ? predictions[i] : -1;
  if (pred >= 0) {
    s += ` · predicted ${name(pred)}`;
    if (i < confidences.length && Number.isFinite(confidences[i])) {
      s += ` (${confidences[i].toFixed(2)})`;
    }
  }
  return s;
}

/**
 * Point size (CSS px) for N points: smaller as the map gets denser.
 * @param {number} n
 */
function basePointSize(n) {
  if (n <= 2000) return 6;
  if (n <= 20000) return 4;
  if (n <= 200000) return 3;
  return 2;
}

/**
 * Draw thumbnail `t` into `canvas` with its longer side about `targetPx` CSS px: enlarged by an
 * integer factor with nearest-neighbour sampling, or shrunk with smoothing when larger.
 * @param {HTMLCanvasElement} canvas
 * @param {ThumbRect | null} t
 * @param {number} targetPx
 * @param {number} [fallbackH] CSS size of the empty canvas when t is null
 * @param {number} [fallbackW]
 */
function drawThumb(canvas, t, targetPx, fallbackH = 0, fallbackW = 0) {
  const dpr = window.devicePixelRatio || 1;
  if (!t) {
    canvas.width = Math.max(1, Math.round(fallbackW * dpr));
    canvas.height = Math.max(1, Math.round(fallbackH * dpr));
    canvas.style.width = `${fallbackW}px`;
    canvas.style.height = `${fallbackH}px`;
    canvas.dataset.scale = "0";
    return;
  }
  drawScaledImage(canvas, t.bitmap, targetPx, t);
}

/**
 * Display size (CSS px) of a thumbnail with `side` atlas px drawn at most `targetPx`.
 * @param {number} h
 * @param {number} w
 * @param {number} targetPx
 * @returns {[number, number]}
 */
function thumbCss(h, w, targetPx) {
  const side = Math.max(h, w, 1);
  const scale = side <= targetPx ? Math.max(1, Math.round(targetPx / side)) : targetPx / side;
  return [h * scale, w * scale];
}

/**
 * Make regl-scatterplot draw its frames straight into the renderer's WebGL canvas.
 *
 * regl-scatterplot 1.x draws every frame into a float32 framebuffer, resolves that with a
 * full-canvas gamma pass into its WebGL canvas and copies the result into the plot's 2-D
 * canvas. With its default gamma of 1 and a context without multisampling, the middle pass
 * changes no pixel (measured: identical in performance mode, at most 2/255 apart with alpha
 * blending), but with software WebGL (SwiftShader) it takes 12-20 ms a frame at 900×480 px,
 * most of a frame. This keeps the library's drawing and its copy to the 2-D canvas (same
 * arguments as its own `copyTo`) and leaves that pass out.
 * @param {Renderer} renderer
 */
function drawDirect(renderer) {
  if (renderer.gamma !== 1) return;
  const { regl, canvas: source } = renderer;
  renderer.render = (draw, target) => {
    regl.clear({ color: [0, 0, 0, 0], depth: 1 });
    draw();
    const ctx = target.getContext("2d");
    if (!ctx) return;
    const { width, height } = target;
    ctx.clearRect(0, 0, width, height);
    const sx = (source.width - width) / 2;
    const sy = (source.height - height) / 2;
    ctx.drawImage(source, sx, sy, width, height, 0, 0, width, height);
  };
}

/**
 * Whether the page's text colour is light (a dark theme).
 * @param {HTMLElement} el
 */
function isDarkTheme(el) {
  const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(getComputedStyle(el).color);
  if (!m) return false;
  const [r, g, b] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return 0.299 * r + 0.587 * g + 0.114 * b > 140;
}

/** @param {RenderProps} props */
function render({ model, el }) {
  const root = make("div", "cnnviz-embedding");

  // --- toolbar --------------------------------------------------------------------------------
  const toolbar = make("div", "cnnviz-toolbar");
  const caption = make("span", "cnnviz-caption");
  const [layoutField, layoutBox] = checkbox("cnnviz-layout", "grid layout");
  layoutBox.title = "snap the map to a grid of images";
  const [wrongField, wrongBox] = checkbox("cnnviz-misclassified", "highlight misclassified");
  const wrongText = /** @type {Text} */ (wrongField.lastChild);
  const [thumbsField, thumbsBox] = checkbox("cnnviz-thumbnails", "thumbnails");
  thumbsBox.title = `draw images instead of dots when at most ${MAX_THUMBS} are in view`;
  const [regionsField, regionsBox] = checkbox("cnnviz-regions-toggle", "regions");
  regionsBox.title = "name the map's regions by their commonest predicted classes";
  const colorBy = /** @type {HTMLSelectElement} */ (make("select", "cnnviz-color-by"));
  colorBy.title = "what colours the points";
  for (const [value, text] of [
    ["auto", "colour: label, else prediction"],
    ["label", "colour: label"],
    ["prediction", "colour: prediction"],
  ]) {
    colorBy.append(new Option(text, value));
  }
  const selection = make("span", "cnnviz-selection");
  const selectionCount = make("span", "cnnviz-selection-count");
  const clearButton = /** @type {HTMLButtonElement} */ (
    make("button", "cnnviz-small cnnviz-clear-selection")
  );
  clearButton.type = "button";
  clearButton.textContent = "clear";
  clearButton.title = "clear the selection";
  selection.append(selectionCount, clearButton);
  const resetButton = /** @type {HTMLButtonElement} */ (
    make("button", "cnnviz-small cnnviz-reset-view")
  );
  resetButton.type = "button";
  resetButton.textContent = "reset view";
  const save = saveButton(
    () => snapshot(),
    () => fileName("embedding", getStr(model, "method"), getStr(model, "arrangement")),
  );
  const progressBox = make("span", "cnnviz-progress-box");
  const progress = /** @type {HTMLProgressElement} */ (make("progress", "cnnviz-progress"));
  progress.max = 1;
  const status = make("span", "cnnviz-status");
  progressBox.append(progress, status);
  toolbar.append(
    caption,
    layoutField,
    wrongField,
    thumbsField,
    regionsField,
    colorBy,
    resetButton,
    save,
    selection,
    progressBox,
  );

  const legend = make("div", "cnnviz-legend");
  const error = make("div", "cnnviz-error");
  error.style.display = "none";

  // --- plot -----------------------------------------------------------------------------------
  const plot = make("div", "cnnviz-plot");
  const canvas = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-scatter"));
  const overlay = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-scatter-overlay"));
  const hint = make("div", "cnnviz-hint");
  hint.textContent = "scroll: zoom · drag: pan · shift-drag: lasso · double-click: clear";
  const tooltip = make("div", "cnnviz-tooltip");
  tooltip.setAttribute("role", "tooltip");
  tooltip.style.display = "none";
  const tooltipThumb = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-tooltip-thumb"));
  const tooltipText = make("div", "cnnviz-tooltip-text");
  tooltip.append(tooltipThumb, tooltipText);
  plot.append(canvas, overlay, hint, tooltip);
  const regionLayer = createRegionLayer(plot, (r) => {
    setSelectedIndices(regionMembers(decodeRegions(model.get("point_regions")), r));
    syncSelectionCount();
  });
  const legendView = createLegend(legend, (c) => {
    const hidden = hiddenSet();
    if (hidden.has(c)) hidden.delete(c);
    else hidden.add(c);
    model.set(
      "hidden_classes",
      [...hidden].sort((a, b) => a - b),
    );
    model.save_changes();
  });

  const strip = make("div", "cnnviz-neighbours");

  root.append(toolbar, legend, error, plot, strip);
  el.append(root);
  injectStyle(root, "cnnviz-style-embedding", CSS);
  styleSaveButtons(root);

  // --- state ----------------------------------------------------------------------------------
  const decodePoints = memoDecoder(toFloat32);
  const decodeGrid = memoDecoder(toFloat32);
  const decodeLabels = memoDecoder(toInt32);
  const decodePreds = memoDecoder(toInt32);
  const decodeConf = memoDecoder(toFloat32);
  const decodeSelected = memoDecoder(toInt32);
  const decodeNeighbours = memoDecoder(toInt32);
  const decodeDistances = memoDecoder(toFloat32);
  const decodeRegions = memoDecoder(toInt32);
  const names = () => {
    const v = model.get("class_names");
    return Array.isArray(v) ? v.map(String) : [];
  };

  /** @type {Dataset | null} what the scatterplot holds */
  let data = null;
  let disposed = false;
  let drawCount = 0;
  let hovered = -1;
  /** a lasso is running (its `select` event must not be taken for a click) */
  let lassoing = false;
  let overlayScheduled = false;
  /** nothing is drawn on the overlay */
  let overlayEmpty = true;
  /** the image whose ring is on the overlay (-1 none) */
  let ringIndex = -1;
  let thumbsDrawn = 0;
  let cssW = 0;
  let cssH = 0;

  const thumbs = createThumbAtlas(() => {
    scheduleOverlay();
    updateRegions();
    if (hovered >= 0) showTooltip(hovered);
    updateStrip();
  });

  // --- WebGL ----------------------------------------------------------------------------------
  const glCanvas = document.createElement("canvas");
  // Many points: square points without blending (regl-scatterplot's performance mode) keep
  // panning fluid; the mode can only be chosen when the plot is created, so it follows how many
  // points the map will have (`n_points`: the points may not be in yet). No multisampling: the
  // library's own frames never had it (they were drawn into a framebuffer without it).
  const manyPoints =
    Math.max(toBytes(model.get("points")).byteLength / 8, getInt(model, "n_points", 0)) >=
    MANY_POINTS;
  const gl = glCanvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
  /** @type {Renderer | null} */
  let renderer = null;
  /** @type {Scatterplot | null} */
  let sp = null;
  const dark = isDarkTheme(root);
  const background = dark ? "#111111" : "#ffffff";
  const initialW = Math.max(50, Math.floor(plot.clientWidth) || FALLBACK_WIDTH);
  const initialH = Math.max(50, getInt(model, "view_px", VIEW_PX));
  if (!gl) {
    showError("WebGL is not available in this browser: the map cannot be drawn.");
  } else {
    try {
      renderer = createRenderer({ canvas: glCanvas });
      drawDirect(renderer);
      renderer.resize(initialW, initialH);
      renderer.refresh();
      sp = createScatterplot({
        renderer,
        canvas,
        width: initialW,
        height: initialH,
        backgroundColor: background,
        pointColorHover: dark ? "#ffffff" : "#000000",
        pointColorActive: dark ? "#ffffff" : "#222222",
        pointSize: 6,
        pointSizeSelected: 2,
        pointOutlineWidth: 2,
        opacity: 1,
        opacityInactiveScale: 0.35,
        colorBy: "valueA",
        lassoColor: SELECT_COLOR,
        lassoInitiatorParentElement: plot,
        lassoLongPressIndicatorParentElement: plot,
        deselectOnDblClick: true,
        deselectOnEscape: true,
        performanceMode: manyPoints,
      });
    } catch (err) {
      showError(`could not start WebGL: ${String(/** @type {Error} */ (err)?.message ?? err)}`);
      sp = null;
    }
  }
  cssW = initialW;
  cssH = initialH;
  plot.style.height = `${initialH}px`;
  sizeOverlay();

  /**
   * Set a data attribute of the scatter canvas when it changes (it is written every frame).
   * @param {string} key
   * @param {string} value
   */
  function setData(key, value) {
    if (canvas.dataset[key] !== value) canvas.dataset[key] = value;
  }

  /** @param {string} text */
  function showError(text) {
    error.textContent = text;
    error.style.display = text ? "" : "none";
  }

  // --- point data -----------------------------------------------------------------------------

  /** @returns {Dataset} */
  function buildData() {
    const scatterXY = decodePoints(model.get("points"));
    const n = Math.floor(scatterXY.length / 2);
    const grid = decodeGrid(model.get("grid_points"));
    const gridXY = grid.length >= 2 * n && n > 0 ? grid : null;
    const rawLabels = decodeLabels(model.get("labels"));
    const rawPreds = decodePreds(model.get("predictions"));
    const labels = new Int32Array(n).fill(-1);
    labels.set(rawLabels.subarray(0, Math.min(n, rawLabels.length)));
    const predictions = new Int32Array(n).fill(-1);
    predictions.set(rawPreds.subarray(0, Math.min(n, rawPreds.length)));
    const coloring = colorClasses(labels, predictions, getStr(model, "color_by"));
    const { nClasses, colorOf } = classColors(coloring.classes);
    const colors = Array.from({ length: nClasses }, (_, c) => colorOf(c));
    colors.push(UNKNOWN_COLOR);
    const wrong = new Uint8Array(n);
    let nWrong = 0;
    for (let i = 0; i < n; i++) {
      if (labels[i] >= 0 && predictions[i] >= 0 && labels[i] !== predictions[i]) {
        wrong[i] = 1;
        nWrong += 1;
      }
    }
    const useGrid = getStr(model, "arrangement") === "grid" && gridXY !== null;
    return {
      n,
      xy: useGrid && gridXY ? gridXY : scatterXY,
      scatterXY,
      gridXY,
      labels,
      predictions,
      coloring,
      wrong,
      nWrong,
      colors,
      nClasses,
    };
  }

  /**
   * How many classes there are (named, coloured, or drawn) and the colour of each.
   * @param {Int32Array} classes colour class of each point
   */
  function classColors(classes) {
    const rawColors = model.get("class_colors");
    const given = Array.isArray(rawColors) ? rawColors.map(String) : [];
    let maxClass = -1;
    for (const c of classes) if (c > maxClass) maxClass = c;
    const nClasses = Math.max(names().length, given.length, maxClass + 1);
    const colorOf = (/** @type {number} */ c) =>
      /^#[0-9a-fA-F]{6}$/.test(given[c] ?? "") ? given[c] : TAB10[c % TAB10.length];
    return { nClasses, colorOf };
  }

  /**
   * Column-oriented points for regl-scatterplot: z = colour category, w = misclassified.
   * @param {Dataset} d
   */
  function columns(d) {
    const x = new Float32Array(d.n);
    const y = new Float32Array(d.n);
    const z = new Float32Array(d.n);
    const w = new Float32Array(d.n);
    for (let i = 0; i < d.n; i++) {
      x[i] = d.xy[2 * i];
      y[i] = d.xy[2 * i + 1];
      const c = d.coloring.classes[i];
      z[i] = c >= 0 && c < d.nClasses ? c : d.nClasses;
      w[i] = d.wrong[i];
    }
    return { x, y, z, w };
  }

  /** Indices of the points whose class is not hidden (null: nothing hidden). */
  function visibleIndices() {
    if (!data) return null;
    const hidden = hiddenSet();
    if (hidden.size === 0) return null;
    /** @type {number[]} */
    const out = [];
    const classes = data.coloring.classes;
    for (let i = 0; i < data.n; i++) if (!hidden.has(classes[i])) out.push(i);
    return out;
  }

  function hiddenSet() {
    const v = model.get("hidden_classes");
    /** @type {Set<number>} */
    const s = new Set();
    if (Array.isArray(v)) for (const c of v) if (Number.isInteger(Number(c))) s.add(Number(c));
    return s;
  }

  /** @param {number} i */
  function isShown(i) {
    if (!data || !Number.isInteger(i) || i < 0 || i >= data.n) return false;
    const hidden = hiddenSet();
    return hidden.size === 0 || !hidden.has(data.coloring.classes[i]);
  }

  /** `selected_indices` restricted to valid, shown points. */
  function shownSelection() {
    const sel = decodeSelected(model.get("selected_indices"));
    /** @type {number[]} */
    const out = [];
    for (const i of sel) if (isShown(i)) out.push(i);
    return out;
  }

  /** Point styling that depends on `highlight_misclassified` and N. */
  function encodingProps() {
    const n = data ? data.n : 0;
    const base = basePointSize(n);
    const baseOpacity = n > 200000 ? 0.6 : n > 20000 ? 0.8 : 1;
    const colors = data ? data.colors : [UNKNOWN_COLOR];
    const highlight = Boolean(model.get("highlight_misclassified")) && (data?.nWrong ?? 0) > 0;
    /** @type {Record<string, unknown>} */
    const props = { pointColor: colors };
    if (highlight && data) {
      const order = [];
      for (let i = 0; i < data.n; i++) if (!data.wrong[i]) order.push(i);
      for (let i = 0; i < data.n; i++) if (data.wrong[i]) order.push(i);
      Object.assign(props, {
        sizeBy: "valueB",
        pointSize: [base, 2 * base + 2],
        opacityBy: "valueB",
        opacity: [Math.min(0.3, baseOpacity), 1],
        pointOrder: order,
      });
    } else {
      Object.assign(props, {
        sizeBy: null,
        pointSize: base,
        opacityBy: null,
        opacity: baseOpacity,
        pointOrder: null,
      });
    }
    return props;
  }

  // Draws are serialised: regl-scatterplot refuses a draw while one is in flight.
  let drawing = false;
  /** the filter or selection changed while a draw was in flight */
  let needFilter = false;
  /** number of points not hidden */
  let shownCount = 0;
  /** @type {{ transition: boolean } | null} */
  let pendingDraw = null;

  /** @param {{ transition?: boolean }} [opts] */
  function requestDraw(opts = {}) {
    const transition = Boolean(opts.transition);
    if (drawing) {
      pendingDraw = { transition: Boolean(pendingDraw?.transition) || transition };
      return;
    }
    runDraw(transition);
  }

  /** @param {boolean} transition */
  function runDraw(transition) {
    if (!sp || disposed) return;
    const scatter = sp;
    const prev = data;
    data = buildData();
    const d = data;
    const canTransition = transition && prev !== null && prev.n === d.n && d.n > 0;
    const visible = visibleIndices();
    drawing = true;
    needFilter = false;
    shownCount = visible ? visible.length : d.n;
    scatter.set(/** @type {any} */ (encodingProps()));
    scatter
      .draw(/** @type {any} */ (columns(d)), {
        zDataType: "categorical",
        wDataType: "categorical",
        transition: canTransition,
        transitionDuration: 500,
        preventFilterReset: false,
        select: shownSelection(),
        ...(visible ? { filter: visible } : {}),
      })
      .catch((err) => {
        if (!disposed) showError(`could not draw the map: ${String(err?.message ?? err)}`);
      })
      .finally(() => {
        drawing = false;
        if (disposed) return;
        // draw() with a point order of a different length resets it: re-apply the encodings.
        scatter.set(/** @type {any} */ (encodingProps()));
        if (pendingDraw) {
          const next = pendingDraw;
          pendingDraw = null;
          runDraw(next.transition);
          return;
        }
        if (needFilter) applyFilter();
        syncSelectionCount();
        updateControls();
        scheduleOverlay();
      });
  }

  function applyFilter() {
    if (!sp || !data) return;
    if (drawing) {
      needFilter = true;
      return;
    }
    needFilter = false;
    const visible = visibleIndices();
    shownCount = visible ? visible.length : data.n;
    if (visible) sp.filter(visible, { preventEvent: true });
    else sp.unfilter({ preventEvent: true });
    sp.select(shownSelection(), { preventEvent: true });
    if (hovered >= 0 && !isShown(hovered)) hideTooltip();
    syncSelectionCount();
    scheduleOverlay();
  }

  function applyEncodings() {
    if (!sp || !data || drawing) return; // a draw in flight re-applies them when done
    sp.set(/** @type {any} */ (encodingProps()));
  }

  function applySelection() {
    if (!sp || !data) return;
    if (drawing) {
      needFilter = true;
      return;
    }
    sp.select(shownSelection(), { preventEvent: true });
    syncSelectionCount();
  }

  function syncSelectionCount() {
    const n = decodeSelected(model.get("selected_indices")).length;
    const shown = sp && data ? sp.get("selectedPoints").length : 0;
    selectionCount.textContent = n > 0 ? `${n} selected` : "";
    selection.style.display = n > 0 ? "" : "none";
    canvas.dataset.selectedCount = String(shown);
  }

  // --- overlay: selected ring and thumbnails ----------------------------------------------------

  function sizeOverlay() {
    const dpr = window.devicePixelRatio || 1;
    overlay.width = Math.max(1, Math.floor(cssW * dpr));
    overlay.height = Math.max(1, Math.floor(cssH * dpr));
    overlay.style.width = `${cssW}px`;
    overlay.style.height = `${cssH}px`;
  }

  function scheduleOverlay() {
    if (overlayScheduled || disposed) return;
    overlayScheduled = true;
    requestAnimationFrame(() => {
      overlayScheduled = false;
      if (!disposed) drawOverlay();
    });
  }

  /** @param {number} i @returns {[number, number] | null} CSS px in the canvas */
  function screenPos(i) {
    if (!sp || !data || !sp.get("isPointsDrawn") || i < 0 || i >= data.n) return null;
    const p = sp.getScreenPosition(i);
    return p ? [p[0], p[1]] : null;
  }

  /**
   * Redraw the overlay; it runs for every frame of the map (while panning too), so an overlay
   * that is empty and stays empty is left alone rather than cleared.
   */
  function drawOverlay() {
    const ctx = overlay.getContext("2d");
    if (!ctx) return;
    const ready = sp !== null && data !== null && sp.get("isPointsDrawn");
    const sel = getInt(model, "selected_index", -1);
    const wantThumbs = Boolean(model.get("show_thumbnails")) && thumbs.valid();
    const pos = ready && isShown(sel) ? screenPos(sel) : null;
    if (overlayEmpty && !pos && !(ready && wantThumbs)) {
      ringIndex = -1;
      setData("thumbs", "0");
      return;
    }
    const dpr = overlay.width / Math.max(1, cssW);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    thumbsDrawn = 0;
    if (sp && data && ready) {
      if (wantThumbs) drawThumbnails(ctx, sp, data);
      if (pos) {
        const r = thumbsDrawn > 0 ? 6 : 9;
        ctx.lineWidth = 4;
        ctx.strokeStyle = dark ? "#000000" : "#ffffff";
        ctx.beginPath();
        ctx.arc(pos[0], pos[1], r, 0, 2 * Math.PI);
        ctx.stroke();
        ctx.lineWidth = 2.5;
        ctx.strokeStyle = SELECT_COLOR;
        ctx.stroke();
        ctx.lineWidth = 1;
        ctx.strokeStyle = dark ? "#ffffff" : "#000000";
        ctx.beginPath();
        ctx.arc(pos[0], pos[1], r + 2.5, 0, 2 * Math.PI);
        ctx.stroke();
      }
    }
    overlayEmpty = !pos && thumbsDrawn === 0;
    setData("thumbs", String(thumbsDrawn));
    if (pos && sel !== ringIndex) {
      // when the ring of a newly selected image was first drawn (benchmarks/selection_latency.py)
      canvas.dataset.ringDrawnAt = (performance.timeOrigin + performance.now()).toFixed(2);
      canvas.dataset.ringIndex = String(sel);
    }
    ringIndex = pos ? sel : -1;
  }

  /**
   * @param {CanvasRenderingContext2D} ctx
   * @param {Scatterplot} scatter
   * @param {Dataset} d
   */
  function drawThumbnails(ctx, scatter, d) {
    const inView = scatter.get("pointsInView");
    const count = inView.length;
    if (count === 0 || count > MAX_THUMBS) return;
    // Drawn in index order (the highest index on top), each centred on its point.
    const order = Int32Array.from(inView).sort();
    /** @type {Float64Array} CSS x, y of each point of `order` */
    const xy = new Float64Array(2 * count);
    for (let k = 0; k < count; k++) {
      const p = scatter.getScreenPosition(order[k]);
      xy[2 * k] = p ? p[0] : Number.NaN;
      xy[2 * k + 1] = p ? p[1] : Number.NaN;
    }
    const side = thumbSide(xy);
    for (let k = 0; k < count; k++) {
      const i = order[k];
      const t = thumbs.get(i);
      if (!t) continue;
      const long = Math.max(t.sw, t.sh, 1);
      const w = (side * t.sw) / long;
      const h = (side * t.sh) / long;
      const x = xy[2 * k] - w / 2;
      const y = xy[2 * k + 1] - h / 2;
      if (!(x < cssW && y < cssH && x + w > 0 && y + h > 0)) continue;
      ctx.imageSmoothingEnabled = side * (window.devicePixelRatio || 1) < long;
      ctx.drawImage(t.bitmap, t.sx, t.sy, t.sw, t.sh, x, y, w, h);
      const c = d.coloring.classes[i];
      ctx.strokeStyle = d.colors[c >= 0 && c < d.nClasses ? c : d.nClasses];
      ctx.lineWidth = 1;
      ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
      thumbsDrawn += 1;
    }
  }

  /**
   * On-screen side of the thumbnails: about the median distance from a point to its nearest
   * neighbour on screen (estimated from up to 128 evenly spaced points), within THUMB_MIN_PX and
   * THUMB_MAX_PX, so that they just about touch: zooming in makes them bigger.
   * @param {Float64Array} xy CSS x, y of the points in view
   */
  function thumbSide(xy) {
    const count = xy.length / 2;
    if (count < 2) return THUMB_MAX_PX;
    const step = Math.max(1, Math.floor(count / 128));
    /** @type {number[]} */
    const nn = [];
    for (let a = 0; a < count; a += step) {
      let best = Number.POSITIVE_INFINITY;
      const ax = xy[2 * a];
      const ay = xy[2 * a + 1];
      for (let b = 0; b < count; b++) {
        if (b === a) continue;
        const dx = xy[2 * b] - ax;
        const dy = xy[2 * b + 1] - ay;
        const d2 = dx * dx + dy * dy;
        if (d2 < best) best = d2;
      }
      if (Number.isFinite(best)) nn.push(Math.sqrt(best));
    }
    nn.sort((p, q) => p - q);
    const median = nn.length ? nn[nn.length >> 1] : THUMB_MAX_PX;
    return Math.max(THUMB_MIN_PX, Math.min(THUMB_MAX_PX, 1.2 * median));
  }

  /**
   * The map as shown: the scatter's last frame (the 2-D canvas keeps it) and the overlay on the
   * plot's background, in a new canvas (for the PNG button).
   * @returns {HTMLCanvasElement}
   */
  function snapshot() {
    const out = document.createElement("canvas");
    out.width = canvas.width || overlay.width;
    out.height = canvas.height || overlay.height;
    const ctx = out.getContext("2d");
    if (!ctx) return out;
    ctx.fillStyle = background;
    ctx.fillRect(0, 0, out.width, out.height);
    if (canvas.width && canvas.height) ctx.drawImage(canvas, 0, 0);
    ctx.drawImage(overlay, 0, 0, out.width, out.height);
    ctx.scale(out.width / Math.max(1, cssW), out.width / Math.max(1, cssW));
    regionLayer.drawInto(ctx, dark);
    return out;
  }

  // --- tooltip --------------------------------------------------------------------------------

  /** @param {number} i */
  function showTooltip(i) {
    if (!data || !isShown(i)) {
      hideTooltip();
      return;
    }
    hovered = i;
    tooltipText.textContent = pointLabel(
      i,
      data.labels,
      data.predictions,
      decodeConf(model.get("confidences")),
      names(),
    );
    const [th, tw] = getPair(model, "thumb_shape");
    const t = thumbs.get(i);
    if (t) {
      drawThumb(tooltipThumb, t, TOOLTIP_THUMB_PX);
      tooltipThumb.style.display = "";
    } else if (thumbs.valid() && th > 0 && tw > 0) {
      // page still decoding: keep the space (the atlas' onLoad redraws the tooltip)
      const [h, w] = thumbCss(th, tw, TOOLTIP_THUMB_PX);
      drawThumb(tooltipThumb, null, TOOLTIP_THUMB_PX, h, w);
      tooltipThumb.style.display = "";
    } else {
      tooltipThumb.style.display = "none";
    }
    tooltip.dataset.index = String(i);
    tooltip.style.display = "";
    placeTooltip();
  }

  function placeTooltip() {
    if (hovered < 0) return;
    const pos = screenPos(hovered);
    if (!pos) return;
    const w = tooltip.offsetWidth;
    const h = tooltip.offsetHeight;
    let left = pos[0] + 12;
    let top = pos[1] + 12;
    if (left + w > cssW) left = Math.max(0, pos[0] - w - 12);
    if (top + h > cssH) top = Math.max(0, pos[1] - h - 12);
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${top}px`;
  }

  function hideTooltip() {
    hovered = -1;
    tooltip.style.display = "none";
    delete tooltip.dataset.index;
  }

  // --- legend ---------------------------------------------------------------------------------

  // The classes that colour points, most frequent first; points coloured by their predicted
  // class are marked (see lib/legend.js).
  function updateLegend() {
    const labels = decodeLabels(model.get("labels"));
    const preds = decodePreds(model.get("predictions"));
    const coloring = colorClasses(labels, preds, getStr(model, "color_by"));
    const { nClasses, colorOf } = classColors(coloring.classes);
    legendView.update({
      names: names(),
      colorOf,
      nClasses,
      coloring: labels.length > 0 ? coloring : null,
      hidden: hiddenSet(),
    });
  }

  function updateRegions() {
    const show = Boolean(model.get("show_regions"));
    regionLayer.update(parseRegions(model.get("regions")), show, (i) => thumbs.get(i));
    placeRegions();
  }

  function placeRegions() {
    const ready = sp !== null && data !== null && sp.get("isPointsDrawn");
    regionLayer.place((i) => (ready ? screenPos(i) : null), cssW, cssH);
  }

  // --- neighbour strip ------------------------------------------------------------------------

  let stripKey = "";
  function updateStrip() {
    const sel = getInt(model, "selected_index", -1);
    const nb = decodeNeighbours(model.get("neighbours"));
    const dist = decodeDistances(model.get("neighbour_distances"));
    const [th, tw] = getPair(model, "thumb_shape");
    /** @type {{ index: number, dist: number, self: boolean }[]} */
    const entries = [];
    if (sel >= 0) entries.push({ index: sel, dist: 0, self: true });
    for (let k = 0; k < nb.length; k++) {
      if (nb[k] === sel || nb[k] < 0) continue;
      entries.push({ index: nb[k], dist: k < dist.length ? dist[k] : Number.NaN, self: false });
    }
    if (entries.length <= 1 && sel < 0) entries.length = 0;
    const key = entries.map((e) => `${e.index}:${e.dist}`).join(",");
    const ready = entries.every((e) => thumbs.get(e.index) !== null || !thumbs.valid());
    // rebuild when the entries changed, or to fill in thumbnails decoded since the last build
    if (key === stripKey && strip.dataset.complete === "true") return;
    stripKey = key;
    strip.dataset.complete = String(ready);
    const labels = data?.labels ?? decodeLabels(model.get("labels"));
    const classNames = names();
    const items = entries.map((e) => {
      const item = make("div", `cnnviz-neighbour${e.self ? " cnnviz-neighbour-self" : ""}`);
      item.dataset.index = String(e.index);
      const c = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-neighbour-thumb"));
      const target = e.self ? SELF_THUMB_PX : NEIGHBOUR_THUMB_PX;
      const t = thumbs.get(e.index);
      if (t) drawThumb(c, t, target);
      else if (th > 0 && tw > 0) drawThumb(c, null, target, ...thumbCss(th, tw, target));
      else drawThumb(c, null, target, target, target);
      const text = make("span", "cnnviz-neighbour-label");
      text.textContent = e.self ? `#${e.index}` : Number.isFinite(e.dist) ? formatSig(e.dist) : "";
      const label = e.index < labels.length ? labels[e.index] : -1;
      const labelName = label >= 0 ? (classNames[label] ?? `class ${label}`) : "";
      item.title = e.self
        ? `selected image #${e.index}${labelName ? ` (${labelName})` : ""}`
        : `#${e.index}${labelName ? ` (${labelName})` : ""} · distance ${formatSig(e.dist)}`;
      item.append(c, text);
      return item;
    });
    strip.replaceChildren(...items);
    strip.style.display = items.length ? "" : "none";
  }

  /** @param {MouseEvent} ev */
  const onStripClick = (ev) => {
    const target = /** @type {Element | null} */ (ev.target);
    const item = /** @type {HTMLElement | null} */ (target?.closest?.(".cnnviz-neighbour") ?? null);
    if (!item || !strip.contains(item)) return;
    const i = Number(item.dataset.index);
    if (!Number.isInteger(i) || i < 0) return;
    setSelectedIndex(i);
  };
  strip.addEventListener("click", onStripClick);

  /** @param {number} i */
  function setSelectedIndex(i) {
    if (getInt(model, "selected_index", -1) === i) return;
    model.set("selected_index", i);
    model.save_changes();
  }

  /** @param {number[]} indices */
  function setSelectedIndices(indices) {
    const sorted = Int32Array.from(indices).sort();
    const old = decodeSelected(model.get("selected_indices"));
    if (old.length === sorted.length && old.every((v, k) => v === sorted[k])) return;
    model.set("selected_indices", fromInt32(sorted));
    model.save_changes();
  }

  // --- scatterplot events -------------------------------------------------------------------------

  /** @type {(() => void)[]} */
  const spOff = [];
  if (sp) {
    const scatter = sp;
    /**
     * @param {string} event
     * @param {(payload: any) => void} handler
     */
    const on = (event, handler) => {
      const sub = scatter.subscribe(/** @type {any} */ (event), handler);
      spOff.push(() => scatter.unsubscribe(/** @type {any} */ (sub)));
    };
    on("drawing", () => {
      drawCount += 1;
      const ds = canvas.dataset;
      ds.drawCount = String(drawCount);
      setData("points", String(data ? shownCount : 0));
      setData("selected", String(getInt(model, "selected_index", -1)));
      drawOverlay();
      placeRegions();
      if (hovered >= 0) placeTooltip();
    });
    on("pointOver", (/** @type {number} */ i) => showTooltip(i));
    on("pointOut", () => hideTooltip());
    on("lassoStart", () => {
      lassoing = true;
    });
    on("lassoEnd", () => {
      lassoing = false;
      setSelectedIndices(scatter.get("selectedPoints"));
      syncSelectionCount();
    });
    on("select", (/** @type {{ points: number[] }} */ ev) => {
      if (lassoing) return; // lassoEnd follows
      // A click on a point: select that one image; the library's selection stays the lasso set.
      const pts = ev.points;
      const i = hovered >= 0 && pts.includes(hovered) ? hovered : (pts[pts.length - 1] ?? -1);
      scatter.select(shownSelection(), { preventEvent: true });
      if (i >= 0) setSelectedIndex(i);
    });
    on("deselect", () => {
      if (lassoing) return;
      // double-click or Escape: clear both selections
      setSelectedIndices([]);
      setSelectedIndex(-1);
      syncSelectionCount();
    });
  }

  // --- controls -------------------------------------------------------------------------------

  /** @param {string} name @param {unknown} value */
  function setTrait(name, value) {
    if (model.get(name) === value) return;
    model.set(name, value);
    model.save_changes();
  }
  const onLayoutToggle = () => setTrait("arrangement", layoutBox.checked ? "grid" : "scatter");
  const onWrongToggle = () => setTrait("highlight_misclassified", wrongBox.checked);
  const onThumbsToggle = () => setTrait("show_thumbnails", thumbsBox.checked);
  const onRegionsToggle = () => setTrait("show_regions", regionsBox.checked);
  const onColorBy = () => setTrait("color_by", colorBy.value);
  const onClear = () => {
    setSelectedIndices([]);
    sp?.select([], { preventEvent: true });
    syncSelectionCount();
  };
  const onReset = () => {
    sp?.zoomToOrigin({ transition: true, transitionDuration: 300 });
  };
  layoutBox.addEventListener("change", onLayoutToggle);
  wrongBox.addEventListener("change", onWrongToggle);
  thumbsBox.addEventListener("change", onThumbsToggle);
  regionsBox.addEventListener("change", onRegionsToggle);
  colorBy.addEventListener("change", onColorBy);
  clearButton.addEventListener("click", onClear);
  resetButton.addEventListener("click", onReset);

  function updateControls() {
    const grid = decodeGrid(model.get("grid_points"));
    const n = Math.floor(decodePoints(model.get("points")).length / 2);
    const hasGrid = n > 0 && grid.length >= 2 * n;
    layoutBox.disabled = !hasGrid;
    layoutField.classList.toggle("cnnviz-disabled", !hasGrid);
    layoutField.title = hasGrid ? "" : "no grid layout available";
    layoutBox.checked = getStr(model, "arrangement") === "grid";
    wrongBox.checked = Boolean(model.get("highlight_misclassified"));
    thumbsBox.checked = Boolean(model.get("show_thumbnails"));
    regionsBox.checked = Boolean(model.get("show_regions"));
    colorBy.value = getStr(model, "color_by") || "auto";
    colorBy.style.display = data?.predictions.some((p) => p >= 0) ? "" : "none";
    const nThumbs = getInt(model, "thumbs_per_page", 0);
    thumbsField.style.display = nThumbs > 0 ? "" : "none";
    wrongText.textContent = `highlight misclassified (${data?.nWrong ?? 0})`;
  }

  function updateText() {
    showProgress(model, { root, caption, status, progress });
  }

  function updateThumbs() {
    const pages = model.get("thumb_pages");
    const [h, w] = getPair(model, "thumb_shape");
    thumbs.update({
      pages: Array.isArray(pages) ? pages : [],
      h,
      w,
      cols: getInt(model, "thumb_cols", 0),
      perPage: getInt(model, "thumbs_per_page", 0),
    });
    stripKey = "";
    updateStrip();
    scheduleOverlay();
    updateControls();
  }

  // --- size -----------------------------------------------------------------------------------

  function resize() {
    if (disposed) return;
    const w = Math.max(50, Math.floor(plot.clientWidth) || cssW || FALLBACK_WIDTH);
    const h = Math.max(50, getInt(model, "view_px", VIEW_PX));
    const dprNow = window.devicePixelRatio || 1;
    if (w === cssW && h === cssH && overlay.width === Math.floor(w * dprNow)) return;
    cssW = w;
    cssH = h;
    plot.style.height = `${h}px`;
    sizeOverlay();
    if (renderer && sp) {
      renderer.resize(w, h);
      renderer.refresh();
      sp.set({ width: w, height: h });
    }
    scheduleOverlay();
  }
  const forceResize = () => {
    cssW = 0;
    resize();
  };
  const observer = typeof ResizeObserver !== "undefined" ? new ResizeObserver(resize) : null;
  observer?.observe(plot);
  const unwatchDpr = watchPixelRatio(forceResize);

  // --- test hooks -----------------------------------------------------------------------------

  Object.assign(root, {
    /** @param {number} i */
    cnnvizPointToClient(i) {
      if (!isShown(i)) return null;
      const pos = screenPos(i);
      if (!pos) return null;
      const r = canvas.getBoundingClientRect();
      return { x: r.left + pos[0], y: r.top + pos[1] };
    },
    /** @param {[number, number][]} vertices */
    cnnvizLasso(vertices) {
      if (!sp) return;
      lassoing = true;
      sp.lassoSelect(vertices, { isGl: true });
    },
    /** @param {number} r the points of region r (what a click on its name selects) */
    cnnvizRegionMembers(r) {
      return regionMembers(decodeRegions(model.get("point_regions")), r);
    },
    cnnvizScatterplot: sp,
  });

  // --- wiring ---------------------------------------------------------------------------------

  const unsubscribers = [
    onChanges(model, DATA_TRAITS, () => {
      requestDraw();
      updateControls();
    }),
    onChanges(model, ["arrangement"], () => {
      requestDraw({ transition: true });
      updateControls();
    }),
    onChanges(model, LEGEND_TRAITS, updateLegend),
    onChanges(model, REGION_TRAITS, () => {
      updateRegions();
      updateControls();
    }),
    onChanges(model, ["hidden_classes"], applyFilter),
    onChanges(model, ["highlight_misclassified"], () => {
      applyEncodings();
      updateControls();
    }),
    onChanges(model, ["show_thumbnails"], () => {
      scheduleOverlay();
      updateControls();
    }),
    onChanges(model, ["selected_index"], () => {
      canvas.dataset.selected = String(getInt(model, "selected_index", -1));
      scheduleOverlay();
    }),
    onChanges(model, ["selected_indices"], applySelection),
    onChanges(model, ["confidences", "class_names"], () => {
      if (hovered >= 0) showTooltip(hovered);
    }),
    onChanges(model, THUMB_TRAITS, updateThumbs),
    onChanges(model, STRIP_TRAITS, updateStrip),
    onChanges(model, TEXT_TRAITS, updateText),
    onChanges(model, ["view_px"], resize),
  ];

  updateText();
  updateLegend();
  updateThumbs();
  updateRegions();
  updateControls();
  canvas.dataset.drawCount = "0";
  canvas.dataset.performanceMode = String(manyPoints && sp !== null);
  canvas.dataset.points = "0";
  canvas.dataset.selected = String(getInt(model, "selected_index", -1));
  requestDraw();
  syncSelectionCount();

  return () => {
    disposed = true;
    for (const off of unsubscribers) off();
    for (const off of spOff) off();
    legendView.dispose();
    regionLayer.dispose();
    regionsBox.removeEventListener("change", onRegionsToggle);
    colorBy.removeEventListener("change", onColorBy);
    strip.removeEventListener("click", onStripClick);
    layoutBox.removeEventListener("change", onLayoutToggle);
    wrongBox.removeEventListener("change", onWrongToggle);
    thumbsBox.removeEventListener("change", onThumbsToggle);
    clearButton.removeEventListener("click", onClear);
    resetButton.removeEventListener("click", onReset);
    observer?.disconnect();
    unwatchDpr();
    sp?.destroy();
    renderer?.destroy();
    // free the WebGL context now rather than at garbage collection (browsers cap live contexts)
    gl?.getExtension("WEBGL_lose_context")?.loseContext();
    thumbs.dispose();
    root.remove();
  };
}

export default { initialize, render };
