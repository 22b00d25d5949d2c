// @ts-check
// A canvas grid of tiles cut from one atlas image. Shared by every widget that shows one small
// image per filter / channel.
//
// Atlas: tiles of tileH x tileW atlas pixels packed row-major, without gaps, in a rows x cols grid.
// Display: tiles in `order` (default identity), `cols` per row, each scaled by an integer
// `scale` with nearest-neighbour sampling, `gap` CSS px between tiles and around the border.
// The tile at display position p has its top-left corner at CSS
//   x = gap + (p % cols) * (tileW * scale + gap),  y = gap + floor(p / cols) * (tileH * scale + gap)
//
// Tiles are drawn once per state change on the base canvas; hover and selection outlines live on
// an overlay canvas, so moving the mouse never redraws the tiles.
//
// Selection: `selected` tiles get a 2-px orange frame just outside the tile (in the gap);
// `marked` tiles get a 2-px frame in MARK_COLOR just inside the tile, so a tile can show both.
//
// Row headers: with `gutter: true`, the grid's `gutter` is an element left of the tiles inside the
// scroll box (it scrolls vertically with them and sticks at the left). The caller fills it,
// typically from `onDraw`, which receives the layout of every draw.

import { getInt, getPair } from "./anywidget.js";
import { listen, make, makeTooltip, placeTooltip } from "./dom.js";
import { watchPixelRatio } from "./dpr.js";
import { BG, BG_TILES, injectStyle, MARK_COLOR, SELECT_COLOR, TOOLTIP_RULES } from "./style.js";

const CSS = `
.cnnviz-tilegrid { position: relative; display: inline-block; max-width: 100%; vertical-align: top; }
.cnnviz-tilegrid-scroll { overflow: auto; max-height: 600px; max-width: 100%; }
.cnnviz-tilegrid-stack { position: relative; display: inline-block; line-height: 0; }
.cnnviz-tiles { display: block; background: ${BG_TILES}; cursor: pointer; }
.cnnviz-tiles-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.cnnviz-tilegrid-has-gutter > .cnnviz-tilegrid-scroll { display: flex; align-items: flex-start; }
.cnnviz-tilegrid-gutter { flex: none; position: sticky; left: 0; z-index: 1; box-sizing: border-box; background: ${BG}; line-height: normal; }
.cnnviz-tooltip { ${TOOLTIP_RULES} }
`;

/** Device-pixel budget for one canvas; beyond it the backing store uses a lower pixel ratio. */
const MAX_CANVAS_DIM = 16384;
const MAX_CANVAS_AREA = 1 << 26;
/** CSS px between tiles and around the border. */
const GAP = 2;

/**
 * @typedef {object} TileGridState
 * @property {ImageBitmap | null} atlas
 * @property {number} tileH atlas tile height (atlas pixels)
 * @property {number} tileW atlas tile width (atlas pixels)
 * @property {number} rows atlas grid rows
 * @property {number} cols atlas grid columns (and of the display grid)
 * @property {number} n number of tiles (<= rows * cols)
 * @property {readonly number[] | null} order display order (tile indices); null = identity
 * @property {number} tilePx target on-screen size of one tile (CSS px)
 * @property {readonly number[]} selected tile indices outlined in orange
 * @property {readonly number[]} marked tile indices outlined (inside) in MARK_COLOR
 */

/** The resolved layout of one draw (see `layout`). @typedef {ReturnType<typeof layout>} TileGridLayout */

/**
 * @typedef {object} TileGridOptions
 * @property {(tile: number) => string} label tooltip text for a tile index
 * @property {(tile: number) => void} [onClick] called with the clicked tile index
 * @property {boolean} [gutter] create `gutter` (a row-header column left of the tiles)
 * @property {(layout: TileGridLayout) => void} [onDraw] called after every draw of the tiles
 */

