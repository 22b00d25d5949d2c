// @ts-check
// The embedding map's point data as regl-scatterplot takes it: the decoded traits of one draw
// (positions of the layout, classes, colours, misclassified points), its columns, the point
// styling of `highlight_misclassified`, and which points the hidden classes leave shown.

import { getStr } from "../lib/anywidget.js";
import { colorClasses } from "../lib/coloring.js";
import { classColors, UNKNOWN_COLOR } from "./legend.js";

/** @typedef {import("../lib/anywidget.js").AnyModel} AnyModel */
/** @typedef {import("./traits.js").Traits} Traits */

/**
 * Dataset-level arrays of one draw.
 * @typedef {object} Dataset
 * @property {number} n number of points
 * @property {Float32Array} xy positions drawn (N*2)
 * @property {Float32Array} scatterXY `points` (N*2)
 * @property {Float32Array | null} gridXY `grid_points` when it has N positions, else null
 * @property {Int32Array} labels class of each point (-1 unknown; length N)
 * @property {Int32Array} predictions predicted class (-1 unknown; length N)
 * @property {import("../lib/coloring.js").Coloring} coloring the class that colours each point
 * @property {Uint8Array} wrong 1 where prediction and label are known and differ
 * @property {number} nWrong number of misclassified points
 * @property {string[]} colors colour of each class (then UNKNOWN_COLOR for category nClasses)
 * @property {number} nClasses
 */

/**
 * @param {AnyModel} model
 * @param {Traits} traits
 * @returns {Dataset}
 */
export function buildData(model, traits) {
  const scatterXY = traits.points();
  const n = Math.floor(scatterXY.length / 2);
  const grid = traits.grid();
  const gridXY = grid.length >= 2 * n && n > 0 ? grid : null;
  const rawLabels = traits.labels();
  const rawPreds = traits.predictions();
  const labels = new Int32Array(n).fill(-1);
  labels.set(rawLabels.subarray(0, Math.min(n, rawLabels.length)));
  const predictions = new Int32Array(n).fill(-1);
  predictions.set(rawPreds.subarray(0, Math.min(n, rawPreds.length)));
  const coloring = colorClasses(labels, predictions, getStr(model, "color_by"));
  const { nClasses, colorOf } = classColors(model, traits.names(), coloring.classes);
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
 * Column-oriented points for regl-scatterplot: z = colour category, w = misclassified.
 * @param {Dataset} d
 */
export function columns(d) {
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
 * Point styling that depends on `highlight_misclassified` and N.
 * @param {AnyModel} model
 * @param {Dataset | null} data
 */
export function encodingProps(model, data) {
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

/**
 * Indices of the points whose class is not hidden (null: nothing hidden).
 * @param {Dataset} data
 * @param {Set<number>} hidden
 */
export function visibleIndices(data, hidden) {
  if (hidden.size === 0) return null;
  /** @type {number[]} */
  const out = [];
  const classes = data.coloring.classes;
  for (let i = 0; i < data.n; i++) if (!hidden.has(classes[i])) out.push(i);
  return out;
}

/**
 * Whether point i exists and its class is not hidden.
 * @param {Dataset | null} data
 * @param {Set<number>} hidden
 * @param {number} i
 */
export function isShown(data, hidden, i) {
  if (!data || !Number.isInteger(i) || i < 0 || i >= data.n) return false;
  return hidden.size === 0 || !hidden.has(data.coloring.classes[i]);
}
