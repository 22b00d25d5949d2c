// @ts-check
// The embedding view's neighbour strip (`.cnnviz-neighbours`): the selected image, then its
// nearest neighbours in feature space (`neighbours`, `neighbour_distances`), each with its
// distance; a click on one selects it. Each `.cnnviz-neighbour` has data-index; the strip has
// data-complete (every thumbnail it shows was decoded).

import { getInt, getPair } from "../lib/anywidget.js";
import { formatSig } from "../lib/codecs.js";
import { make, onPick } from "../lib/dom.js";
import { drawScaledImage } from "../lib/image.js";

/** Size of the selected image in the neighbour strip, and of its neighbours (CSS px). */
const SELF_THUMB_PX = 96;
const NEIGHBOUR_THUMB_PX = 56;

/** @typedef {{ index: number, dist: number, self: boolean }} Entry */

/**
 * The selected image, then its neighbours (without itself or invalid indices).
 * @param {number} sel selected_index
 * @param {Int32Array} nb
 * @param {Float32Array} dist
 */
function stripEntries(sel, nb, dist) {
  /** @type {Entry[]} */
  const entries = [];
  if (sel >= 0) entries.push({ index: sel, dist: 0, self: true });
  for (let k = 0; k < nb.length; k++) {
    if (nb[k] === sel || nb[k] < 0) continue;
    entries.push({ index: nb[k], dist: k < dist.length ? dist[k] : Number.NaN, self: false });
  }
  if (entries.length <= 1 && sel < 0) entries.length = 0;
  return entries;
}

/**
 * @param {import("./scatter.js").View} view
 * @param {(i: number) => void} pick an image was clicked
 */
export function createNeighbours({ model, traits, scatter, thumbs }, pick) {
  const el = make("div", "cnnviz-neighbours");
  let key = "";

  /**
   * @param {Entry} e
   * @param {Int32Array} classes
   * @param {string[]} names
   * @param {[number, number]} shape thumb_shape
   */
  function item(e, classes, names, [th, tw]) {
    const item = make("div", `cnnviz-neighbour${e.self ? " cnnviz-neighbour-self" : ""}`);
    item.dataset.index = String(e.index);
    const c = make("canvas", "cnnviz-neighbour-thumb");
    const target = e.self ? SELF_THUMB_PX : NEIGHBOUR_THUMB_PX;
    // a thumbnail still decoding keeps its space
    const space = th > 0 && tw > 0 ? { sw: tw, sh: th } : { sw: target, sh: target };
    const t = thumbs.get(e.index);
    drawScaledImage(c, t?.bitmap ?? null, target, t ?? space);
    const text = make("span", "cnnviz-neighbour-label");
    text.textContent = e.self ? `#${e.index}` : Number.isFinite(e.dist) ? formatSig(e.dist) : "";
    const label = e.index < classes.length ? classes[e.index] : -1;
    const labelName = label >= 0 ? (names[label] ?? `class ${label}`) : "";
    item.title = e.self
      ? `selected image #${e.index}${labelName ? ` (${labelName})` : ""}`
      : `#${e.index}${labelName ? ` (${labelName})` : ""} · distance ${formatSig(e.dist)}`;
    item.append(c, text);
    return item;
  }

  const unlisten = onPick(el, ".cnnviz-neighbour", "index", pick);

  return {
    el,
    /** Rebuild the strip when its entries changed, or to fill in thumbnails decoded since. */
    update() {
      const sel = getInt(model, "selected_index", -1);
      const entries = stripEntries(sel, traits.neighbours(), traits.distances());
      const k = entries.map((e) => `${e.index}:${e.dist}`).join(",");
      const ready = entries.every((e) => thumbs.get(e.index) !== null || !thumbs.valid());
      if (k === key && el.dataset.complete === "true") return;
      key = k;
      el.dataset.complete = String(ready);
      const classes = scatter.data()?.labels ?? traits.labels();
      const names = traits.names();
      const shape = getPair(model, "thumb_shape");
      const items = entries.map((e) => item(e, classes, names, shape));
      el.replaceChildren(...items);
      el.style.display = items.length ? "" : "none";
    },
    /** Rebuild at the next update (the thumbnails changed). */
    reset() {
      key = "";
    },
    destroy: unlisten,
  };
}
