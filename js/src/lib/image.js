// @ts-check
// Drawing a single image (e.g. the model input) at a fixed on-screen size.

/**
 * CSS px per image px so an h x w image's longer side is about `targetPx`: an integer factor
 * (>= 1, nearest-neighbour sampling keeps the pixels crisp) for images up to `targetPx`, else
 * `targetPx / side` (smoothed).
 * @param {number} h
 * @param {number} w
 * @param {number} targetPx
 */
export function imageScale(h, w, targetPx) {
  const side = Math.max(h, w, 1);
  return side <= targetPx ? Math.max(1, Math.round(targetPx / side)) : targetPx / side;
}

/**
 * Draw `bitmap` into `canvas` at `imageScale` and set `data-scale` (CSS px per image px) on the
 * canvas. `rect` draws only that part of the bitmap (e.g. one thumbnail of a sprite atlas); with
 * a null bitmap, a `rect` keeps the space of an image of its size (data-scale 0: one still
 * being decoded), and no `rect` clears the canvas to 0x0.
 * @param {HTMLCanvasElement} canvas
 * @param {ImageBitmap | null} bitmap
 * @param {number} targetPx
 * @param {{sx?: number, sy?: number, sw: number, sh: number}} [rect]
 */
export function drawScaledImage(canvas, bitmap, targetPx, rect) {
  const { sx = 0, sy = 0, sw, sh } = rect ?? { sw: bitmap?.width ?? 0, sh: bitmap?.height ?? 0 };
  if (!(sw > 0 && sh > 0)) {
    canvas.width = 0;
    canvas.height = 0;
    canvas.style.width = "0px";
    canvas.style.height = "0px";
    canvas.dataset.scale = "0";
    return;
  }
  const scale = imageScale(sh, sw, targetPx);
  const dpr = window.devicePixelRatio || 1;
  canvas.width = Math.max(1, Math.round(sw * scale * dpr));
  canvas.height = Math.max(1, Math.round(sh * scale * dpr));
  canvas.style.width = `${sw * scale}px`;
  canvas.style.height = `${sh * scale}px`;
  canvas.dataset.scale = bitmap ? String(scale) : "0";
  const ctx = bitmap && canvas.getContext("2d");
  if (!ctx || !bitmap) return;
  ctx.imageSmoothingEnabled = scale < 1;
  ctx.imageSmoothingQuality = "high";
  ctx.drawImage(bitmap, sx, sy, sw, sh, 0, 0, canvas.width, canvas.height);
}
