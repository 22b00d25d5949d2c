// @ts-check
// The embedding map's points: the traits as the view reads them (arrays decoded once per trait
// value by lib/codecs.js readArray, class names, the hidden classes); the point data of one draw
// as regl-scatterplot takes it (positions of the layout, colour classes and colours,
// misclassified points, the point styling of `highlight_misclassified`, the points the hidden
// classes leave shown); and its draws by regl-scatterplot (serialised: the library refuses a draw
// while one is in flight; a layout change morphs the points), with the hidden classes as its
// filter, `selected_indices` as its selection, and where a point is on screen.
//
// Test hooks on `canvas.cnnviz-scatter`, updated after each frame: `data-draw-count`,
// `data-points` (points drawn: not hidden), `data-selected` (selected_index).

import { getInt, getStr } from "../lib/anywidget.js";
import { readArray } from "../lib/codecs.js";
import { classColors, colorClasses, UNKNOWN_COLOR } from "../lib/coloring.js";

/** @typedef {import("../lib/anywidget.js").AnyModel} AnyModel */

/** @param {AnyModel} model */
export function createTraits(model) {
  /** @param {string} name */
  const f32 = (name) => () => /** @type {Float32Array} */ (readArray(model.get(name)).data);
  /** @param {string} name */
  const i32 = (name) => () => /** @type {Int32Array} */ (readArray(model.get(name)).data);
  return {
    /** `points` (N*2) */
    points: f32("points"),
    /** `grid_points` (N*2, or empty) */
    grid: f32("grid_points"),
    labels: i32("labels"),
    predictions: i32("predictions"),
    confidences: f32("confidences"),
    /** `selected_indices` */
    selected: i32("selected_indices"),
    neighbours: i32("neighbours"),
    distances: f32("neighbour_distances"),
    /** `point_regions`: each point's region (-1 none) */
    pointRegions: i32("point_regions"),
    /** @returns {string[]} */
    names() {
      const v = model.get("class_names");
      return Array.isArray(v) ? v.map(String) : [];
    },
    /** `hidden_classes` as a set. */
    hidden() {
      const v = model.get("hidden_classes");
      /** @type {Set<number>} */
      const s = new Set();
      if (Array.isArray(v)) for (const c of v) if (Number.isInteger(Number(c))) s.add(Number(c));
      return s;
    },
  };
}

/** @typedef {ReturnType<typeof createTraits>} Traits */

/**
 * Dataset-level arrays of one draw.
 * @typedef {object} Dataset
 * @property {number} n number of points
 * @property {Float32Array} xy positions drawn (N*2): `grid_points` in the grid layout (when it
 *   has N positions), else `points`
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
  const points = traits.points();
  const n = Math.floor(points.length / 2);
  const grid = traits.grid();
  const useGrid = getStr(model, "arrangement") === "grid" && grid.length >= 2 * n && n > 0;
  /** The trait `raw` cut to, or padded with -1 to, N values. @param {Int32Array} raw */
  const perPoint = (raw) => {
    const out = new Int32Array(n).fill(-1);
    out.set(raw.subarray(0, Math.min(n, raw.length)));
    return out;
  };
  const labels = perPoint(traits.labels());
  const predictions = perPoint(traits.predictions());
  const coloring = colorClasses(labels, predictions, getStr(model, "color_by"));
  const { nClasses, colorOf } = classColors(model, traits.names(), coloring.classes);
  const colors = [...Array.from({ length: nClasses }, (_, c) => colorOf(c)), UNKNOWN_COLOR];
  const wrong = new Uint8Array(n);
  let nWrong = 0;
  for (let i = 0; i < n; i++) {
    if (labels[i] >= 0 && predictions[i] >= 0 && labels[i] !== predictions[i]) {
      wrong[i] = 1;
      nWrong += 1;
    }
  }
  const xy = useGrid ? grid : points;
  return { n, xy, labels, predictions, coloring, wrong, nWrong, colors, nClasses };
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

/**
 * Set a data attribute of `el` when it changes (some are written every frame).
 * @param {HTMLElement} el
 * @param {string} key
 * @param {string} value
 */
export function setData(el, key, value) {
  if (el.dataset[key] !== value) el.dataset[key] = value;
}

/**
 * @param {object} o
 * @param {import("../lib/anywidget.js").AnyModel} o.model
 * @param {Traits} o.traits
 * @param {import("./plot.js").Plot} o.plot
 * @param {(text: string) => void} o.onError
 * @param {() => void} o.onDrawn after a draw of new point data
 * @param {() => void} o.onFiltered after the hidden classes were applied
 */
