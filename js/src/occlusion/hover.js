// @ts-check
// Hover over the occlusion heatmap: the cell under the pointer (from the device-pixel edges of
// the last draw), its tooltip ("patch at (y, x) · score 0.123") and the outline of its patch on
// the overlay canvas, so moving the mouse never redraws the heatmap. Test hook: data-hover
// ("i,j" or "") on `canvas.cnnviz-heatmap`.

import { formatSig } from "../lib/codecs.js";
import { listen, makeTooltip, placeTooltip } from "../lib/dom.js";

/** @typedef {import("./heatmap.js").MapGeometry} MapGeometry */

/**
 * Index of the cell whose device-pixel span [edges[c], edges[c + 1]) holds `p`, or -1.
 * @param {Int32Array} edges
 * @param {number} p
 */
function cellOf(edges, p) {
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
function cellLabel(g, i, j, score) {
  const y = Math.max(0, g.y0 + i * g.sh);
  const x = Math.max(0, g.x0 + j * g.sw);
  return `patch at (${y}, ${x}) · score ${formatSig(score)}`;
}

/**
 * Outline of patch (i, j) (ph x pw at its top-left corner), black outside white.
 * @param {CanvasRenderingContext2D} ctx
 * @param {MapGeometry} g
 * @param {[number, number]} cell
 * @param {{ scale: number, dpr: number }} view
 */
function outlinePatch(ctx, g, [i, j], { scale, dpr }) {
  const k = scale * dpr;
  const x0 = Math.round((g.x0 + j * g.sw) * k);
  const y0 = Math.round((g.y0 + i * g.sh) * k);
  const x1 = Math.round((g.x0 + j * g.sw + g.pw) * k);
  const y1 = Math.round((g.y0 + i * g.sh + g.ph) * k);
  const lw = Math.max(1, Math.round(dpr));
  ctx.lineWidth = lw;
  ctx.strokeStyle = "rgba(0, 0, 0, 0.85)";
  ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
  ctx.strokeStyle = "rgba(255, 255, 255, 0.95)";
  ctx.strokeRect(x0 + 1.5 * lw, y0 + 1.5 * lw, x1 - x0 - 3 * lw, y1 - y0 - 3 * lw);
}

/**
 * @param {object} o
 * @param {ReturnType<typeof import("./heatmap.js").createHeatmap>} o.heatmap
 * @param {HTMLElement} o.root the widget (the tooltip may not overhang it)
 */
export function createHover({ heatmap, root }) {
  const { canvas, overlay, stack, box } = heatmap;
  const tooltip = makeTooltip();
  box.append(tooltip);
  const overlayCtx = overlay.getContext("2d");
  /** @type {[number, number] | null} pointer over the heatmap (CSS px from its top-left) */
  let pointer = null;
  /** @type {[number, number] | null} hovered cell */
  let hover = null;

  /** Hovered cell at the pointer, from the edges of the last draw. @returns {[number, number] | null} */
  function hitTest() {
    const shown = heatmap.shown();
    if (!pointer || !shown) return null;
    const ratio = canvas.clientWidth > 0 ? canvas.width / canvas.clientWidth : heatmap.view().dpr;
    const i = cellOf(shown.ey, Math.floor(pointer[1] * ratio));
    const j = cellOf(shown.ex, Math.floor(pointer[0] * ratio));
    return i >= 0 && j >= 0 ? [i, j] : null;
  }

  function update() {
    const cell = hitTest();
    const shown = heatmap.shown();
    hover = cell;
    if (cell && shown) {
      const [i, j] = cell;
      tooltip.textContent = cellLabel(shown.geom, i, j, shown.scores[i * shown.geom.nx + j]);
      tooltip.style.display = "";
      place();
    } else {
      tooltip.style.display = "none";
    }
    canvas.dataset.hover = cell ? `${cell[0]},${cell[1]}` : "";
    if (!overlayCtx) return;
    overlayCtx.clearRect(0, 0, overlay.width, overlay.height);
    if (hover && shown) outlinePatch(overlayCtx, shown.geom, hover, heatmap.view());
  }

  function place() {
    if (!pointer) return;
    const x = stack.offsetLeft + canvas.offsetLeft + pointer[0];
    const y = stack.offsetTop + canvas.offsetTop + pointer[1];
    // The tooltip may overhang the heatmap box, but not the widget.
    const boxLeft = box.getBoundingClientRect().left;
    const { left, right } = root.getBoundingClientRect();
    placeTooltip(tooltip, x, y, tooltip.offsetWidth, right - boxLeft, left - boxLeft);
  }

  /** @param {PointerEvent} ev */
  const onMove = (ev) => {
    const r = canvas.getBoundingClientRect();
    pointer = [ev.clientX - r.left, ev.clientY - r.top];
    const cell = hitTest();
    if (cell?.[0] !== hover?.[0] || cell?.[1] !== hover?.[1]) update();
    else if (cell) place();
  };
  const onLeave = () => {
    pointer = null;
    if (hover) update();
  };
  const unlisten = listen([
    [canvas, "pointermove", onMove],
    [canvas, "pointerleave", onLeave],
  ]);

  return {
    /** Follow a redraw of the heatmap (the cell under the pointer may have changed). */
    update,
    destroy: unlisten,
  };
}
