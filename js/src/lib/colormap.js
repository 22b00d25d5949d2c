// @ts-check
// Colour lookup tables and a vertical colour bar.
//
// A LUT is 256 RGB entries (768 bytes, as Python's `render.colormap_lut(name)`, (256, 3) uint8).
// A value v maps to entry round(255 * (v - vmin) / (vmax - vmin)), clamped to 0..255; when
// vmax <= vmin (a flat map) every finite value maps to the middle entry, 128. NaN maps to none.

import { readArray } from "./codecs.js";
import { make } from "./dom.js";
import { BG, FG, FG2, FONT, injectStyle } from "./style.js";

/** Bytes in a LUT: 256 entries x RGB. */
export const LUT_BYTES = 768;

/** @type {Uint8Array | null} */
let grayLut = null;

/**
 * A fresh copy of the LUT in a uint8 `Array` trait (its codec value); a grayscale ramp when it is
 * not uint8 or has fewer than 768 entries.
 * @param {unknown} raw
 */
export function decodeLut(raw) {
  const { data } = readArray(raw);
  if (data instanceof Uint8Array && data.length >= LUT_BYTES) return data.slice(0, LUT_BYTES);
  if (!grayLut) {
    grayLut = new Uint8Array(LUT_BYTES);
    for (let i = 0; i < 256; i++) grayLut.fill(i, 3 * i, 3 * i + 3);
  }
  return grayLut.slice();
}

/**
 * LUT entry of `v` on the scale vmin..vmax (see the module comment); -1 for NaN.
 * @param {number} v
 * @param {number} vmin
 * @param {number} vmax
 */
export function lutIndex(v, vmin, vmax) {
  if (Number.isNaN(v)) return -1;
  const span = vmax - vmin;
  if (!(span > 0) || !Number.isFinite(span)) return 128;
  const i = Math.round((255 * (v - vmin)) / span);
  return Math.min(255, Math.max(0, i));
}

const CSS = `
.cnnviz-colorbar-box { display: inline-flex; flex-direction: column; align-items: flex-start; gap: 2px; font: 11px/14px ${FONT}; color: ${FG2}; flex: none; }
.cnnviz-colorbar-row { display: flex; align-items: flex-start; gap: 6px; }
.cnnviz-colorbar-bar { position: relative; line-height: 0; }
.cnnviz-colorbar { display: block; border: 1px solid ${FG2}; }
.cnnviz-colorbar-mark { position: absolute; left: -4px; right: -4px; height: 2px; background: ${FG}; box-shadow: 0 0 0 1px ${BG}; }
.cnnviz-colorbar-labels { position: relative; }
.cnnviz-colorbar-mark-label { position: relative; white-space: nowrap; color: ${FG}; }
.cnnviz-colorbar-end { white-space: nowrap; }
`;

/**
 * @typedef {object} ColorbarState
 * @property {Uint8Array} lut 768 bytes
 * @property {number} vmin value at the bottom
 * @property {number} vmax value at the top
 * @property {number} length CSS px of the bar
 * @property {number} width CSS px across the bar
 * @property {number} mark value marked on the bar (NaN: no mark)
 * @property {string} markLabel text next to the mark
 * @property {(v: number) => string} format end labels
 */

/**
 * A vertical colour bar with the vmax label above it, the vmin label below it, and an optional
 * mark (a line across the bar, labelled to its right). The bar's device-pixel row r (of h) shows
 * LUT entry round(255 * (1 - (r + 0.5) / h)). Sets `data-vmin`, `data-vmax`, `data-mark` on the
 * canvas. `el`: the root (`.cnnviz-colorbar-box`); `update(patch)`: merge state and redraw what
 * changed.
 */
export function createColorbar() {
  const maxLabel = make("div", "cnnviz-colorbar-end cnnviz-colorbar-max");
  const minLabel = make("div", "cnnviz-colorbar-end cnnviz-colorbar-min");
  const canvas = make("canvas", "cnnviz-colorbar");
  const mark = make("div", "cnnviz-colorbar-mark");
  const markLabel = make("div", "cnnviz-colorbar-mark-label");
  const labels = make("div", "cnnviz-colorbar-labels", markLabel);
  const bar = make("div", "cnnviz-colorbar-bar", canvas, mark);
  const el = make("div", "cnnviz-colorbar-box", maxLabel);
  el.append(make("div", "cnnviz-colorbar-row", bar, labels), minLabel);
  injectStyle(el, "cnnviz-style-colorbar", CSS);

  /** @type {ColorbarState} */
  const state = {
    lut: decodeLut(null),
    vmin: 0,
    vmax: 1,
    length: 160,
    width: 12,
    mark: Number.NaN,
    markLabel: "",
    format: String,
  };
  /** @type {unknown[] | null} what the bar was last drawn with */
  let drawn = null;

  function drawBar() {
    const dpr = window.devicePixelRatio || 1;
    const len = Math.max(1, Math.round(state.length));
    const wid = Math.max(1, Math.round(state.width));
    const key = [state.lut, len, wid, dpr];
    if (drawn?.every((v, k) => v === key[k])) return;
    drawn = key;
    canvas.width = Math.max(1, Math.round(wid * dpr));
    canvas.height = Math.max(1, Math.round(len * dpr));
    canvas.style.width = `${wid}px`;
    canvas.style.height = `${len}px`;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    const h = canvas.height;
    const w = canvas.width;
    const img = ctx.createImageData(w, h);
    const lut = state.lut;
    for (let r = 0; r < h; r++) {
      const k = 3 * Math.round(255 * (1 - (r + 0.5) / h));
      for (let c = 0; c < w; c++) {
        const o = 4 * (r * w + c);
        img.data[o] = lut[k];
        img.data[o + 1] = lut[k + 1];
        img.data[o + 2] = lut[k + 2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
  }

  function placeMark() {
    const len = Math.max(1, Math.round(state.length));
    const { vmin, vmax } = state;
    const v = state.mark;
    const show = Number.isFinite(v);
    mark.style.display = show ? "" : "none";
    markLabel.style.display = show ? "" : "none";
    labels.style.height = `${len}px`;
    canvas.dataset.mark = show ? String(v) : "";
    if (!show) return;
    const span = vmax - vmin;
    let t = span > 0 ? (v - vmin) / span : 0.5;
    t = Math.min(1, Math.max(0, t));
    // +1: the canvas border
    const y = 1 + (1 - t) * len;
    mark.style.top = `${y - 1}px`;
    markLabel.textContent = state.markLabel;
    const h = markLabel.offsetHeight || 14;
    markLabel.style.top = `${Math.min(Math.max(0, y - h / 2), Math.max(0, len + 2 - h))}px`;
  }

  return {
    el,
    /** @param {Partial<ColorbarState>} patch */
    update(patch) {
      Object.assign(state, patch);
      drawBar();
      maxLabel.textContent = state.format(state.vmax);
      minLabel.textContent = state.format(state.vmin);
      canvas.dataset.vmin = String(state.vmin);
      canvas.dataset.vmax = String(state.vmax);
      placeMark();
    },
  };
}