/** The drawable layout of a state. @param {TileGridState} s */
function layout(s) {
  const tileH = Math.max(0, Math.trunc(s.tileH));
  const tileW = Math.max(0, Math.trunc(s.tileW));
  const atlasCols = Math.max(0, Math.trunc(s.cols));
  const atlasRows = Math.max(0, Math.trunc(s.rows));
  const valid = tileH > 0 && tileW > 0 && atlasCols > 0 && atlasRows > 0;
  const n = valid ? Math.max(0, Math.min(Math.trunc(s.n), atlasRows * atlasCols)) : 0;
  /** @type {number[]} */
  let order;
  if (s.order) {
    order = [];
    const seen = new Uint8Array(n);
    for (const t of s.order) {
      if (Number.isInteger(t) && t >= 0 && t < n && !seen[t]) {
        seen[t] = 1;
        order.push(t);
      }
    }
  } else {
    order = Array.from({ length: n }, (_, i) => i);
  }
  const cols = Math.max(1, atlasCols);
  // an integer scale: nearest-neighbour sampling keeps the tiles' pixels crisp
  const scale = Math.max(1, Math.round(s.tilePx / Math.max(tileH, tileW, 1)));
  const gap = GAP;
  const cellW = tileW * scale;
  const cellH = tileH * scale;
  const count = order.length;
  const cssW = count ? gap + Math.min(cols, count) * (cellW + gap) : 0;
  const cssH = count ? gap + Math.ceil(count / cols) * (cellH + gap) : 0;
  return { tileH, tileW, atlasCols, n, order, cols, scale, gap, cellW, cellH, cssW, cssH };
}

/** The traits of the atlas that every tile-grid widget has. */
export const ATLAS_TRAITS = ["atlas_png", "tile_shape", "grid_shape", "n_tiles", "tile_px"];

/**
 * The grid state of the atlas traits (`tile_shape`, `grid_shape`, `n_tiles`: at most rows x
 * cols, and `tile_px`, else `tilePx`).
 * @param {import("./anywidget.js").AnyModel} model
 * @param {number} tilePx
 */
export function atlasState(model, tilePx) {
  const [tileH, tileW] = getPair(model, "tile_shape");
  const [rows, cols] = getPair(model, "grid_shape");
  const n = Math.max(0, Math.min(getInt(model, "n_tiles", rows * cols), rows * cols));
  return { tileH, tileW, rows, cols, n, tilePx: getInt(model, "tile_px", tilePx) };
}

/**
 * Whether applying `patch` changes anything drawn on the tile canvas (i.e. more than the
 * selection outline, which only needs the overlay).
 * @param {TileGridState} state
 * @param {Partial<TileGridState>} patch
 */
function changesTiles(state, patch) {
  for (const key of /** @type {(keyof TileGridState)[]} */ (Object.keys(patch))) {
    if (key === "selected" || key === "marked") continue;
    const a = state[key];
    const b = patch[key];
    if (key === "order" && Array.isArray(a) && Array.isArray(b)) {
      if (a.length !== b.length || a.some((v, i) => v !== b[i])) return true;
    } else if (a !== b) {
      return true;
    }
  }
  return false;
}

/**
 * Pixel ratio for the backing store, capped so huge grids stay allocatable.
 * @param {TileGridLayout} lay
 */
function pixelRatio(lay) {
  const w = Math.max(1, lay.cssW);
  const h = Math.max(1, lay.cssH);
  const dims = Math.min(MAX_CANVAS_DIM / w, MAX_CANVAS_DIM / h);
  return Math.min(window.devicePixelRatio || 1, dims, Math.sqrt(MAX_CANVAS_AREA / (w * h)));
}

/**
 * CSS top-left corner of display position p.
 * @param {TileGridLayout} lay
 * @param {number} p
 * @returns {[number, number]}
 */
function tileXY(lay, p) {
  return [
    lay.gap + (p % lay.cols) * (lay.cellW + lay.gap),
    lay.gap + Math.floor(p / lay.cols) * (lay.cellH + lay.gap),
  ];
}

/**
 * Draw every displayed tile from the atlas (CSS coordinates rounded to device pixels the same
 * way everywhere keeps the tiles gap-exact).
 * @param {CanvasRenderingContext2D} ctx
 * @param {ImageBitmap} atlas
 * @param {TileGridLayout} lay
 * @param {number} dpr
 */
function drawTiles(ctx, atlas, lay, dpr) {
  const px = (/** @type {number} */ v) => Math.round(v * dpr);
  ctx.imageSmoothingEnabled = false;
  const { tileW, tileH, atlasCols, cellW, cellH } = lay;
  for (let p = 0; p < lay.order.length; p++) {
    const t = lay.order[p];
    const [x, y] = tileXY(lay, p);
    const dx = px(x);
    const dy = px(y);
    const sx = (t % atlasCols) * tileW;
    const sy = Math.floor(t / atlasCols) * tileH;
    ctx.drawImage(atlas, sx, sy, tileW, tileH, dx, dy, px(x + cellW) - dx, px(y + cellH) - dy);
  }
}

