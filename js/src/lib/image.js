// @ts-check
// Drawing a single image (e.g. the model input) at a fixed on-screen size.

/**
 * Draw `bitmap` into `canvas` so its longer side is about `targetPx` CSS px: images up to
 * `targetPx` are enlarged by an integer factor with nearest-neighbour sampling (crisp pixels);
 * larger ones are shrunk to fit with smoothing. `null` clears the canvas to 0x0.
 * Sets `data-scale` (CSS px per image pixel) on the canvas. `rect` draws only that part of
 * the bitmap (e.g. one thumbnail of a sprite atlas).
 * @param {HTMLCanvasElement} canvas
 * @param {ImageBitmap | null} bitmap
 * @param {number} targetPx
 * @param {{sx: number, sy: number, sw: number, sh: number}} [rect]
 */
export function drawScaledImage(canvas, bitmap, targetPx, rect) {
  if (!bitmap || bitmap.width === 0 || bitmap.height === 0) {
    canvas.width = 0;
    canvas.height = 0;
    canvas.style.width = "0px";
    canvas.style.height = "0px";
    canvas.dataset.scale = "0";
    return;
  }
  const { sx, sy, sw, sh } = rect ?? { sx: 0, sy: 0, sw: bitmap.width, sh: bitmap.height };
  const side = Math.max(sw, sh, 1);
  const scale = side <= targetPx ? Math.max(1, Math.round(targetPx / side)) : targetPx / side;
  const cssW = sw * scale;
  const cssH = sh * scale;
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
  ctx.drawImage(bitmap, sx, sy, sw, sh, 0, 0, canvas.width, canvas.height);
}
