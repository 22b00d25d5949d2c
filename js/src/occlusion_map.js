// @ts-check
// OcclusionMap: the Zeiler & Fergus occlusion map. The image, with a heatmap over it of the
// target class's score while a patch of `baseline` covers each place. Python streams the maps
// coarse-to-fine, so the heatmap is redrawn whenever `scores` changes.
//
// Map geometry: score (i, j) is the target score with the patch's (unclipped) top-left corner
// at (y0 + i * sh, x0 + j * sw) image px (patch ph x pw; `map_origin` = (y0, x0): 0 for patches
// inside the image, -ph // 2 for patches centred on every stride-th pixel). It is drawn as one
// cell centred on that patch's centre: rows  oy + i * sh ... oy + (i + 1) * sh,
// oy = y0 + (ph - sh) / 2  (columns likewise), so
// the cells tile the region between the first and last patch centre +- half a stride. Cell
// edges are rounded to device pixels once per draw; painting and hover use the same edges.
//
// Canvases: `canvas.cnnviz-heatmap` holds the image with the cells blended over it at
// `opacity` (redrawn once per batch of trait changes); `canvas.cnnviz-heatmap-overlay` on top
// of it holds only the hover outline, so moving the mouse never redraws the heatmap.

import { getFloat, getInt, getPair, onChanges } from "./lib/anywidget.js";
import { createBitmapSlot, formatSig, toFloat32 } from "./lib/codecs.js";
import { createColorbar, decodeLut, lutIndex } from "./lib/colormap.js";
import { field, make, showProgress } from "./lib/dom.js";
import { watchPixelRatio } from "./lib/dpr.js";
import { fileName, saveButton, styleSaveButtons } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle, TOOLTIP_RULES } from "./lib/style.js";
import { initialize } from "./lib/sync.js";

/** @typedef {import("./lib/anywidget.js").RenderProps} RenderProps */
/** @typedef {import("./lib/anywidget.js").AnyModel} AnyModel */

const CSS = `
.cnnviz-occlusion { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 6px; max-width: 100%; }
.cnnviz-occlusion .cnnviz-caption { font-weight: 600; }
.cnnviz-occlusion .cnnviz-error { color: ${FG2}; font-style: italic; }
.cnnviz-occlusion .cnnviz-toolbar { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 14px; }
.cnnviz-occlusion .cnnviz-field { display: inline-flex; align-items: center; gap: 4px; color: ${FG2}; }
.cnnviz-occlusion select, .cnnviz-occlusion input[type=number], .cnnviz-occlusion .cnnviz-class-input {
  font: inherit; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; padding: 1px 3px;
}
.cnnviz-occlusion input[type=number] { width: 5em; }
.cnnviz-occlusion .cnnviz-class-input { width: 14em; }
.cnnviz-occlusion .cnnviz-opacity { width: 90px; margin: 0; }
.cnnviz-occlusion .cnnviz-refused { outline: 2px solid #d62728; outline-offset: -1px; }
.cnnviz-occlusion .cnnviz-body { display: flex; align-items: flex-start; gap: 14px; max-width: 100%; }
.cnnviz-occlusion .cnnviz-heatmap-box { position: relative; flex: none; }
.cnnviz-occlusion .cnnviz-heatmap-stack { position: relative; display: inline-block; line-height: 0; border: 1px solid ${BORDER}; }
.cnnviz-occlusion .cnnviz-heatmap { display: block; cursor: crosshair; }
.cnnviz-occlusion .cnnviz-heatmap-overlay { position: absolute; left: 0; top: 0; pointer-events: none; }
.cnnviz-occlusion .cnnviz-tooltip { ${TOOLTIP_RULES} }
.cnnviz-occlusion .cnnviz-progress-row { display: flex; align-items: center; gap: 8px; color: ${FG2}; font-size: 12px; }
.cnnviz-occlusion .cnnviz-progress { width: 140px; height: 10px; }
.cnnviz-occlusion[data-running="false"] .cnnviz-progress { opacity: 0.5; }
`;

