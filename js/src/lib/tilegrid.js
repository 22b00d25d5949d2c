// @ts-check
// A canvas grid of tiles cut from one atlas image. Shared by every widget that shows one small
// image per filter / channel.
//
// Atlas: tiles of tileH x tileW atlas pixels packed row-major, without gaps, in a rows x cols grid.
// Display: tiles in `order` (default identity), `displayCols` per row, each scaled by an integer
// `scale` with nearest-neighbour sampling, `gap` CSS px between tiles and around the border.
// The tile at display position p has its top-left corner at CSS
//   x = gap + (p % cols) * (tileW * scale + gap),  y = gap + floor(p / cols) * (tileH * scale + gap)
//
// Tiles are drawn once per state change on the base canvas; hover and selection outlines live on
// an overlay canvas, so moving the mouse never redraws the tiles.
//
// Selection: `selected` tiles get a 2-px orange frame just outside the tile (in the gap);
// `marked` tiles get a 2-px frame in `markColor` just inside the tile, so a tile can show both.
//
// Row headers: with `gutter: true`, `TileGrid.gutter` is an element left of the tiles inside the
// scroll box (it scrolls vertically with them and sticks at the left). The caller fills it,
// typically from `onDraw`, which receives the layout of every draw.

import { BG, BG_TILES, FG, FONT, injectStyle, MARK_COLOR, SELECT_COLOR } from "./style.js";

const CSS = `
.cnnviz-tilegrid { position: relative; display: inline-block; max-width: 100%; vertical-align: top; }
.cnnviz-tilegrid-scroll { overflow: auto; max-height: 600px; max-width: 100%; }
.cnnviz-tilegrid-stack { position: relative; display: inline-block; line-height: 0; }
.cnnviz-tiles { display: block; background: ${BG_TILES}; cursor: pointer; }
.cnnviz-tiles-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.cnnviz-tilegrid-has-gutter > .cnnviz-tilegrid-scroll { display: flex; align-items: flex-start; }
.cnnviz-tilegrid-gutter { flex: none; position: sticky; left: 0; z-index: 1; box-sizing: border-box; background: ${BG}; line-height: normal; }
.cnnviz-tooltip {
  position: absolute; z-index: 10; pointer-events: none; white-space: nowrap;
  padding: 2px 6px; border-radius: 3px; font: 12px/1.4 ${FONT};
  color: var(--jp-layout-color1, var(--vscode-editor-background, #fff));
  background: ${FG}; opacity: 0.92; box-shadow: 0 1px 3px rgba(0, 0, 0, 0.3);
}
`;

/** Device-pixel budget for one canvas; beyond it the backing store uses a lower pixel ratio. */
const MAX_CANVAS_DIM = 16384;
const MAX_CANVAS_AREA = 1 << 26;

/**
 * @typedef {object} TileGridState
 * @property {ImageBitmap | null} atlas
 * @property {number} tileH atlas tile height (atlas pixels)
 * @property {number} tileW atlas tile width (atlas pixels)
 * @property {number} rows atlas grid rows
 * @property {number} cols atlas grid columns
 * @property {number} n number of tiles (<= rows * cols)
 * @property {readonly number[] | null} order display order (tile indices); null = identity
 * @property {number} tilePx target on-screen size of one tile (CSS px)
 * @property {number} gap CSS px between tiles and around the border
 * @property {number | null} displayCols columns of the display grid; null = atlas cols
 * @property {readonly number[]} selected tile indices outlined in orange
 * @property {readonly number[]} marked tile indices outlined (inside) in the mark colour
 */

/** The resolved layout of one draw (see `layout`). @typedef {ReturnType<typeof layout>} TileGridLayout */

/**
 * @typedef {object} TileGridOptions
 * @property {(tile: number) => string} label tooltip text for a tile index
 * @property {(tile: number) => void} [onClick] called with the clicked tile index
 * @property {string} [markColor] outline colour of `marked` tiles (default MARK_COLOR)
 * @property {boolean} [gutter] create `TileGrid.gutter` (a row-header column left of the tiles)
 * @property {(layout: TileGridLayout) => void} [onDraw] called after every draw of the tiles
 */

/**
 * @typedef {object} TileGrid
 * @property {HTMLDivElement} el root element (contains the scroll box and the tooltip)
 * @property {HTMLCanvasElement} canvas the tile canvas (class `cnnviz-tiles`)
 * @property {HTMLDivElement | null} gutter with `gutter: true`, the (empty) element left of the
 *   tiles (class `cnnviz-tilegrid-gutter`), else null
 * @property {(patch: Partial<TileGridState>) => void} update merge state and schedule a draw
 * @property {() => void} destroy remove listeners (does not close the atlas bitmap)
 */

