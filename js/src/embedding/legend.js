// @ts-check
// The embedding view's colouring and legend: the colour of each class (`class_colors`, else
// matplotlib's tab10), and the legend of lib/legend.js over the classes that colour points, most
// frequent first; a click on a class toggles it in `hidden_classes`.

import { getStr } from "../lib/anywidget.js";
import { colorClasses } from "../lib/coloring.js";
import { make } from "../lib/dom.js";
import { createLegend } from "../lib/legend.js";

/** Colour of points whose label is unknown or has no class colour. */
export const UNKNOWN_COLOR = "#8c8c8c";
/** Used when `class_colors` has fewer entries than there are classes (matplotlib's tab10). */
const TAB10 = "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 7f7f7f bcbd22 17becf"
  .split(" ")
  .map((hex) => `#${hex}`);

/**
 * How many classes there are (named, coloured, or drawn) and the colour of each.
 * @param {import("../lib/anywidget.js").AnyModel} model
 * @param {string[]} names class names
 * @param {Int32Array} classes colour class of each point
 */
export function classColors(model, names, classes) {
  const rawColors = model.get("class_colors");
  const given = Array.isArray(rawColors) ? rawColors.map(String) : [];
  let maxClass = -1;
  for (const c of classes) if (c > maxClass) maxClass = c;
  const nClasses = Math.max(names.length, given.length, maxClass + 1);
  const colorOf = (/** @type {number} */ c) =>
    /^#[0-9a-fA-F]{6}$/.test(given[c] ?? "") ? given[c] : TAB10[c % TAB10.length];
  return { nClasses, colorOf };
}

/** @param {Pick<import("./scatter.js").View, "model" | "traits">} view */
export function createClassLegend({ model, traits }) {
  const el = make("div", "cnnviz-legend");
  const view = createLegend(el, (c) => {
    const hidden = traits.hidden();
    if (hidden.has(c)) hidden.delete(c);
    else hidden.add(c);
    model.set(
      "hidden_classes",
      [...hidden].sort((a, b) => a - b),
    );
    model.save_changes();
  });
  return {
    el,
    // The classes that colour points, most frequent first; points coloured by their predicted
    // class are marked (see lib/legend.js).
    update() {
      const labels = traits.labels();
      const coloring = colorClasses(labels, traits.predictions(), getStr(model, "color_by"));
      const names = traits.names();
      const { nClasses, colorOf } = classColors(model, names, coloring.classes);
      view.update({
        names,
        colorOf,
        nClasses,
        coloring: labels.length > 0 ? coloring : null,
        hidden: traits.hidden(),
      });
    },
    destroy: view.dispose,
  };
}
