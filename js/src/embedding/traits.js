// @ts-check
// The embedding view's traits as it reads them: the arrays (lib/codecs.js readArray, decoded once
// per trait value), class names, and the set of hidden classes.

import { readArray } from "../lib/codecs.js";

/** @param {import("../lib/anywidget.js").AnyModel} model */
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