/**
 * Stroke a `width`-px frame around display position p: just outside it (inside the gap when
 * gap >= width), or with `inside` just inside it.
 * @param {CanvasRenderingContext2D} ctx
 * @param {TileGridLayout} lay
 * @param {number} dpr
 * @param {number} p
 * @param {number} width
 */
function frame(ctx, lay, dpr, p, width, inside = false) {
  const px = (/** @type {number} */ v) => Math.round(v * dpr);
  const [x, y] = tileXY(lay, p);
  const out = inside ? 0 : width;
  const x0 = px(x - out);
  const y0 = px(y - out);
  const x1 = px(x + lay.cellW + out);
  const y1 = px(y + lay.cellH + out);
  const fit = inside ? Math.min(Math.floor((x1 - x0) / 2), Math.floor((y1 - y0) / 2)) : Infinity;
  const lw = Math.max(1, Math.min(px(width), fit));
  ctx.lineWidth = lw;
  ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
}

/**
 * Display position under a client point, or -1.
 * @param {TileGridLayout} lay
 * @param {HTMLCanvasElement} canvas
 * @param {MouseEvent} ev
 */
function hitTest(lay, canvas, { clientX, clientY }) {
  const r = canvas.getBoundingClientRect();
  const x = clientX - r.left - lay.gap;
  const y = clientY - r.top - lay.gap;
  if (x < 0 || y < 0) return -1;
  const stepX = lay.cellW + lay.gap;
  const stepY = lay.cellH + lay.gap;
  const col = Math.floor(x / stepX);
  const row = Math.floor(y / stepY);
  if (col >= lay.cols || x - col * stepX >= lay.cellW || y - row * stepY >= lay.cellH) return -1;
  const p = row * lay.cols + col;
  return p < lay.order.length ? p : -1;
}

/** The grid's elements: the scroll box with the canvases (and the gutter), and the tooltip. */
function gridElements(withGutter = false) {
  const canvas = make("canvas", "cnnviz-tiles");
  const overlay = make("canvas", "cnnviz-tiles-overlay");
  const tooltip = makeTooltip();
  const gutter = withGutter ? make("div", "cnnviz-tilegrid-gutter") : null;
  const scroll = make("div", "cnnviz-tilegrid-scroll");
  if (gutter) scroll.append(gutter);
  scroll.append(make("div", "cnnviz-tilegrid-stack", canvas, overlay));
  const el = make("div", "cnnviz-tilegrid", scroll, tooltip);
  if (gutter) el.classList.add("cnnviz-tilegrid-has-gutter");
  injectStyle(el, "cnnviz-style-tilegrid", CSS);
  return { el, scroll, canvas, overlay, tooltip, gutter };
}

/**
 * A tile grid: `el` (the scroll box and the tooltip), `canvas` (the tiles), `gutter` (with
 * `gutter: true`, the element left of the tiles, else null), `update(patch)` (merge state and
 * schedule a draw) and `destroy()` (does not close the atlas bitmap).
 * @param {TileGridOptions} options
 */