/**
 * Integer scale factor for tiles: max(1, round(tilePx / max(tileH, tileW))).
 * @param {number} tilePx
 * @param {number} tileH
 * @param {number} tileW
 * @returns {number}
 */
export function tileScale(tilePx, tileH, tileW) {
  const m = Math.max(tileH, tileW, 1);
  return Math.max(1, Math.round(tilePx / m));
}

/**
 * Resolve the drawable layout of a state.
 * @param {TileGridState} s
 */
export function layout(s) {
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
  const cols = Math.max(1, Math.trunc(s.displayCols ?? atlasCols) || 1);
  const scale = tileScale(s.tilePx, tileH, tileW);
  const gap = Math.max(0, Math.trunc(s.gap));
  const cellW = tileW * scale;
  const cellH = tileH * scale;
  const count = order.length;
  const usedCols = Math.min(cols, count);
  const usedRows = Math.ceil(count / cols);
  const cssW = count ? gap + usedCols * (cellW + gap) : 0;
  const cssH = count ? gap + usedRows * (cellH + gap) : 0;
  return { tileH, tileW, atlasCols, n, order, cols, scale, gap, cellW, cellH, cssW, cssH };
}

/**
 * Whether applying `patch` changes anything drawn on the tile canvas (i.e. more than the
 * selection outline, which only needs the overlay).
 * @param {TileGridState} state
 * @param {Partial<TileGridState>} patch
 * @returns {boolean}
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
 * @param {TileGridOptions} options
 * @returns {TileGrid}
 */
