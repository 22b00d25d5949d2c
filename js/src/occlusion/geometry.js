// @ts-check
// Geometry of the occlusion map (see occlusion_map.js): where each score's cell lies, in image
// px and in device px of the canvas, which cell a point falls in, and a cell's tooltip text.

import { formatSig } from "../lib/codecs.js";

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
 * The map geometry, or null when any of the shapes is not positive.
 * @param {[number, number]} shape the shape of `scores`
 * @param {[number, number]} patch map_patch
 * @param {[number, number]} stride map_stride
 * @param {[number, number]} [origin] map_origin: top-left of patch (0, 0)
 * @returns {MapGeometry | null}
 */
export function mapGeometry(shape, patch, stride, origin = [0, 0]) {
  const [ny, nx] = shape;
  const [ph, pw] = patch;
  const [sh, sw] = stride;
  const [y0, x0] = origin;
  if (!(ny > 0 && nx > 0 && ph > 0 && pw > 0 && sh > 0 && sw > 0)) return null;
  return { ny, nx, ph, pw, sh, sw, y0, x0, oy: y0 + (ph - sh) / 2, ox: x0 + (pw - sw) / 2 };
}

/**
 * CSS px per image px so the longer side is about `viewPx`: an integer factor (>= 1) for images
 * up to `viewPx`, else `viewPx / side` (as `drawScaledImage`).
 * @param {number} h
 * @param {number} w
 * @param {number} viewPx
 */
export function viewScale(h, w, viewPx) {
  const side = Math.max(h, w, 1);
  return side <= viewPx ? Math.max(1, Math.round(viewPx / side)) : viewPx / side;
}

/**
 * Device-pixel edges of n cells starting at `offset` image px, `step` apart: edge e is
 * round((offset + e * step) * k) clamped to 0..limit (n + 1 edges, non-decreasing).
 * @param {number} n
 * @param {number} offset
 * @param {number} step
 * @param {number} k device px per image px
 * @param {number} limit canvas size in device px
 * @returns {Int32Array}
 */
export function cellEdges(n, offset, step, k, limit) {
  const edges = new Int32Array(n + 1);
  for (let e = 0; e <= n; e++) {
    const v = Math.round((offset + e * step) * k);
    edges[e] = Math.min(limit, Math.max(0, v));
  }
  return edges;
}

/**
 * Index of the cell whose device-pixel span [edges[c], edges[c + 1]) holds `p`, or -1.
 * @param {Int32Array} edges
 * @param {number} p
 */
export function cellOf(edges, p) {
  const n = edges.length - 1;
  if (n < 1 || p < edges[0] || p >= edges[n]) return -1;
  let lo = 0;
  let hi = n - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (edges[mid] <= p) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/**
 * Tooltip text of cell (i, j): "patch at (y, x) · score 0.123".
 * @param {MapGeometry} g
 * @param {number} i
 * @param {number} j
 * @param {number} score
 */
export function cellLabel(g, i, j, score) {
  const y = Math.max(0, g.y0 + i * g.sh);
  const x = Math.max(0, g.x0 + j * g.sw);
  return `patch at (${y}, ${x}) · score ${formatSig(score)}`;
}