export function createScatter({ model, traits, plot, onError, onDrawn, onFiltered }) {
  const { canvas } = plot;
  /** @type {Dataset | null} what the scatterplot holds */
  let data = null;
  let destroyed = false;
  let drawCount = 0;
  // Draws are serialised: regl-scatterplot refuses a draw while one is in flight.
  let drawing = false;
  /** the filter or selection changed while a draw was in flight */
  let needFilter = false;
  /** number of points not hidden */
  let shownCount = 0;
  /** @type {{ transition: boolean } | null} */
  let pendingDraw = null;

  canvas.dataset.drawCount = "0";
  canvas.dataset.points = "0";
  canvas.dataset.selected = String(getInt(model, "selected_index", -1));
  plot.on("drawing", () => {
    drawCount += 1;
    canvas.dataset.drawCount = String(drawCount);
    setData(canvas, "points", String(data ? shownCount : 0));
    setData(canvas, "selected", String(getInt(model, "selected_index", -1)));
  });

  /** `selected_indices` restricted to valid, shown points. */
  function shownSelection() {
    const hidden = traits.hidden();
    return Array.from(traits.selected()).filter((i) => isShown(data, hidden, i));
  }

  /** @param {boolean} transition */
  function runDraw(transition) {
    const scatter = plot.sp;
    if (!scatter || destroyed) return;
    const prev = data;
    data = buildData(model, traits);
    const d = data;
    const canTransition = transition && prev !== null && prev.n === d.n && d.n > 0;
    const visible = visibleIndices(d, traits.hidden());
    drawing = true;
    needFilter = false;
    shownCount = visible ? visible.length : d.n;
    scatter.set(/** @type {any} */ (encodingProps(model, d)));
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
        if (!destroyed) onError(`could not draw the map: ${String(err?.message ?? err)}`);
      })
      .finally(() => {
        drawing = false;
        if (destroyed) return;
        // draw() with a point order of a different length resets it: re-apply the encodings.
        scatter.set(/** @type {any} */ (encodingProps(model, data)));
        if (pendingDraw) {
          const next = pendingDraw;
          pendingDraw = null;
          runDraw(next.transition);
          return;
        }
        if (needFilter) applyFilter();
        onDrawn();
      });
  }

  function applyFilter() {
    const sp = plot.sp;
    if (!sp || !data) return;
    if (drawing) {
      needFilter = true;
      return;
    }
    needFilter = false;
    const visible = visibleIndices(data, traits.hidden());
    shownCount = visible ? visible.length : data.n;
    if (visible) sp.filter(visible, { preventEvent: true });
    else sp.unfilter({ preventEvent: true });
    sp.select(shownSelection(), { preventEvent: true });
    onFiltered();
  }

  return {
    /** The point data drawn last (null before the first draw). */
    data: () => data,
    /**
     * Draw the point data of the traits (after the draw in flight, if any).
     * @param {{ transition?: boolean }} [opts] morph the points from where they are
     */
    requestDraw(opts = {}) {
      const transition = Boolean(opts.transition);
      if (drawing) {
        pendingDraw = { transition: Boolean(pendingDraw?.transition) || transition };
        return;
      }
      runDraw(transition);
    },
    applyFilter,
    applyEncodings() {
      if (!plot.sp || !data || drawing) return; // a draw in flight re-applies them when done
      plot.sp.set(/** @type {any} */ (encodingProps(model, data)));
    },
    /** Select `selected_indices` in the plot; false when that waits for the draw in flight. */
    applySelection() {
      if (!plot.sp || !data) return false;
      if (drawing) {
        needFilter = true;
        return false;
      }
      plot.sp.select(shownSelection(), { preventEvent: true });
      return true;
    },
    shownSelection,
    /** @param {number} i whether point i is drawn (it exists and its class is not hidden) */
    isShown: (i) => isShown(data, traits.hidden(), i),
    /** @param {number} i @returns {[number, number] | null} CSS px in the canvas */
    screenPos(i) {
      const sp = plot.sp;
      if (!sp || !data || !sp.get("isPointsDrawn") || i < 0 || i >= data.n) return null;
      const p = sp.getScreenPosition(i);
      return p ? [p[0], p[1]] : null;
    },
    /** Whether the points of the last draw are on screen. */
    ready: () => plot.sp !== null && data !== null && plot.sp.get("isPointsDrawn"),
    /** How many points the plot shows as selected. */
    selectedCount: () => (plot.sp && data ? plot.sp.get("selectedPoints").length : 0),
    destroy() {
      destroyed = true;
    },
  };
}

/** @typedef {ReturnType<typeof createScatter>} Scatter */

/**
 * The parts of the view that the others draw on.
 * @typedef {object} View
 * @property {import("../lib/anywidget.js").AnyModel} model
 * @property {Traits} traits
 * @property {import("./plot.js").Plot} plot
 * @property {Scatter} scatter
 * @property {import("../lib/thumbs.js").ThumbAtlas} thumbs
 */