export function createTileGrid(options) {
  const doc = document;
  const el = doc.createElement("div");
  el.className = "cnnviz-tilegrid";
  const scroll = doc.createElement("div");
  scroll.className = "cnnviz-tilegrid-scroll";
  const stack = doc.createElement("div");
  stack.className = "cnnviz-tilegrid-stack";
  const canvas = doc.createElement("canvas");
  canvas.className = "cnnviz-tiles";
  const overlay = doc.createElement("canvas");
  overlay.className = "cnnviz-tiles-overlay";
  const tooltip = doc.createElement("div");
  tooltip.className = "cnnviz-tooltip";
  tooltip.style.display = "none";
  tooltip.setAttribute("role", "tooltip");
  stack.append(canvas, overlay);
  /** @type {HTMLDivElement | null} */
  let gutter = null;
  if (options.gutter) {
    gutter = doc.createElement("div");
    gutter.className = "cnnviz-tilegrid-gutter";
    el.classList.add("cnnviz-tilegrid-has-gutter");
    scroll.append(gutter);
  }
  scroll.append(stack);
  el.append(scroll, tooltip);
  injectStyle(el, "cnnviz-style-tilegrid", CSS);

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
    gap: 2,
    displayCols: null,
    selected: [],
    marked: [],
  };
  const markColor = options.markColor ?? MARK_COLOR;
  /** @type {ReturnType<typeof layout>} */
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

  /** Pixel ratio for the backing store, capped so huge grids stay allocatable. */
  function pixelRatio() {
    const want = window.devicePixelRatio || 1;
    const w = Math.max(1, lay.cssW);
    const h = Math.max(1, lay.cssH);
    return Math.min(
      want,
      MAX_CANVAS_DIM / w,
      MAX_CANVAS_DIM / h,
      Math.sqrt(MAX_CANVAS_AREA / (w * h)),
    );
  }

  /** CSS coordinate -> device pixel (consistent rounding keeps tiles gap-exact). */
  const px = (/** @type {number} */ v) => Math.round(v * dpr);

  /** @param {number} p display position */
  function tileX(p) {
    return lay.gap + (p % lay.cols) * (lay.cellW + lay.gap);
  }
  /** @param {number} p display position */
  function tileY(p) {
    return lay.gap + Math.floor(p / lay.cols) * (lay.cellH + lay.gap);
  }

  function draw() {
    scheduled = false;
    if (destroyed) return;
    lay = layout(state);
    dpr = pixelRatio();
    const w = Math.max(1, px(lay.cssW));
    const h = Math.max(1, px(lay.cssH));
    for (const c of [canvas, overlay]) {
      c.width = w;
      c.height = h;
      c.style.width = `${lay.cssW}px`;
      c.style.height = `${lay.cssH}px`;
    }
    posOf = new Int32Array(lay.n).fill(-1);
    lay.order.forEach((t, p) => {
      posOf[t] = p;
    });
    const atlas = state.atlas;
    if (baseCtx && atlas) {
      baseCtx.imageSmoothingEnabled = false;
      const { tileW, tileH, atlasCols, cellW, cellH } = lay;
      for (let p = 0; p < lay.order.length; p++) {
        const t = lay.order[p];
        const x = tileX(p);
        const y = tileY(p);
        const dx = px(x);
        const dy = px(y);
        baseCtx.drawImage(
          atlas,
          (t % atlasCols) * tileW,
          Math.floor(t / atlasCols) * tileH,
          tileW,
          tileH,
          dx,
          dy,
          px(x + cellW) - dx,
          px(y + cellH) - dy,
        );
      }
    }
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

  /**
   * Stroke a `width`-px frame just outside display position p (inside the gap when gap >= width).
   * @param {CanvasRenderingContext2D} ctx
   * @param {number} p
   * @param {number} width
   */
  function frame(ctx, p, width) {
    const x0 = px(tileX(p) - width);
    const y0 = px(tileY(p) - width);
    const x1 = px(tileX(p) + lay.cellW + width);
    const y1 = px(tileY(p) + lay.cellH + width);
    const lw = Math.max(1, px(width));
    ctx.lineWidth = lw;
    ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
  }

  /**
   * Stroke a `width`-px frame just inside display position p.
   * @param {CanvasRenderingContext2D} ctx
   * @param {number} p
   * @param {number} width
   */
  function innerFrame(ctx, p, width) {
    const x0 = px(tileX(p));
    const y0 = px(tileY(p));
    const x1 = px(tileX(p) + lay.cellW);
    const y1 = px(tileY(p) + lay.cellH);
    const lw = Math.max(
      1,
      Math.min(px(width), Math.floor((x1 - x0) / 2), Math.floor((y1 - y0) / 2)),
    );
    ctx.lineWidth = lw;
    ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
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
      frame(ctx, hoverPos, 1);
    }
    ctx.strokeStyle = SELECT_COLOR;
    for (const t of state.selected) {
      const p = Number.isInteger(t) && t >= 0 && t < posOf.length ? posOf[t] : -1;
      if (p >= 0) frame(ctx, p, 2);
    }
    ctx.strokeStyle = markColor;
    for (const t of state.marked) {
      const p = posOfTile(t);
      if (p >= 0) innerFrame(ctx, p, 2);
    }
  }

  function schedule() {
    if (scheduled || destroyed) return;
    scheduled = true;
    queueMicrotask(draw);
  }

  /**
   * Display position under a client point, or -1.
   * @param {number} clientX
   * @param {number} clientY
   */
  function hitTest(clientX, clientY) {
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

  /**
   * @param {number} p display position or -1
   * @param {PointerEvent | MouseEvent | null} ev
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
      let left = ev.clientX - r.left + 12;
      const top = ev.clientY - r.top + 14;
      if (left + tooltipWidth > r.width) left = Math.max(0, ev.clientX - r.left - tooltipWidth - 8);
      tooltip.style.left = `${left}px`;
      tooltip.style.top = `${top}px`;
    }
  }

  /** @param {PointerEvent} ev */
  const onMove = (ev) => setHover(hitTest(ev.clientX, ev.clientY), ev);
  const onLeave = () => setHover(-1, null);
  /** @param {MouseEvent} ev */
  const onClick = (ev) => {
    const p = hitTest(ev.clientX, ev.clientY);
    if (p >= 0) options.onClick?.(lay.order[p]);
  };
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerleave", onLeave);
  canvas.addEventListener("click", onClick);
  scroll.addEventListener("scroll", onLeave, { passive: true });

  // Redraw crisply when the page zoom / monitor pixel ratio changes.
  /** @type {MediaQueryList | null} */
  let dprQuery = null;
  const onDprChange = () => {
    watchDpr();
    schedule();
  };
  function watchDpr() {
    dprQuery?.removeEventListener("change", onDprChange);
    dprQuery = window.matchMedia?.(`(resolution: ${window.devicePixelRatio || 1}dppx)`) ?? null;
    dprQuery?.addEventListener("change", onDprChange);
  }
  watchDpr();

  return {
    el,
    canvas,
    gutter,
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
      canvas.removeEventListener("pointermove", onMove);
      canvas.removeEventListener("pointerleave", onLeave);
      canvas.removeEventListener("click", onClick);
      scroll.removeEventListener("scroll", onLeave);
      dprQuery?.removeEventListener("change", onDprChange);
      state.atlas = null;
      el.remove();
    },
  };
}