/** Traits that change the heatmap pixels (or its data attributes). */
const DRAW_TRAITS = /** @type {const} */ ([
  "image_png",
  "image_shape",
  "scores",
  "scores_shape",
  "map_patch",
  "map_stride",
  "map_origin",
  "vmin",
  "vmax",
  "colormap_lut",
  "opacity",
  "view_px",
  "maps_done",
]);
const TEXT_TRAITS = /** @type {const} */ (["caption", "status", "progress", "running"]);
const TARGET_TRAITS = /** @type {const} */ (["target", "top_classes", "class_names"]);
const CONTROL_TRAITS = /** @type {const} */ ([
  "patch_size",
  "stride",
  "baseline",
  "opacity",
  "image_shape",
]);

/** `<option>` value of the "other class…" entry. */
const OTHER = "other";
/** Device-pixel budget for one canvas side. */
const MAX_CANVAS_DIM = 16384;
/** Default of `view_px`. */
const VIEW_PX = 256;
/** How long a refused input stays outlined (ms). */
const REFUSED_MS = 1200;

let instances = 0;

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
 * @typedef {object} TopClass
 * @property {number} index
 * @property {string} name
 * @property {number} score
 */

/**
 * The map geometry, or null when any of the shapes is not positive.
 * @param {[number, number]} shape scores_shape
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

/**
 * The `top_classes` trait as a clean list.
 * @param {unknown} raw
 * @returns {TopClass[]}
 */
export function readTopClasses(raw) {
  if (!Array.isArray(raw)) return [];
  /** @type {TopClass[]} */
  const out = [];
  for (const item of raw) {
    if (item == null || typeof item !== "object") continue;
    const rec = /** @type {Record<string, unknown>} */ (item);
    const index = Number(rec.index);
    if (!Number.isInteger(index) || index < 0) continue;
    out.push({
      index,
      name: rec.name == null ? `class ${index}` : String(rec.name),
      score: Number(rec.score),
    });
  }
  return out;
}

/**
 * Datalist values for class names: the name itself, or "name #index" when several classes share
 * that name. Returns the values and a map back to the class index.
 * @param {readonly string[]} names
 */
export function classChoices(names) {
  /** @type {Map<string, number>} */
  const count = new Map();
  for (const n of names) count.set(n, (count.get(n) ?? 0) + 1);
  const values = names.map((n, i) => ((count.get(n) ?? 0) > 1 ? `${n} #${i}` : n));
  /** @type {Map<string, number>} */
  const lookup = new Map();
  values.forEach((v, i) => {
    if (!lookup.has(v)) lookup.set(v, i);
  });
  return { values, lookup };
}

/**
 * Class index typed into the "other class" box: a datalist value, a class index, or a name
 * matched case-insensitively when that is unambiguous; -1 otherwise.
 * @param {string} text
 * @param {readonly string[]} names
 * @param {Map<string, number>} lookup
 */
export function parseClass(text, names, lookup) {
  const s = text.trim();
  if (!s) return -1;
  const hit = lookup.get(s);
  if (hit !== undefined) return hit;
  if (/^\d+$/.test(s)) {
    const i = Number(s);
    return i < names.length ? i : -1;
  }
  const lower = s.toLowerCase();
  let found = -1;
  for (let i = 0; i < names.length; i++) {
    if (names[i].toLowerCase() !== lower) continue;
    if (found >= 0) return -1;
    found = i;
  }
  return found;
}

