// @ts-check
// The occlusion map's heatmap: the image (`image_png`) at about `view_px`, with one cell per
// score blended over it at `opacity`, coloured by `colormap_lut` between `vmin` and `vmax` (NaN
// transparent), and the colour bar beside it marked with the unoccluded score (`base_score`).
// Redrawn once per batch of trait changes; cell edges are rounded to device pixels once per draw
// and hover reads the same edges (`shown`).
//
// Test hooks on `canvas.cnnviz-heatmap`, set by each draw: data-maps (maps_done), data-cells
// ("ny,nx"), data-scale (CSS px per image px), data-opacity, data-draw-count.

import { getFloat, getInt, getPair } from "../lib/anywidget.js";
import { createBitmapSlot, formatSig, memoDecoder, readArray } from "../lib/codecs.js";
import { createColorbar, decodeLut, lutIndex } from "../lib/colormap.js";
import { errorLine, make, showText } from "../lib/dom.js";
import { imageScale } from "../lib/image.js";

/** @typedef {import("../lib/anywidget.js").AnyModel} AnyModel */

/**
 * @typedef {object} MapGeometry
 * @property {number} ny rows of scores
 * @property {number} nx columns of scores
 * @property {number} ph patch height (image px)
 * @property {number} pw patch width
 * @property {number} sh stride between rows of positions
 * @property {number} sw stride between columns
 * @property {number} y0 top row of patch 0 (image px; negative where it starts outside)
 * @property {number} x0 left column of patch 0
 * @property {number} oy top of cell row 0 (image px): y0 + (ph - sh) / 2
 * @property {number} ox left of cell column 0: x0 + (pw - sw) / 2
 */

/**
 * The map on screen: its geometry, values and device-pixel cell edges (rows, columns).
 * @typedef {{ geom: MapGeometry, scores: Float32Array, ey: Int32Array, ex: Int32Array }} ShownMap
 */

/**
 * Device-pixel edges of n cells starting at `offset` image px, `step` apart: edge e is
 * round((offset + e * step) * k) clamped to 0..limit (n + 1 edges, non-decreasing).
 * @param {number} n
 * @param {number} offset
 * @param {number} step
 * @param {number} k device px per image px
 * @param {number} limit canvas size in device px
 */
function cellEdges(n, offset, step, k, limit) {
  const edges = new Int32Array(n + 1);
  for (let e = 0; e <= n; e++) {
    const v = Math.round((offset + e * step) * k);
    edges[e] = Math.min(limit, Math.max(0, v));
  }
  return edges;
}

/** Device-pixel budget for one canvas side. */
const MAX_CANVAS_DIM = 16384;
/** Default of `view_px`. */
const VIEW_PX = 256;

/**
 * Size `canvases` for an h x w image at about `viewPx` CSS px (0 x 0 when the size is unknown).
 * @param {HTMLCanvasElement[]} canvases
 * @param {number} h
 * @param {number} w
 * @param {number} viewPx
 */
function fitCanvases(canvases, h, w, viewPx) {
  const valid = h > 0 && w > 0;
  const scale = valid ? imageScale(h, w, viewPx) : 0;
  const cssW = valid ? w * scale : 0;
  const cssH = valid ? h * scale : 0;
  const want = window.devicePixelRatio || 1;
  const dpr = valid ? Math.min(want, MAX_CANVAS_DIM / cssW, MAX_CANVAS_DIM / cssH) : want;
  const cw = valid ? Math.max(1, Math.round(cssW * dpr)) : 0;
  const ch = valid ? Math.max(1, Math.round(cssH * dpr)) : 0;
  for (const c of canvases) {
    c.width = cw;
    c.height = ch;
    c.style.width = `${cssW}px`;
    c.style.height = `${cssH}px`;
  }
  return { valid, scale, dpr, cssH, cw, ch };
}

