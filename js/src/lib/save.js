// @ts-check
// "PNG" buttons: every panel can download what it shows as a PNG file.

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
