// @ts-check
// The embedding view's traits as it reads them: binary arrays decoded once per trait object
// (lib/codecs.js memoDecoder), class names, and the set of hidden classes.

import { memoDecoder, toFloat32, toInt32 } from "../lib/codecs.js";

/** @param {import("../lib/anywidget.js").AnyModel} model */
export function createTraits(model) {
  const f32 = () => memoDecoder(toFloat32);
  const i32 = () => memoDecoder(toInt32);
  const [points, grid, confidences, distances] = [f32(), f32(), f32(), f32()];
  const [labels, predictions, selected, neighbours, regions] = [i32(), i32(), i32(), i32(), i32()];
  return {
    /** `points` (N*2) */
    points: () => points(model.get("points")),
    /** `grid_points` (N*2, or empty) */
    grid: () => grid(model.get("grid_points")),
    labels: () => labels(model.get("labels")),
    predictions: () => predictions(model.get("predictions")),
    confidences: () => confidences(model.get("confidences")),
    /** `selected_indices` */
    selected: () => selected(model.get("selected_indices")),
    neighbours: () => neighbours(model.get("neighbours")),
    distances: () => distances(model.get("neighbour_distances")),
    /** `point_regions`: each point's region (-1 none) */
    pointRegions: () => regions(model.get("point_regions")),
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
