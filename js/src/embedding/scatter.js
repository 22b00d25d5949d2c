// @ts-check
// The embedding map's points drawn by regl-scatterplot: draws of new point data (serialised: the
// library refuses a draw while one is in flight; a layout change morphs the points), the hidden
// classes as its filter, `selected_indices` as its selection, the point styling of
// `highlight_misclassified`, and where a point is on screen.
//
// Test hooks on `canvas.cnnviz-scatter`, updated after each frame: `data-draw-count`,
// `data-points` (points drawn: not hidden), `data-selected` (selected_index).

import { getInt } from "../lib/anywidget.js";
import { buildData, columns, encodingProps, isShown, visibleIndices } from "./points.js";

/** @typedef {import("./points.js").Dataset} Dataset */

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
 * @param {import("./traits.js").Traits} o.traits
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
 * @property {import("./traits.js").Traits} traits
 * @property {import("./plot.js").Plot} plot
 * @property {Scatter} scatter
 * @property {import("../lib/thumbs.js").ThumbAtlas} thumbs
 */