/**
 * The map of the traits on a cw x ch canvas with `k` device px per image px, or why there is
 * none ("" when there are no scores).
 * @param {AnyModel} model
 * @param {import("../lib/codecs.js").NdArray} scores `scores`: the map (rows, columns)
 * @param {number} k
 * @param {number} cw
 * @param {number} ch
 */
function shownMap(model, { data, shape }, k, cw, ch) {
  const [ny, nx] = shape.length === 2 ? shape : [0, 0];
  const [ph, pw] = getPair(model, "map_patch");
  const [sh, sw] = getPair(model, "map_stride");
  const [y0, x0] = getPair(model, "map_origin");
  if (!(ny > 0 && nx > 0 && ph > 0 && pw > 0 && sh > 0 && sw > 0)) {
    return { map: null, error: "scores, map_patch and map_stride must be positive" };
  }
  if (ny * nx !== data.length) {
    return { map: null, error: `scores has ${data.length} values; its shape is ${ny}×${nx}` };
  }
  const geom = { ny, nx, ph, pw, sh, sw, y0, x0, oy: y0 + (ph - sh) / 2, ox: x0 + (pw - sw) / 2 };
  const scores = /** @type {Float32Array} */ (data);
  const ey = cellEdges(ny, geom.oy, sh, k, ch);
  const ex = cellEdges(nx, geom.ox, sw, k, cw);
  return { map: { geom, scores, ey, ex }, error: "" };
}

/**
 * Blend the cells over the image: one colour per cell (transparent for NaN), painted at
 * device resolution on a scratch canvas and drawn with globalAlpha = alpha.
 * @param {CanvasRenderingContext2D} ctx
 * @param {ShownMap} map
 * @param {{ lut: Uint8Array, vmin: number, vmax: number, alpha: number }} style
 * @param {HTMLCanvasElement} scratch
 */
function paintCells(ctx, map, { lut, vmin, vmax, alpha }, scratch) {
  const { geom, ey, ex } = map;
  const { ny, nx } = geom;
  const x0 = ex[0];
  const y0 = ey[0];
  const rw = ex[nx] - x0;
  const rh = ey[ny] - y0;
  if (rw <= 0 || rh <= 0 || alpha <= 0) return;
  const colors = new Uint32Array(ny * nx);
  const bytes = new Uint8Array(colors.buffer);
  for (let c = 0; c < colors.length; c++) {
    const idx = lutIndex(map.scores[c], vmin, vmax);
    if (idx < 0) continue;
    bytes[4 * c] = lut[3 * idx];
    bytes[4 * c + 1] = lut[3 * idx + 1];
    bytes[4 * c + 2] = lut[3 * idx + 2];
    bytes[4 * c + 3] = 255;
  }
  const img = new ImageData(rw, rh);
  const px = new Uint32Array(img.data.buffer);
  for (let i = 0; i < ny; i++) {
    const r0 = ey[i] - y0;
    const r1 = ey[i + 1] - y0;
    if (r1 <= r0) continue;
    const row = r0 * rw;
    for (let j = 0; j < nx; j++) {
      px.fill(colors[i * nx + j], row + ex[j] - x0, row + ex[j + 1] - x0);
    }
    for (let r = r0 + 1; r < r1; r++) px.copyWithin(r * rw, row, row + rw);
  }
  scratch.width = rw;
  scratch.height = rh;
  scratch.getContext("2d")?.putImageData(img, 0, 0);
  ctx.save();
  ctx.globalAlpha = alpha;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(scratch, x0, y0);
  ctx.restore();
  scratch.width = 0;
  scratch.height = 0;
}

/** The colour bar's mark: the unoccluded score. @param {AnyModel} model */
function markState(model) {
  const base = getFloat(model, "base_score", Number.NaN);
  return { mark: base, markLabel: `unoccluded ${formatSig(base)}` };
}

/**
 * @param {object} o
 * @param {AnyModel} o.model
 * @param {() => void} o.onDraw after each draw
 */
