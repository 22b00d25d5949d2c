// @ts-check
// The embedding view's toolbar controls: grid layout (`arrangement`), highlight misclassified
// (with their count), thumbnails, regions, colour by, and "reset view"; `update` shows the
// traits and disables what the data does not allow.

import { getInt, getStr, setTrait } from "../lib/anywidget.js";
import { button, listen, make } from "../lib/dom.js";
import { MAX_THUMBS } from "./thumbnails.js";

/**
 * A checkbox (`input.<className>`) in a label.
 * @param {string} className
 * @param {string} text
 * @returns {[HTMLLabelElement, HTMLInputElement]}
 */
function checkbox(className, text) {
  const input = make("input", className);
  input.type = "checkbox";
  return [make("label", "cnnviz-field", input, text), input];
}

/**
 * @param {import("./scatter.js").View} view
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
  const colorBy = make("select", "cnnviz-color-by");
  colorBy.title = "what colours the points";
  colorBy.append(
    new Option("colour: label, else prediction", "auto"),
    new Option("colour: label", "label"),
    new Option("colour: prediction", "prediction"),
  );
  const resetButton = button("cnnviz-small cnnviz-reset-view", "reset view");
  /** @param {string} name @param {unknown} value */
  const set = (name, value) => setTrait(model, name, value);
  const reset = () => plot.sp?.zoomToOrigin({ transition: true, transitionDuration: 300 });
  const unlisten = listen([
    [layoutBox, "change", () => set("arrangement", layoutBox.checked ? "grid" : "scatter")],
    [wrongBox, "change", () => set("highlight_misclassified", wrongBox.checked)],
    [thumbsBox, "change", () => set("show_thumbnails", thumbsBox.checked)],
    [regionsBox, "change", () => set("show_regions", regionsBox.checked)],
    [colorBy, "change", () => set("color_by", colorBy.value)],
    [resetButton, "click", reset],
  ]);

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
    destroy: unlisten,
  };
}
