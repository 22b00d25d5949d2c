// @ts-check
// The overlay canvas above the embedding map's scatter: the thumbnails (lib/thumbs.js) of the
// points in view (with `show_thumbnails`, when at most MAX_THUMBS are in view) and the ring of
// `selected_index`, redrawn in the scatter's own animation frames.
//
// Test hooks on `canvas.cnnviz-scatter`: `data-thumbs` (thumbnails on the overlay in the last
// draw); when the ring of a newly selected image is first drawn, `data-ring-index` (that image)
// and `data-ring-drawn-at` (ms since the epoch, performance.timeOrigin + performance.now()).

import { getInt } from "../lib/anywidget.js";
import { SELECT_COLOR } from "../lib/style.js";
import { setData } from "./scatter.js";

/** @typedef {import("../lib/thumbs.js").ThumbAtlas} ThumbAtlas */

/** At most this many thumbnails are drawn on the overlay (more in view: dots only). */
export const MAX_THUMBS = 2000;
/** Bounds of the side of a thumbnail drawn on the map (CSS px). */
const THUMB_MIN_PX = 12;
const THUMB_MAX_PX = 72;

/**
 * On-screen side of the thumbnails: about the median distance from a point to its nearest
 * neighbour on screen (estimated from up to 128 evenly spaced points), within THUMB_MIN_PX and
 * THUMB_MAX_PX, so that they just about touch: zooming in makes them bigger.
 * @param {Float64Array} xy CSS x, y of the points in view
 */
function thumbSide(xy) {
  const count = xy.length / 2;
  if (count < 2) return THUMB_MAX_PX;
  const step = Math.max(1, Math.floor(count / 128));
  /** @type {number[]} */
  const nn = [];
  for (let a = 0; a < count; a += step) {
    let best = Number.POSITIVE_INFINITY;
    const ax = xy[2 * a];
    const ay = xy[2 * a + 1];
    for (let b = 0; b < count; b++) {
      if (b === a) continue;
      const dx = xy[2 * b] - ax;
      const dy = xy[2 * b + 1] - ay;
      const d2 = dx * dx + dy * dy;
      if (d2 < best) best = d2;
    }
    if (Number.isFinite(best)) nn.push(Math.sqrt(best));
  }
  nn.sort((p, q) => p - q);
  const median = nn.length ? nn[nn.length >> 1] : THUMB_MAX_PX;
  return Math.max(THUMB_MIN_PX, Math.min(THUMB_MAX_PX, 1.2 * median));
}

/**
 * Draw the thumbnails of the points in view, each centred on its point and framed in its
 * class colour (in index order: the highest index on top); returns how many were drawn.
 * @param {CanvasRenderingContext2D} ctx in CSS px
 * @param {import("./plot.js").Scatterplot} sp
 * @param {import("./scatter.js").Dataset} d
 * @param {ThumbAtlas} thumbs
 * @param {[number, number]} size of the plot (CSS px)
 */
function drawThumbnails(ctx, sp, d, thumbs, [cssW, cssH]) {
  const inView = sp.get("pointsInView");
  const count = inView.length;
  if (count === 0 || count > MAX_THUMBS) return 0;
  const order = Int32Array.from(inView).sort();
  /** @type {Float64Array} CSS x, y of each point of `order` */
  const xy = new Float64Array(2 * count);
  for (let k = 0; k < count; k++) {
    const p = sp.getScreenPosition(order[k]);
    xy[2 * k] = p ? p[0] : Number.NaN;
    xy[2 * k + 1] = p ? p[1] : Number.NaN;
  }
  const side = thumbSide(xy);
  let drawn = 0;
  for (let k = 0; k < count; k++) {
    const i = order[k];
    const t = thumbs.get(i);
    if (!t) continue;
    const long = Math.max(t.sw, t.sh, 1);
    const w = (side * t.sw) / long;
    const h = (side * t.sh) / long;
    const x = xy[2 * k] - w / 2;
    const y = xy[2 * k + 1] - h / 2;
    if (!(x < cssW && y < cssH && x + w > 0 && y + h > 0)) continue;
    ctx.imageSmoothingEnabled = side * (window.devicePixelRatio || 1) < long;
    ctx.drawImage(t.bitmap, t.sx, t.sy, t.sw, t.sh, x, y, w, h);
    const c = d.coloring.classes[i];
    ctx.strokeStyle = d.colors[c >= 0 && c < d.nClasses ? c : d.nClasses];
    ctx.lineWidth = 1;
    ctx.strokeRect(x + 0.5, y + 0.5, w - 1, h - 1);
    drawn += 1;
  }
  return drawn;
}

