// @ts-check
// The embedding view's toolbar controls: grid layout (`arrangement`), highlight misclassified
// (with their count), thumbnails, regions, colour by, and "reset view"; `update` shows the
// traits and disables what the data does not allow.

import { getInt, getStr } from "../lib/anywidget.js";
import { make } from "../lib/dom.js";
import { MAX_THUMBS } from "./thumbnails.js";

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
 * @param {import("./scatter.js").View} view
 * @returns {{ controls: HTMLElement[], update: () => void, destroy: () => void }}
 */
export function createToolbar({ model, traits, plot, scatter }) {
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
  const resetButton = /** @type {HTMLButtonElement} */ (
    make("button", "cnnviz-small cnnviz-reset-view")
  );
  resetButton.type = "button";
  resetButton.textContent = "reset view";

  /** @param {string} name @param {unknown} value */
  function setTrait(name, value) {
    if (model.get(name) === value) return;
    model.set(name, value);
    model.save_changes();
  }
  /** @type {[HTMLElement, string, () => void][]} */
  const listeners = [
    [layoutBox, "change", () => setTrait("arrangement", layoutBox.checked ? "grid" : "scatter")],
    [wrongBox, "change", () => setTrait("highlight_misclassified", wrongBox.checked)],
    [thumbsBox, "change", () => setTrait("show_thumbnails", thumbsBox.checked)],
    [regionsBox, "change", () => setTrait("show_regions", regionsBox.checked)],
    [colorBy, "change", () => setTrait("color_by", colorBy.value)],
    [
      resetButton,
      "click",
      () => plot.sp?.zoomToOrigin({ transition: true, transitionDuration: 300 }),
    ],
  ];
  for (const [target, type, fn] of listeners) target.addEventListener(type, fn);

  return {
    controls: [layoutField, wrongField, thumbsField, regionsField, colorBy, resetButton],
    update() {
      const data = scatter.data();
      const grid = traits.grid();
      const n = Math.floor(traits.points().length / 2);
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
    },
    destroy() {
      for (const [target, type, fn] of listeners) target.removeEventListener(type, fn);
    },
  };
}
