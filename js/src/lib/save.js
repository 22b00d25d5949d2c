// @ts-check
// "PNG" buttons: every panel can download what it shows as a PNG file.

import { BG, BORDER, FG, injectStyle } from "./style.js";

const CSS = `
.cnnviz-save { font: inherit; font-size: 11px; line-height: 1.4; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 0 5px; cursor: pointer; }
.cnnviz-save:hover { border-color: ${FG}; }
`;

/**
 * Download `canvas` as `<filename>` (a PNG). Does nothing for an empty (0×0) canvas.
 * @param {HTMLCanvasElement} canvas
 * @param {string} filename
 */
export function downloadCanvas(canvas, filename) {
  if (!canvas.width || !canvas.height) return;
  canvas.toBlob((blob) => {
    if (!blob) return;
    const a = document.createElement("a");
    a.href = URL.createObjectURL(blob);
    a.download = filename.endsWith(".png") ? filename : `${filename}.png`;
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
  }, "image/png");
}

/**
 * A small "PNG" button that downloads the canvas returned by `getCanvas()` (null: nothing).
 * @param {() => HTMLCanvasElement | null} getCanvas
 * @param {() => string} filename
 * @returns {HTMLButtonElement}
 */
export function saveButton(getCanvas, filename) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "cnnviz-save";
  button.textContent = "PNG";
  button.title = "Save this view as a PNG file";
  button.addEventListener("click", () => {
    const canvas = getCanvas();
    if (canvas) downloadCanvas(canvas, filename());
  });
  return button;
}

/**
 * Style the `.cnnviz-save` buttons where `el` lives (call once the widget is attached).
 * @param {HTMLElement} el
 */
export function styleSaveButtons(el) {
  injectStyle(el, "cnnviz-style-save", CSS);
}

/**
 * A file name made of `parts` joined by "-", keeping letters, digits, "." and "_" (anything
 * else, e.g. from a class name, becomes "_"); "view" when nothing is left.
 * @param {...(string | number)} parts
 * @returns {string}
 */
export function fileName(...parts) {
  const text = parts
    .map((p) => String(p).trim())
    .filter(Boolean)
    .join("-")
    .replace(/[^\p{L}\p{N}._-]+/gu, "_")
    .replace(/^[._]+/, "")
    .slice(0, 120);
  return text || "view";
}
