// @ts-check
// The embedding map's legend: a button per class that has points (colours: lib/coloring.js), most
// frequent first (at most LEGEND_MAX until "+N more" is clicked; an ImageNet model names 1,000
// classes); a click hides or shows the class (`hidden_classes`). Points coloured by the model's
// predicted class (they have no label) are marked: a class with only such points has its name in
// italics, a class with both shows its count as "labelled + predicted" (the second in italics),
// and a note says how many there are.
//
// Test hooks: each `.cnnviz-legend-item` has `data-class`, `data-count` and `data-predicted`
// (its points coloured by prediction); the legend has `data-classes` (listed), `data-shown`
// and `data-predicted` (points coloured by prediction, all classes).

import { getStr, setTrait } from "../lib/anywidget.js";
import { classColors, classCounts, colorClasses } from "../lib/coloring.js";
import { button, make } from "../lib/dom.js";
import { BORDER, FG, FG2, FONT } from "../lib/style.js";

const LEGEND_MAX = 24;

/** Rules for `.cnnviz-legend` inside `root` (a selector), e.g. ".cnnviz-embedding". */
export const legendCss = (/** @type {string} */ root) => `
${root} .cnnviz-legend { display: flex; flex-wrap: wrap; gap: 2px 4px; max-height: 160px; overflow-y: auto; }
${root} .cnnviz-legend-item {
  display: inline-flex; align-items: center; gap: 4px; font: 12px/1.5 ${FONT}; color: ${FG}; background: none;
  border: 1px solid transparent; border-radius: 3px; padding: 0 5px; cursor: pointer;
}
${root} .cnnviz-legend-item:hover { border-color: ${BORDER}; }
${root} .cnnviz-legend-item.cnnviz-hidden { opacity: 0.45; }
${root} .cnnviz-legend-item.cnnviz-hidden .cnnviz-legend-name { text-decoration: line-through; }
${root} .cnnviz-swatch { width: 10px; height: 10px; border-radius: 50%; flex: none; }
${root} .cnnviz-legend-more {
  font: inherit; font-size: 11px; color: ${FG2}; background: none; cursor: pointer;
  border: 1px solid ${BORDER}; border-radius: 3px; padding: 0 6px;
}
${root} .cnnviz-legend-count { color: ${FG2}; font-variant-numeric: tabular-nums; }
${root} .cnnviz-legend-predicted .cnnviz-legend-name, ${root} .cnnviz-legend-pred { font-style: italic; }
${root} .cnnviz-legend-note { font: italic 11px/1.5 ${FONT}; color: ${FG2}; padding: 0 5px; }
`;

/**
 * One class' button: swatch, name (missing ones are called "class c"), count ("3 + 9" when 9
 * of its 12 points are predictions: see markItems).
 * @param {number} c
 * @param {string[]} names
 * @param {(c: number) => string} colorOf
 */
function legendItem(c, names, colorOf) {
  const item = button("cnnviz-legend-item", "");
  item.dataset.class = String(c);
  const swatch = make("span", "cnnviz-swatch");
  swatch.style.background = colorOf(c);
  const name = make("span", "cnnviz-legend-name");
  name.textContent = c < names.length ? names[c] : `class ${c}`;
  item.append(swatch, name, make("span", "cnnviz-legend-count"));
  return item;
}

/**
 * Fill in the counts and hidden state of the legend's buttons.
 * @param {HTMLElement} legend
 * @param {number[]} counts
 * @param {number[]} predictedCounts
 * @param {Set<number>} hidden
 */