/** @param {RenderProps} props */
function render({ model, el }) {
  const root = make("div", "cnnviz-occlusion");
  const caption = make("div", "cnnviz-caption");
  const error = make("div", "cnnviz-error");
  error.style.display = "none";

  // --- toolbar: target class, patch, stride, baseline, opacity --------------------------------
  const toolbar = make("div", "cnnviz-toolbar");
  const select = /** @type {HTMLSelectElement} */ (make("select", "cnnviz-target"));
  select.title = "target class (top-5 predictions)";
  const classInput = /** @type {HTMLInputElement} */ (make("input", "cnnviz-class-input"));
  classInput.type = "text";
  classInput.placeholder = "class name or index";
  classInput.autocomplete = "off";
  classInput.style.display = "none";
  const datalist = /** @type {HTMLDataListElement} */ (make("datalist", "cnnviz-class-list"));
  instances += 1;
  datalist.id = `cnnviz-occlusion-classes-${instances}-${Math.random().toString(36).slice(2, 8)}`;
  classInput.setAttribute("list", datalist.id);

  /** @param {string} cls @param {string} title */
  const numberInput = (cls, title) => {
    const input = /** @type {HTMLInputElement} */ (make("input", cls));
    input.type = "number";
    input.title = title;
    return input;
  };
  const patchInput = numberInput("cnnviz-patch", "patch size (image px)");
  patchInput.min = "1";
  patchInput.step = "1";
  const strideInput = numberInput("cnnviz-stride", "stride of the finest map (image px)");
  strideInput.min = "1";
  strideInput.step = "1";
  const baselineInput = numberInput("cnnviz-baseline", "value the patch fills in");
  baselineInput.step = "any";
  const opacity = /** @type {HTMLInputElement} */ (make("input", "cnnviz-opacity"));
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.01";
  opacity.title = "opacity of the map";

  /** Name of the saved PNG: the target class. */
  const saveName = () => {
    const names = model.get("class_names");
    const t = getInt(model, "target", 0);
    const name = Array.isArray(names) && t >= 0 && t < names.length ? names[t] : `class ${t}`;
    return fileName("occlusion", String(name));
  };
  const classField = field("class", select);
  classField.append(classInput, datalist);
  toolbar.append(
    classField,
    field("patch", patchInput),
    field("stride", strideInput),
    field("baseline", baselineInput),
    field("opacity", opacity),
    saveButton(() => canvas, saveName),
  );

  // --- heatmap + colour bar -------------------------------------------------------------------
  const body = make("div", "cnnviz-body");
  const box = make("div", "cnnviz-heatmap-box");
  const stack = make("div", "cnnviz-heatmap-stack");
  const canvas = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-heatmap"));
  const overlay = /** @type {HTMLCanvasElement} */ (make("canvas", "cnnviz-heatmap-overlay"));
  const tooltip = make("div", "cnnviz-tooltip");
  tooltip.style.display = "none";
  tooltip.setAttribute("role", "tooltip");
  stack.append(canvas, overlay);
  box.append(stack, tooltip);
  const colorbar = createColorbar();
  colorbar.el.style.display = "none";
  body.append(box, colorbar.el);

  // --- progress -------------------------------------------------------------------------------
  const progressRow = make("div", "cnnviz-progress-row");
  const progress = /** @type {HTMLProgressElement} */ (make("progress", "cnnviz-progress"));
  progress.max = 1;
  const status = make("span", "cnnviz-status");
  progressRow.append(progress, status);

  root.append(caption, toolbar, error, body, progressRow);
  el.append(root);
  injectStyle(root, "cnnviz-style-occlusion", CSS);
  styleSaveButtons(root);

  const image = createBitmapSlot();
  const baseCtx = canvas.getContext("2d");
  const overlayCtx = overlay.getContext("2d");
  const scratch = document.createElement("canvas");
  let disposed = false;

  /** Decoded traits, re-decoded only when the trait object changes. */
  /** @type {unknown} */
  let scoresRaw = {};
  let scores = /** @type {Float32Array} */ (new Float32Array(0));
  /** @type {unknown} */
  let lutRaw = {};
  let lut = decodeLut(null);

  /**
   * What the heatmap shows now (set by each draw; hover reads it).
   * @type {ShownMap | null}
   */
  let shown = null;
  let scale = 1;
  let dpr = 1;
  let drawCount = 0;
  let drawGen = 0;
  let drawScheduled = false;
  /** Pointer position over the heatmap (CSS px from its top-left), or null. */
  /** @type {[number, number] | null} */
  let pointer = null;
  /** Hovered cell, or null. */
  /** @type {[number, number] | null} */
  let hover = null;

  // --- drawing --------------------------------------------------------------------------------

  function scheduleDraw() {
    if (drawScheduled || disposed) return;
    drawScheduled = true;
    queueMicrotask(startDraw);
  }

  function startDraw() {
    drawScheduled = false;
    if (disposed) return;
    const gen = ++drawGen;
    image.load(model.get("image_png")).then((res) => {
      // A newer draw is on its way (or the bytes were superseded): let it draw.
      if (!res || disposed || gen !== drawGen) return;
      draw(res.bitmap, res.error);
      image.show(res.bitmap);
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
    const valid = h > 0 && w > 0;
    let viewPx = getInt(model, "view_px", VIEW_PX);
    if (!(viewPx > 0)) viewPx = VIEW_PX;
    scale = valid ? viewScale(h, w, viewPx) : 0;
    const cssW = valid ? w * scale : 0;
    const cssH = valid ? h * scale : 0;
    const want = window.devicePixelRatio || 1;
    dpr = valid ? Math.min(want, MAX_CANVAS_DIM / cssW, MAX_CANVAS_DIM / cssH) : want;
    const cw = valid ? Math.max(1, Math.round(cssW * dpr)) : 0;
    const ch = valid ? Math.max(1, Math.round(cssH * dpr)) : 0;
    for (const c of [canvas, overlay]) {
      c.width = cw;
      c.height = ch;
      c.style.width = `${cssW}px`;
      c.style.height = `${cssH}px`;
    }
    stack.style.display = valid ? "" : "none";

    if (baseCtx && bitmap && valid) {
      baseCtx.imageSmoothingEnabled = scale < 1;
      baseCtx.imageSmoothingQuality = "high";
      baseCtx.drawImage(bitmap, 0, 0, cw, ch);
    }

    // the map
    const rawScores = model.get("scores");
    if (rawScores !== scoresRaw) {
      scoresRaw = rawScores;
      scores = toFloat32(rawScores);
    }
    const rawLut = model.get("colormap_lut");
    if (rawLut !== lutRaw) {
      lutRaw = rawLut;
      lut = decodeLut(rawLut);
    }
    const vmin = getFloat(model, "vmin", 0);
    const vmax = getFloat(model, "vmax", 1);
    const alpha = Math.min(1, Math.max(0, getFloat(model, "opacity", 0.6)));
    shown = null;
    if (scores.length > 0 && valid) {
      const geom = mapGeometry(
        getPair(model, "scores_shape"),
        getPair(model, "map_patch"),
        getPair(model, "map_stride"),
        getPair(model, "map_origin"),
      );
      if (!geom) {
        errors.push("scores_shape, map_patch and map_stride must be positive");
      } else if (geom.ny * geom.nx !== scores.length) {
        errors.push(`scores has ${scores.length} values; scores_shape is ${geom.ny}×${geom.nx}`);
      } else {
        const k = scale * dpr;
        const ey = cellEdges(geom.ny, geom.oy, geom.sh, k, ch);
        const ex = cellEdges(geom.nx, geom.ox, geom.sw, k, cw);
        shown = { geom, scores, ey, ex };
        if (baseCtx) paintCells(baseCtx, shown, vmin, vmax, alpha);
      }
    }
    error.textContent = errors.join("; ");
    error.style.display = errors.length ? "" : "none";

    colorbar.el.style.display = shown ? "" : "none";
    if (shown) {
      colorbar.update({
        lut,
        vmin,
        vmax,
        length: Math.max(96, cssH - 32),
        ...markState(),
        format: (v) => formatSig(v),
      });
    }

    drawCount += 1;
    const ds = canvas.dataset;
    ds.maps = String(getInt(model, "maps_done", 0));
    ds.cells = shown ? `${shown.geom.ny},${shown.geom.nx}` : "0,0";
    ds.scale = String(scale);
    ds.opacity = String(alpha);
    ds.drawCount = String(drawCount);
    updateHover();
  }

  /**
   * Blend the cells over the image: one colour per cell (transparent for NaN), painted at
   * device resolution on a scratch canvas and drawn with globalAlpha = alpha.
   * @param {CanvasRenderingContext2D} ctx
   * @param {ShownMap} map
   * @param {number} vmin
   * @param {number} vmax
   * @param {number} alpha
   */
  function paintCells(ctx, map, vmin, vmax, alpha) {
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

  function markState() {
    const base = getFloat(model, "base_score", Number.NaN);
    return { mark: base, markLabel: `unoccluded ${formatSig(base)}` };
  }

  // --- hover ----------------------------------------------------------------------------------

  /** Hovered cell at the pointer, from the edges of the last draw. @returns {[number, number] | null} */
  function hitTest() {
    if (!pointer || !shown) return null;
    const ratio = canvas.clientWidth > 0 ? canvas.width / canvas.clientWidth : dpr;
    const i = cellOf(shown.ey, Math.floor(pointer[1] * ratio));
    const j = cellOf(shown.ex, Math.floor(pointer[0] * ratio));
    return i >= 0 && j >= 0 ? [i, j] : null;
  }

  function updateHover() {
    const cell = hitTest();
    hover = cell;
    if (cell && shown) {
      const [i, j] = cell;
      tooltip.textContent = cellLabel(shown.geom, i, j, shown.scores[i * shown.geom.nx + j]);
      tooltip.style.display = "";
      placeTooltip();
    } else {
      tooltip.style.display = "none";
    }
    canvas.dataset.hover = cell ? `${cell[0]},${cell[1]}` : "";
    drawOverlay();
  }

  function placeTooltip() {
    if (!pointer) return;
    const offsetX = stack.offsetLeft + canvas.offsetLeft;
    const offsetY = stack.offsetTop + canvas.offsetTop;
    const tw = tooltip.offsetWidth;
    let left = offsetX + pointer[0] + 12;
    const top = offsetY + pointer[1] + 14;
    // The tooltip may overhang the heatmap box, but not the widget: flip it left of the pointer.
    const boxRect = box.getBoundingClientRect();
    const rootRect = root.getBoundingClientRect();
    const right = rootRect.right - boxRect.left;
    if (left + tw > right) {
      left = offsetX + pointer[0] - tw - 8;
      left = Math.max(left, rootRect.left - boxRect.left);
    }
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${top}px`;
  }

  /** Outline of the hovered patch (ph x pw at its top-left corner), black outside white. */
  function drawOverlay() {
    const ctx = overlayCtx;
    if (!ctx) return;
    ctx.clearRect(0, 0, overlay.width, overlay.height);
    if (!hover || !shown) return;
    const g = shown.geom;
    const k = scale * dpr;
    const x0 = Math.round((g.x0 + hover[1] * g.sw) * k);
    const y0 = Math.round((g.y0 + hover[0] * g.sh) * k);
    const x1 = Math.round((g.x0 + hover[1] * g.sw + g.pw) * k);
    const y1 = Math.round((g.y0 + hover[0] * g.sh + g.ph) * k);
    const lw = Math.max(1, Math.round(dpr));
    ctx.lineWidth = lw;
    ctx.strokeStyle = "rgba(0, 0, 0, 0.85)";
    ctx.strokeRect(x0 + lw / 2, y0 + lw / 2, x1 - x0 - lw, y1 - y0 - lw);
    ctx.strokeStyle = "rgba(255, 255, 255, 0.95)";
    ctx.strokeRect(x0 + 1.5 * lw, y0 + 1.5 * lw, x1 - x0 - 3 * lw, y1 - y0 - 3 * lw);
  }

  /** @param {PointerEvent} ev */
  const onMove = (ev) => {
    const r = canvas.getBoundingClientRect();
    pointer = [ev.clientX - r.left, ev.clientY - r.top];
    const cell = hitTest();
    if (cell?.[0] !== hover?.[0] || cell?.[1] !== hover?.[1]) updateHover();
    else if (cell) placeTooltip();
  };
  const onLeave = () => {
    pointer = null;
    if (hover) updateHover();
  };
  canvas.addEventListener("pointermove", onMove);
  canvas.addEventListener("pointerleave", onLeave);

  // --- text, progress, colour-bar mark --------------------------------------------------------

  function updateText() {
    showProgress(model, { root, caption, status, progress });
  }

  function updateMark() {
    if (shown) colorbar.update(markState());
  }

  // --- target class ---------------------------------------------------------------------------

  /** @type {unknown} */
  let namesRaw = {};
  /** @type {string[]} */
  let names = [];
  /** @type {Map<string, number>} */
  let lookup = new Map();
  let otherOpen = false;

  function className(/** @type {number} */ i) {
    return i >= 0 && i < names.length ? names[i] : `class ${i}`;
  }

  function updateTarget() {
    const rawNames = model.get("class_names");
    if (rawNames !== namesRaw) {
      namesRaw = rawNames;
      names = Array.isArray(rawNames) ? rawNames.map(String) : [];
      const choices = classChoices(names);
      lookup = choices.lookup;
      datalist.replaceChildren(
        ...choices.values.map((v) => {
          const o = document.createElement("option");
          o.value = v;
          return o;
        }),
      );
    }
    const top = readTopClasses(model.get("top_classes"));
    const target = getInt(model, "target", -1);
    select.replaceChildren();
    for (const c of top) {
      const score = Number.isFinite(c.score) ? ` (${formatSig(c.score, 2)})` : "";
      select.add(new Option(`${c.name}${score}`, String(c.index)));
    }
    if (target >= 0 && !top.some((c) => c.index === target)) {
      select.add(new Option(className(target), String(target)));
    }
    if (names.length > top.length) select.add(new Option("other class…", OTHER));
    select.value = otherOpen ? OTHER : target >= 0 ? String(target) : "";
  }

  function openOther() {
    otherOpen = true;
    classInput.style.display = "";
    classInput.value = "";
    classInput.focus();
  }

  function closeOther() {
    otherOpen = false;
    classInput.style.display = "none";
    classInput.value = "";
    classInput.removeAttribute("aria-invalid");
    updateTarget();
  }

  /** @param {number} index */
  function setTarget(index) {
    if (index !== getInt(model, "target", -1)) {
      model.set("target", index);
      model.save_changes();
    }
  }

  const onSelect = () => {
    if (select.value === OTHER) {
      openOther();
      return;
    }
    const index = Number(select.value);
    otherOpen = false;
    classInput.style.display = "none";
    if (Number.isInteger(index) && index >= 0) setTarget(index);
  };
  const onClassChange = () => {
    const index = parseClass(classInput.value, names, lookup);
    if (index < 0) {
      classInput.setAttribute("aria-invalid", "true");
      refuse(classInput);
      return;
    }
    otherOpen = false;
    setTarget(index);
    closeOther();
  };
  /** @param {KeyboardEvent} ev */
  const onClassKey = (ev) => {
    if (ev.key === "Escape") closeOther();
  };
  const onClassBlur = () => {
    if (!classInput.value.trim()) closeOther();
  };
  select.addEventListener("change", onSelect);
  classInput.addEventListener("change", onClassChange);
  classInput.addEventListener("keydown", onClassKey);
  classInput.addEventListener("blur", onClassBlur);

  // --- patch / stride / baseline / opacity ----------------------------------------------------

  /** @type {Map<HTMLElement, ReturnType<typeof setTimeout>>} */
  const refusedTimers = new Map();
  /** Outline `input` briefly to show its value was refused. @param {HTMLElement} input */
  function refuse(input) {
    input.classList.add("cnnviz-refused");
    const old = refusedTimers.get(input);
    if (old !== undefined) clearTimeout(old);
    refusedTimers.set(
      input,
      setTimeout(() => {
        refusedTimers.delete(input);
        input.classList.remove("cnnviz-refused");
      }, REFUSED_MS),
    );
  }

  function patchMax() {
    const [h, w] = getPair(model, "image_shape");
    return h > 0 && w > 0 ? Math.min(h, w) : Number.POSITIVE_INFINITY;
  }

  function syncControls() {
    patchInput.value = String(model.get("patch_size") ?? "");
    strideInput.value = String(model.get("stride") ?? "");
    baselineInput.value = String(model.get("baseline") ?? "");
    const max = patchMax();
    if (Number.isFinite(max)) patchInput.max = String(max);
    else patchInput.removeAttribute("max");
    opacity.value = String(Math.min(1, Math.max(0, getFloat(model, "opacity", 0.6))));
  }

  /**
   * A `change` handler that commits `input` to trait `name` when `accept(value)` holds, and
   * otherwise reverts the input to the trait value.
   * @param {HTMLInputElement} input
   * @param {string} name
   * @param {(v: number) => boolean} accept
   */
  function committer(input, name, accept) {
    return () => {
      const text = input.value.trim();
      const v = Number(text);
      if (text === "" || !Number.isFinite(v) || !accept(v)) {
        input.value = String(model.get(name) ?? "");
        refuse(input);
        return;
      }
      input.classList.remove("cnnviz-refused");
      if (v !== model.get(name)) {
        model.set(name, v);
        model.save_changes();
      }
    };
  }
  const onPatch = committer(
    patchInput,
    "patch_size",
    (v) => Number.isInteger(v) && v >= 1 && v <= patchMax(),
  );
  const onStride = committer(strideInput, "stride", (v) => Number.isInteger(v) && v >= 1);
  const onBaseline = committer(baselineInput, "baseline", () => true);
  const onOpacityInput = () => {
    const v = Number(opacity.value);
    if (Number.isFinite(v)) model.set("opacity", Math.min(1, Math.max(0, v)));
  };
  const onOpacityChange = () => {
    onOpacityInput();
    model.save_changes();
  };
  patchInput.addEventListener("change", onPatch);
  strideInput.addEventListener("change", onStride);
  baselineInput.addEventListener("change", onBaseline);
  opacity.addEventListener("input", onOpacityInput);
  opacity.addEventListener("change", onOpacityChange);

  // --- wiring ---------------------------------------------------------------------------------

  const unsubscribers = [
    onChanges(model, DRAW_TRAITS, scheduleDraw),
    onChanges(model, TEXT_TRAITS, updateText),
    onChanges(model, ["base_score"], updateMark),
    onChanges(model, TARGET_TRAITS, updateTarget),
    onChanges(model, CONTROL_TRAITS, syncControls),
    watchPixelRatio(scheduleDraw),
  ];
  updateText();
  updateTarget();
  syncControls();
  scheduleDraw();

  return () => {
    disposed = true;
    for (const off of unsubscribers) off();
    canvas.removeEventListener("pointermove", onMove);
    canvas.removeEventListener("pointerleave", onLeave);
    select.removeEventListener("change", onSelect);
    classInput.removeEventListener("change", onClassChange);
    classInput.removeEventListener("keydown", onClassKey);
    classInput.removeEventListener("blur", onClassBlur);
    patchInput.removeEventListener("change", onPatch);
    strideInput.removeEventListener("change", onStride);
    baselineInput.removeEventListener("change", onBaseline);
    opacity.removeEventListener("input", onOpacityInput);
    opacity.removeEventListener("change", onOpacityChange);
    for (const t of refusedTimers.values()) clearTimeout(t);
    refusedTimers.clear();
    image.dispose();
    root.remove();
  };
}

export default { initialize, render };