/**
 * The ring of the selected image: orange between a thick halo and a thin outer line.
 * @param {CanvasRenderingContext2D} ctx
 * @param {[number, number]} pos CSS px
 * @param {number} r radius
 * @param {boolean} dark
 */
function drawRing(ctx, [x, y], r, dark) {
  ctx.lineWidth = 4;
  ctx.strokeStyle = dark ? "#000000" : "#ffffff";
  ctx.beginPath();
  ctx.arc(x, y, r, 0, 2 * Math.PI);
  ctx.stroke();
  ctx.lineWidth = 2.5;
  ctx.strokeStyle = SELECT_COLOR;
  ctx.stroke();
  ctx.lineWidth = 1;
  ctx.strokeStyle = dark ? "#ffffff" : "#000000";
  ctx.beginPath();
  ctx.arc(x, y, r + 2.5, 0, 2 * Math.PI);
  ctx.stroke();
}

/** The overlay: thumbnails and the selected image's ring. @param {import("./scatter.js").View} view */
export function createOverlay({ model, plot, scatter, thumbs }) {
  const { overlay, canvas } = plot;
  let scheduled = false;
  let destroyed = false;
  /** nothing is drawn on the overlay */
  let empty = true;
  /** the image whose ring is on the overlay (-1 none) */
  let ringIndex = -1;

  /**
   * Redraw the overlay; it runs for every frame of the map (while panning too), so an overlay
   * that is empty and stays empty is left alone rather than cleared.
   */
  function draw() {
    const ctx = overlay.getContext("2d");
    if (!ctx) return;
    const ready = scatter.ready();
    const sel = getInt(model, "selected_index", -1);
    const wantThumbs = Boolean(model.get("show_thumbnails")) && thumbs.valid();
    const pos = ready && scatter.isShown(sel) ? scatter.screenPos(sel) : null;
    if (empty && !pos && !(ready && wantThumbs)) {
      ringIndex = -1;
      setData(canvas, "thumbs", "0");
      return;
    }
    const dpr = overlay.width / Math.max(1, plot.size()[0]);
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const sp = plot.sp;
    const data = scatter.data();
    let drawn = 0;
    if (sp && data && ready) {
      if (wantThumbs) drawn = drawThumbnails(ctx, sp, data, thumbs, plot.size());
      if (pos) drawRing(ctx, pos, drawn > 0 ? 6 : 9, plot.dark);
    }
    empty = !pos && drawn === 0;
    setData(canvas, "thumbs", String(drawn));
    if (pos && sel !== ringIndex) {
      // when the ring of a newly selected image was first drawn (benchmarks/selection_latency.py)
      canvas.dataset.ringDrawnAt = (performance.timeOrigin + performance.now()).toFixed(2);
      canvas.dataset.ringIndex = String(sel);
    }
    ringIndex = pos ? sel : -1;
  }

  plot.on("drawing", draw);
  return {
    /** Redraw in the next animation frame. */
    schedule() {
      if (scheduled || destroyed) return;
      scheduled = true;
      requestAnimationFrame(() => {
        scheduled = false;
        if (!destroyed) draw();
      });
    },
    destroy() {
      destroyed = true;
    },
  };
}
