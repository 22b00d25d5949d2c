// @ts-check
// Which class colours each point of the embedding map: its label where the dataset gives one,
// else the model's predicted class (`color_by` "auto"), or only one of the two ("label",
// "prediction"). The same rule as `point_classes` in cnnviz_widgets/widgets/embedding.py. And
// the colour of each class: `class_colors`, else matplotlib's tab10.

/** Colour of points whose label is unknown or has no class colour. */
export const UNKNOWN_COLOR = "#8c8c8c";
/** Used when `class_colors` has fewer entries than there are classes (matplotlib's tab10). */
const TAB10 = "1f77b4 ff7f0e 2ca02c d62728 9467bd 8c564b e377c2 7f7f7f bcbd22 17becf"
  .split(" ")
  .map((hex) => `#${hex}`);

/**
 * @typedef {object} Coloring
 * @property {Int32Array} classes colour class of each point (-1: none, drawn gray)
 * @property {Uint8Array} predicted 1 where that class is the point's predicted class
 * @property {number} nPredicted how many points are coloured by their prediction
 */

/**
 * @param {Int32Array} labels label of each point (-1 unknown)
 * @param {Int32Array} predictions predicted class of each point (-1 unknown)
 * @param {string} colorBy "auto" | "label" | "prediction"
 * @returns {Coloring}
 */
export function colorClasses(labels, predictions, colorBy) {
  const n = labels.length;
  const classes = new Int32Array(n);
  const predicted = new Uint8Array(n);
  let nPredicted = 0;
  for (let i = 0; i < n; i++) {
    const pred = i < predictions.length ? predictions[i] : -1;
    const usePred = colorBy === "prediction" || (colorBy !== "label" && labels[i] < 0);
    classes[i] = usePred ? pred : labels[i];
    if (usePred && pred >= 0) {
      predicted[i] = 1;
      nPredicted += 1;
    }
  }
  return { classes, predicted, nPredicted };
}

/**
 * Points of each class (0..nClasses-1), and how many of them are coloured by their prediction.
 * @param {Coloring} coloring
 * @param {number} nClasses
 */
export function classCounts(coloring, nClasses) {
  const counts = new Array(nClasses).fill(0);
  const predictedCounts = new Array(nClasses).fill(0);
  const { classes, predicted } = coloring;
  for (let i = 0; i < classes.length; i++) {
    const c = classes[i];
    if (c < 0 || c >= nClasses) continue;
    counts[c] += 1;
    predictedCounts[c] += predicted[i];
  }
  return { counts, predictedCounts };
}

/**
 * How many classes there are (named, coloured, or drawn) and the colour of each.
 * @param {import("./anywidget.js").AnyModel} model
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
