// @ts-check
// Drawing a single image (e.g. the model input) at a fixed on-screen size.

/**
 * Draw `bitmap` into `canvas` so its longer side is about `targetPx` CSS px: images up to
 * `targetPx` are enlarged by an integer factor with nearest-neighbour sampling (crisp pixels);
 * larger ones are shrunk to fit with smoothing. `null` clears the canvas to 0x0.
 * Sets `data-scale` (CSS px per image pixel) on the canvas.
 * @param {HTMLCanvasElement} canvas
 * @param {ImageBitmap | null} bitmap
 * @param {number} targetPx
 */
export function drawScaledImage(canvas, bitmap, targetPx) {
  if (!bitmap || bitmap.width === 0 || bitmap.height === 0) {
    canvas.width = 0;
    canvas.height = 0;
    canvas.style.width = "0px";
    canvas.style.height = "0px";
    canvas.dataset.scale = "0";
    return;
  }
  const side = Math.max(bitmap.width, bitmap.height);
  const scale = side <= targetPx ? Math.max(1, Math.round(targetPx / side)) : targetPx / side;
  const cssW = bitmap.width * scale;
  const cssH = bitmap.height * scale;
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(cssW * dpr));
  canvas.height = Math.max(1, Math.round(cssH * dpr));
  canvas.style.width = `${cssW}px`;
  canvas.style.height = `${cssH}px`;
  canvas.dataset.scale = String(scale);
  const ctx = canvas.getContext("2d");
  if (!ctx) return;
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
}
