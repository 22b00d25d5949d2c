// @ts-check
// The embedding view's two selections. `selected_index`: a click on a point (or a neighbour);
// `selected_indices` (int32, written with the array codec so it travels as binary): a shift-drag
// lasso, or a click on a region's name (the named regions over the map, lib/regions.js).
// Double-click, Escape or the toolbar's "clear" clear them. The library's own selection is
// always `selected_indices`, restricted to the shown classes.
//
// Test hooks: `data-selected-count` on the scatter canvas (points drawn as selected);
// root.cnnvizLasso and root.cnnvizRegionMembers (`hooks`, see embedding_explorer.js).

import { setTrait } from "../lib/anywidget.js";
import { writeArray } from "../lib/codecs.js";
import { button, make } from "../lib/dom.js";
import { createRegionLayer, parseRegions, regionMembers } from "../lib/regions.js";

/**
 * @param {import("./scatter.js").View} view
 * @param {() => number} hovered the point under the mouse (-1 none)
 */
export function createSelection({ model, traits, plot, scatter, thumbs }, hovered) {
  const count = make("span", "cnnviz-selection-count");
  const clear = button("cnnviz-small cnnviz-clear-selection", "clear", "clear the selection");
  const el = make("span", "cnnviz-selection", count, clear);
  /** a lasso is running (its `select` event must not be taken for a click) */
  let lassoing = false;

  const regions = createRegionLayer(plot.el, (r) => {
    setIndices(regionMembers(traits.pointRegions(), r));
    syncCount();
  });

  const setIndex = (/** @type {number} */ i) => setTrait(model, "selected_index", i);

  /** @param {number[]} indices */
  function setIndices(indices) {
    const sorted = Int32Array.from(indices).sort();
    const old = traits.selected();
    if (old.length === sorted.length && old.every((v, k) => v === sorted[k])) return;
    model.set("selected_indices", writeArray(sorted));
    model.save_changes();
  }

  function syncCount() {
    const n = traits.selected().length;
    count.textContent = n > 0 ? `${n} selected` : "";
    el.style.display = n > 0 ? "" : "none";
    plot.canvas.dataset.selectedCount = String(scatter.selectedCount());
  }

  function placeRegions() {
    const ready = scatter.ready();
    const [w, h] = plot.size();
    regions.place((i) => (ready ? scatter.screenPos(i) : null), w, h);
  }

  const onClear = () => {
    setIndices([]);
    plot.sp?.select([], { preventEvent: true });
    syncCount();
  };
  clear.addEventListener("click", onClear);

  plot.on("drawing", placeRegions);
  plot.on("lassoStart", () => {
    lassoing = true;
  });
  plot.on("lassoEnd", () => {
    lassoing = false;
    setIndices(plot.sp?.get("selectedPoints") ?? []);
    syncCount();
  });
  plot.on("select", (/** @type {{ points: number[] }} */ ev) => {
    if (lassoing) return; // lassoEnd follows
    // A click on a point: select that one image; the library's selection stays the lasso set.
    const pts = ev.points;
    const h = hovered();
    const i = h >= 0 && pts.includes(h) ? h : (pts[pts.length - 1] ?? -1);
    plot.sp?.select(scatter.shownSelection(), { preventEvent: true });
    if (i >= 0) setIndex(i);
  });
  plot.on("deselect", () => {
    if (lassoing) return;
    // double-click or Escape: clear both selections
    setIndices([]);
    setIndex(-1);
    syncCount();
  });

  return {
    el,
    setIndex,
    syncCount,
    /** Show the regions of the traits (with `show_regions`), placed on the map. */
    updateRegions() {
      const show = Boolean(model.get("show_regions"));
      regions.update(parseRegions(model.get("regions")), show, (i) => thumbs.get(i));
      placeRegions();
    },
    /** @param {CanvasRenderingContext2D} ctx @param {boolean} dark */
    drawRegions: (ctx, dark) => regions.drawInto(ctx, dark),
    hooks: {
      /** @param {[number, number][]} vertices lasso-select in data coordinates */
      cnnvizLasso(vertices) {
        if (!plot.sp) return;
        lassoing = true;
        plot.sp.lassoSelect(vertices, { isGl: true });
      },
      /** @param {number} r the points of region r (what a click on its name selects) */
      cnnvizRegionMembers: (r) => regionMembers(traits.pointRegions(), r),
    },
    destroy() {
      clear.removeEventListener("click", onClear);
      regions.dispose();
    },
  };
}