function markItems(legend, counts, predictedCounts, hidden) {
  for (const item of /** @type {NodeListOf<HTMLElement>} */ (
    legend.querySelectorAll(".cnnviz-legend-item")
  )) {
    const c = Number(item.dataset.class);
    const all = counts[c] ?? 0;
    const pred = predictedCounts[c] ?? 0;
    const count = /** @type {HTMLElement} */ (item.querySelector(".cnnviz-legend-count"));
    if (pred > 0 && pred < all) {
      const p = make("span", "cnnviz-legend-pred");
      p.textContent = String(pred);
      count.replaceChildren(`${all - pred} + `, p);
    } else {
      count.textContent = String(all);
    }
    item.classList.toggle("cnnviz-legend-predicted", pred > 0 && pred === all);
    item.dataset.count = String(all);
    item.dataset.predicted = String(pred);
    const off = hidden.has(c);
    item.classList.toggle("cnnviz-hidden", off);
    item.setAttribute("aria-pressed", String(!off));
    const what = pred > 0 ? ` (${all - pred} labelled, ${pred} predicted)` : "";
    item.title = `${all} points${what} · ${off ? "show" : "hide"} this class`;
  }
}

/**
 * The legend of the classes that colour points, most frequent first; `update` follows the traits.
 * @param {Pick<import("./scatter.js").View, "model" | "traits">} view
 */
export function createClassLegend({ model, traits }) {
  const legend = make("div", "cnnviz-legend");
  let key = "";
  let open = false;

  function update() {
    const labels = traits.labels();
    const colored = colorClasses(labels, traits.predictions(), getStr(model, "color_by"));
    const names = traits.names();
    const { nClasses, colorOf } = classColors(model, names, colored.classes);
    // before there are points, every class is listed
    const coloring = labels.length > 0 ? colored : null;
    const hidden = traits.hidden();
    const { counts, predictedCounts } = coloring
      ? classCounts(coloring, nClasses)
      : { counts: new Array(nClasses).fill(0), predictedCounts: new Array(nClasses).fill(0) };
    let listed = [...Array(nClasses).keys()];
    if (coloring && coloring.classes.length > 0) {
      listed = listed.filter((c) => counts[c] > 0 || hidden.has(c));
    }
    listed.sort((a, b) => counts[b] - counts[a] || a - b);
    const shown = open ? listed : listed.slice(0, LEGEND_MAX);
    const more = listed.length - shown.length;
    const nPredicted = coloring?.nPredicted ?? 0;
    const colors = shown.map(colorOf).join(",");
    const k = `${names.join("\u0000")}|${colors}|${shown.join(",")}|${more}|${nPredicted}`;
    if (k !== key) {
      key = k;
      /** @type {HTMLElement[]} */
      const items = [];
      if (nPredicted > 0) {
        const note = make("span", "cnnviz-legend-note");
        const n = coloring?.classes.length ?? 0;
        note.textContent = `italics: predicted class (${nPredicted} of ${n} points have no label)`;
        if (nPredicted === n) note.textContent = `predicted classes (no labels)`;
        items.push(note);
      }
      for (const c of shown) items.push(legendItem(c, names, colorOf));
      if (listed.length > LEGEND_MAX) {
        const title = open
          ? `show the ${LEGEND_MAX} largest classes only`
          : `${more} more classes with points`;
        items.push(button("cnnviz-legend-more", open ? "fewer" : `+${more} more`, title));
      }
      legend.replaceChildren(...items);
    }
    legend.dataset.classes = String(listed.length);
    legend.dataset.shown = String(shown.length);
    legend.dataset.predicted = String(nPredicted);
    markItems(legend, counts, predictedCounts, hidden);
    legend.style.display = listed.length > 0 ? "" : "none";
  }

  /** @param {MouseEvent} ev */
  const onClick = (ev) => {
    const target = /** @type {Element | null} */ (ev.target);
    if (target?.closest?.(".cnnviz-legend-more")) {
      open = !open;
      update();
      return;
    }
    const item = /** @type {HTMLElement | null} */ (
      target?.closest?.(".cnnviz-legend-item") ?? null
    );
    if (!item || !legend.contains(item)) return;
    const c = Number(item.dataset.class);
    if (!Number.isInteger(c)) return;
    // a click hides the class, or shows it again
    const hidden = traits.hidden();
    if (hidden.has(c)) hidden.delete(c);
    else hidden.add(c);
    setTrait(
      model,
      "hidden_classes",
      [...hidden].sort((a, b) => a - b),
    );
  };
  legend.addEventListener("click", onClick);
  return { el: legend, update, destroy: () => legend.removeEventListener("click", onClick) };
}
