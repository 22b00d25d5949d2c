// @ts-check
// Named regions of the embedding map (cnnviz_widgets/inspect/regions.py): an HTML layer over the
// scatter with each region's name, and its most typical image where thumbnails exist, at the
// region's medoid point. `place` moves the names with the map's camera (pan, zoom, grid layout);
// a click on a name calls `pick(region)` (the view selects the region's points).
//
// Data: `regions` (JSON list, largest first: name, size, typical, medoid, n_classes, ...) and
// `point_regions` (int32, each point's region, -1 none).
// Test hooks: each `.cnnviz-region` has data-region, data-count, data-typical and data-medoid;
// the layer has data-regions (how many names it holds) and data-placed (how many are in view).

import { make, onPick } from "./dom.js";
import { drawScaledImage } from "./image.js";
import { BG, BORDER, FG, FONT, SELECT_COLOR } from "./style.js";

/** Side of a region's thumbnail (CSS px). */
const REGION_THUMB_PX = 28;

/** Rules for the region layer inside `root` (a selector), e.g. ".cnnviz-embedding". */
export const regionCss = (/** @type {string} */ root) => `
${root} .cnnviz-regions { position: absolute; inset: 0; pointer-events: none; overflow: hidden; line-height: 1.2; }
${root} .cnnviz-region {
  position: absolute; left: 0; top: 0; pointer-events: auto; display: inline-flex; align-items: center; gap: 4px;
  max-width: 240px; padding: 2px 6px 2px 2px; font: 600 11px/1.2 ${FONT}; color: ${FG}; background: ${BG};
  opacity: 0.88; border: 1px solid ${BORDER}; border-radius: 4px; cursor: pointer; white-space: nowrap;
}
${root} .cnnviz-region:hover { border-color: ${SELECT_COLOR}; opacity: 1; z-index: 1; }
${root} .cnnviz-region-name { overflow: hidden; text-overflow: ellipsis; padding-left: 4px; }
${root} .cnnviz-region canvas { display: block; flex: none; image-rendering: pixelated; }
`;

/**
 * @typedef {object} Region
 * @property {string} name
 * @property {number} size points in the region
 * @property {number} typical the index of its most typical image
 * @property {number} medoid the index of the point where its name is drawn
 * @property {number} nClasses distinct classes among its points
 */

/**
 * The `regions` trait as a list of valid regions.
 * @param {unknown} raw
 * @returns {Region[]}
 */
export function parseRegions(raw) {
  if (!Array.isArray(raw)) return [];
  return raw.map((r) => ({
    name: String(r?.name ?? ""),
    size: Number(r?.size) || 0,
    typical: Number.isInteger(r?.typical) ? r.typical : -1,
    medoid: Number.isInteger(r?.medoid) ? r.medoid : -1,
    nClasses: Number(r?.n_classes) || 0,
  }));
}

/**
 * The points of region `r`, ascending.
 * @param {Int32Array} pointRegions each point's region (-1 none)
 * @param {number} r
 */
export function regionMembers(pointRegions, r) {
  /** @type {number[]} */
  const out = [];
  for (let i = 0; i < pointRegions.length; i++) if (pointRegions[i] === r) out.push(i);
  return out;
}

/**
 * @typedef {import("./thumbs.js").ThumbRect} ThumbRect
 * @typedef {{ el: HTMLElement, thumb: HTMLCanvasElement, region: Region, drawn: boolean,
 *   x: number, y: number }} Label
 */

/**
 * @param {HTMLElement} plot the element the scatter canvas fills (position: relative)
 * @param {(r: number) => void} pick
 */
export function createRegionLayer(plot, pick) {
  const layer = make("div", "cnnviz-regions");
  plot.append(layer);
  /** @type {Label[]} */
  let labels = [];
  let key = "";

  /**
   * Show `regions` (when `show`), each with its typical image's thumbnail once it is decoded.
   * @param {Region[]} regions
   * @param {boolean} show
   * @param {(i: number) => ThumbRect | null} thumbOf
   */
  function update(regions, show, thumbOf) {
    const k = JSON.stringify(regions);
    if (k !== key) {
      key = k;
      labels = regions.map((region, r) => {
        const thumb = make("canvas", "cnnviz-region-thumb");
        thumb.style.display = "none";
        const name = make("span", "cnnviz-region-name");
        name.textContent = region.name;
        const el = make("button", "cnnviz-region", thumb, name);
        el.dataset.region = String(r);
        el.dataset.count = String(region.size);
        el.dataset.typical = String(region.typical);
        el.dataset.medoid = String(region.medoid);
        el.title = `${region.name}\n${region.size} images, ${region.nClasses} classes · click: select them`;
        return { el, thumb, region, drawn: false, x: Number.NaN, y: Number.NaN };
      });
      layer.replaceChildren(...labels.map((l) => l.el));
    }
    for (const label of labels) {
      const t = label.drawn ? null : thumbOf(label.region.typical);
      if (t) {
        drawScaledImage(label.thumb, t.bitmap, REGION_THUMB_PX, t);
        label.thumb.style.display = "";
        label.drawn = true;
      }
    }
    layer.style.display = show ? "" : "none";
    layer.dataset.regions = String(show ? labels.length : 0);
  }

  /**
   * Put each name at its medoid's position on screen (hidden while it is out of view).
   * @param {(i: number) => [number, number] | null} screenPos CSS px in the plot
   * @param {number} width
   * @param {number} height
   */
  function place(screenPos, width, height) {
    if (layer.style.display === "none") return;
    let placed = 0;
    for (const label of labels) {
      const p = screenPos(label.region.medoid);
      const inView = p !== null && p[0] >= 0 && p[1] >= 0 && p[0] <= width && p[1] <= height;
      label.x = inView ? p[0] : Number.NaN;
      label.y = inView ? p[1] : Number.NaN;
      label.el.style.visibility = inView ? "" : "hidden";
      if (inView) {
        label.el.style.transform = `translate(${p[0]}px, ${p[1]}px) translate(-50%, -50%)`;
        placed += 1;
      }
    }
    layer.dataset.placed = String(placed);
  }

  /**
   * Draw the names shown onto a canvas context in CSS px (the PNG of the map).
   * @param {CanvasRenderingContext2D} ctx
   * @param {boolean} dark
   */
  function drawInto(ctx, dark) {
    if (layer.style.display === "none") return;
    ctx.font = "600 11px sans-serif";
    ctx.textAlign = "center";
    ctx.textBaseline = "middle";
    for (const { x, y, region } of labels) {
      if (!Number.isFinite(x)) continue;
      const w = ctx.measureText(region.name).width + 10;
      ctx.fillStyle = dark ? "rgba(17,17,17,0.85)" : "rgba(255,255,255,0.85)";
      ctx.fillRect(x - w / 2, y - 8, w, 16);
      ctx.fillStyle = dark ? "#eeeeee" : "#222222";
      ctx.fillText(region.name, x, y);
    }
  }

  const unlisten = onPick(layer, ".cnnviz-region", "region", pick);

  return {
    update,
    place,
    drawInto,
    dispose() {
      unlisten();
      layer.remove();
    },
  };
}