export function createTileGrid(options) {
  const { el, scroll, canvas, overlay, tooltip, gutter } = gridElements(options.gutter);
  /** @type {TileGridState} */
  const state = {
    atlas: null,
    tileH: 0,
    tileW: 0,
    rows: 0,
    cols: 0,
    n: 0,
    order: null,
    tilePx: 48,
    selected: [],
    marked: [],
  };
  let lay = layout(state);
  /** display position of each tile index (-1: not displayed) */
  let posOf = new Int32Array(0);
  let dpr = 1;
  let drawCount = 0;
  let hoverPos = -1;
  let scheduled = false;
  let destroyed = false;
  let tooltipWidth = 0;
  const baseCtx = canvas.getContext("2d");
  const overlayCtx = overlay.getContext("2d");

  function draw() {
    scheduled = false;
    if (destroyed) return;
    lay = layout(state);
    dpr = pixelRatio(lay);
    for (const c of [canvas, overlay]) {
      c.width = Math.max(1, Math.round(lay.cssW * dpr));
      c.height = Math.max(1, Math.round(lay.cssH * dpr));
      c.style.width = `${lay.cssW}px`;
      c.style.height = `${lay.cssH}px`;
    }
    posOf = new Int32Array(lay.n).fill(-1);
    lay.order.forEach((t, p) => {
      posOf[t] = p;
    });
    if (baseCtx && state.atlas) drawTiles(baseCtx, state.atlas, lay, dpr);
    const ds = canvas.dataset;
    ds.nTiles = String(lay.order.length);
    ds.scale = String(lay.scale);
    ds.gap = String(lay.gap);
    ds.cols = String(lay.cols);
    ds.tileH = String(lay.tileH);
    ds.tileW = String(lay.tileW);
    ds.order = lay.order.join(",");
    if (hoverPos >= lay.order.length) setHover(-1, null);
    else if (hoverPos >= 0) tooltip.textContent = options.label(lay.order[hoverPos]);
    drawOverlay();
    drawCount += 1;
    ds.drawCount = String(drawCount);
    options.onDraw?.(lay);
  }

  /** Display position of tile t, or -1. @param {number} t */
  const posOfTile = (t) => (Number.isInteger(t) && t >= 0 && t < posOf.length ? posOf[t] : -1);

  function drawOverlay() {
    const ctx = overlayCtx;
    canvas.dataset.selected = state.selected.filter((t) => posOf[t] >= 0).join(",");
    canvas.dataset.marked = state.marked.filter((t) => posOfTile(t) >= 0).join(",");
    if (!ctx) return;
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (hoverPos >= 0 && hoverPos < lay.order.length) {
      ctx.strokeStyle = "rgba(128, 128, 128, 0.9)";
      frame(ctx, lay, dpr, hoverPos, 1);
    }
    ctx.strokeStyle = SELECT_COLOR;
    for (const t of state.selected) {
      const p = posOfTile(t);
      if (p >= 0) frame(ctx, lay, dpr, p, 2);
    }
    ctx.strokeStyle = MARK_COLOR;
    for (const t of state.marked) {
      const p = posOfTile(t);
      if (p >= 0) frame(ctx, lay, dpr, p, 2, true);
    }
  }

  function schedule() {
    if (scheduled || destroyed) return;
    scheduled = true;
    queueMicrotask(draw);
  }

  /**
   * @param {number} p display position or -1
   * @param {MouseEvent | null} ev
   */
  function setHover(p, ev) {
    if (p !== hoverPos) {
      hoverPos = p;
      if (p >= 0) {
        tooltip.textContent = options.label(lay.order[p]);
        tooltip.style.display = "";
        tooltipWidth = tooltip.offsetWidth;
      } else {
        tooltip.style.display = "none";
      }
      drawOverlay();
    }
    if (p >= 0 && ev) {
      const r = el.getBoundingClientRect();
      placeTooltip(tooltip, ev.clientX - r.left, ev.clientY - r.top, tooltipWidth, r.width);
    }
  }

  const onLeave = () => setHover(-1, null);
  /** @param {MouseEvent} ev */
  const onClick = (ev) => {
    const p = hitTest(lay, canvas, ev);
    if (p >= 0) options.onClick?.(lay.order[p]);
  };
  const unlisten = listen([
    [canvas, "pointermove", (ev) => setHover(hitTest(lay, canvas, ev), ev)],
    [canvas, "pointerleave", onLeave],
    [canvas, "click", onClick],
    [scroll, "scroll", onLeave],
  ]);
  // Redraw crisply when the page zoom / monitor pixel ratio changes.
  const unwatchDpr = watchPixelRatio(schedule);

  return {
    el,
    canvas,
    gutter,
    /** @param {Partial<TileGridState>} patch */
    update(patch) {
      const needsDraw = drawCount === 0 || changesTiles(state, patch);
      Object.assign(state, patch);
      if (needsDraw) {
        schedule();
      } else if (!scheduled && !destroyed) {
        drawOverlay();
      }
    },
    destroy() {
      destroyed = true;
      unlisten();
      unwatchDpr();
      state.atlas = null;
      el.remove();
    },
  };
}

/** @typedef {ReturnType<typeof createTileGrid>} TileGrid */