export function createHeatmap({ model, onDraw }) {
  const canvas = make("canvas", "cnnviz-heatmap");
  const overlay = make("canvas", "cnnviz-heatmap-overlay");
  const stack = make("div", "cnnviz-heatmap-stack", canvas, overlay);
  const box = make("div", "cnnviz-heatmap-box", stack);
  const colorbar = createColorbar();
  colorbar.el.style.display = "none";
  const el = make("div", "cnnviz-body", box, colorbar.el);
  const error = errorLine();

  const image = createBitmapSlot();
  const baseCtx = canvas.getContext("2d");
  const scratch = document.createElement("canvas");
  const decodeLutOnce = memoDecoder(decodeLut);
  /** What the heatmap shows now (set by each draw; hover reads it). @type {ShownMap | null} */
  let shown = null;
  let view = { scale: 1, dpr: 1 };
  let drawCount = 0;
  let drawGen = 0;
  let scheduled = false;
  let destroyed = false;

  function startDraw() {
    scheduled = false;
    if (destroyed) return;
    const gen = ++drawGen;
    image.draw(model.get("image_png"), (bitmap, error) => {
      // A newer draw of the same bytes is on its way: let it draw.
      if (gen === drawGen) draw(bitmap, error);
    });
  }

  /**
   * @param {ImageBitmap | null} bitmap
   * @param {string} decodeError
   */
  function draw(bitmap, decodeError) {
    const errors = decodeError ? [`could not decode image_png: ${decodeError}`] : [];
    let [h, w] = getPair(model, "image_shape");
    if (!(h > 0 && w > 0) && bitmap) [h, w] = [bitmap.height, bitmap.width];
    let viewPx = getInt(model, "view_px", VIEW_PX);
    if (!(viewPx > 0)) viewPx = VIEW_PX;
    const { valid, scale, dpr, cssH, cw, ch } = fitCanvases([canvas, overlay], h, w, viewPx);
    view = { scale, dpr };
    stack.style.display = valid ? "" : "none";
    if (baseCtx && bitmap && valid) {
      baseCtx.imageSmoothingEnabled = scale < 1;
      baseCtx.imageSmoothingQuality = "high";
      baseCtx.drawImage(bitmap, 0, 0, cw, ch);
    }

    // the map
    const scores = readArray(model.get("scores"));
    const lut = decodeLutOnce(model.get("colormap_lut"));
    const vmin = getFloat(model, "vmin", 0);
    const vmax = getFloat(model, "vmax", 1);
    const alpha = Math.min(1, Math.max(0, getFloat(model, "opacity", 0.6)));
    shown = null;
    if (scores.data.length > 0 && valid) {
      const res = shownMap(model, scores, scale * dpr, cw, ch);
      if (res.error) errors.push(res.error);
      shown = res.map;
      if (baseCtx && shown) paintCells(baseCtx, shown, { lut, vmin, vmax, alpha }, scratch);
    }
    showText(error, errors.join("; "));

    colorbar.el.style.display = shown ? "" : "none";
    if (shown) {
      const length = Math.max(96, cssH - 32);
      colorbar.update({ lut, vmin, vmax, length, ...markState(model), format: formatSig });
    }

    drawCount += 1;
    const ds = canvas.dataset;
    ds.maps = String(getInt(model, "maps_done", 0));
    ds.cells = shown ? `${shown.geom.ny},${shown.geom.nx}` : "0,0";
    ds.scale = String(scale);
    ds.opacity = String(alpha);
    ds.drawCount = String(drawCount);
    onDraw();
  }

  return {
    el,
    error,
    box,
    stack,
    canvas,
    overlay,
    /** The map drawn last (null: none). */
    shown: () => shown,
    /** CSS px per image px, and device px per CSS px, of the last draw. */
    view: () => view,
    /** Redraw (once per batch of trait changes). */
    schedule() {
      if (scheduled || destroyed) return;
      scheduled = true;
      queueMicrotask(startDraw);
    },
    /** Show the unoccluded score on the colour bar. */
    updateMark() {
      if (shown) colorbar.update(markState(model));
    },
    destroy() {
      destroyed = true;
      image.dispose();
    },
  };
}
