// @ts-check
// "PNG" buttons: every panel can download what it shows as a PNG file.

import { button } from "./dom.js";
import { BG, BORDER, FG, injectStyle } from "./style.js";

const CSS = `
.cnnviz-save { font: inherit; font-size: 11px; line-height: 1.4; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 0 5px; cursor: pointer; }
.cnnviz-save:hover { border-color: ${FG}; }
`;

/**
 * A small "PNG" button that downloads the canvas returned by `getCanvas()` (null, or an empty
 * 0×0 canvas: nothing) as `<filename()>.png`.
 * @param {() => HTMLCanvasElement | null} getCanvas
 * @param {() => string} filename
 */
export function saveButton(getCanvas, filename) {
  const save = button("cnnviz-save", "PNG", "Save this view as a PNG file");
  save.addEventListener("click", () => {
    const canvas = getCanvas();
    if (!canvas?.width || !canvas.height) return;
    const name = filename();
    canvas.toBlob((blob) => {
      if (!blob) return;
      const a = document.createElement("a");
      a.href = URL.createObjectURL(blob);
      a.download = name.endsWith(".png") ? name : `${name}.png`;
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
    }, "image/png");
  });
  injectStyle(save, "cnnviz-style-save", CSS);
  return save;
}

/**
 * A file name made of `parts` joined by "-", keeping letters, digits, "." and "_" (anything
 * else, e.g. from a class name, becomes "_"); "view" when nothing is left.
 * @param {...(string | number)} parts
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
