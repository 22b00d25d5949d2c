// @ts-check
// The embedding map's hover tooltip (`.cnnviz-tooltip`, data-index): the hovered point's image
// and "#12 · label cat · predicted dog (0.98)", next to the point, following it as the map moves.

import { getPair } from "../lib/anywidget.js";
import { make, makeTooltip } from "../lib/dom.js";
import { drawScaledImage } from "../lib/image.js";

/** Target size of the hover thumbnail (CSS px; small images are enlarged by an integer factor). */
const TOOLTIP_THUMB_PX = 96;

/**
 * Tooltip text: "#12 · label cat · predicted dog (0.98)". Unknown parts are left out.
 * @param {number} i
 * @param {Int32Array} labels
 * @param {Int32Array} predictions
 * @param {Float32Array} confidences
 * @param {string[]} names
 */
function pointLabel(i, labels, predictions, confidences, names) {
  const name = (/** @type {number} */ c) => (c < names.length ? names[c] : `class ${c}`);
  let s = `#${i}`;
  const label = i < labels.length ? labels[i] : -1;
  if (label >= 0) s += ` · label ${name(label)}`;
  const pred = i < predictions.length ? predictions[i] : -1;
  if (pred >= 0) {
    s += ` · predicted ${name(pred)}`;
    if (i < confidences.length && Number.isFinite(confidences[i])) {
      s += ` (${confidences[i].toFixed(2)})`;
    }
  }
  return s;
}

/** @param {import("./scatter.js").View} view */
export function createTooltip({ model, traits, plot, scatter, thumbs }) {
  const el = makeTooltip();
  const thumb = make("canvas", "cnnviz-tooltip-thumb");
  const text = make("div", "cnnviz-tooltip-text");
  el.append(thumb, text);
  let hovered = -1;

  /** @param {number} i */
  function show(i) {
    const data = scatter.data();
    if (!data || !scatter.isShown(i)) {
      hide();
      return;
    }
    hovered = i;
    const { labels, predictions } = data;
    text.textContent = pointLabel(i, labels, predictions, traits.confidences(), traits.names());
    const [th, tw] = getPair(model, "thumb_shape");
    const t = thumbs.get(i);
    // a page still decoding keeps the space (the atlas' onLoad redraws the tooltip)
    const space = thumbs.valid() && th > 0 && tw > 0;
    if (t || space)
      drawScaledImage(thumb, t?.bitmap ?? null, TOOLTIP_THUMB_PX, t ?? { sw: tw, sh: th });
    thumb.style.display = t || space ? "" : "none";
    el.dataset.index = String(i);
    el.style.display = "";
    place();
  }

  function place() {
    if (hovered < 0) return;
    const pos = scatter.screenPos(hovered);
    if (!pos) return;
    const [cssW, cssH] = plot.size();
    const w = el.offsetWidth;
    const h = el.offsetHeight;
    let left = pos[0] + 12;
    let top = pos[1] + 12;
    if (left + w > cssW) left = Math.max(0, pos[0] - w - 12);
    if (top + h > cssH) top = Math.max(0, pos[1] - h - 12);
    el.style.left = `${left}px`;
    el.style.top = `${top}px`;
  }

  function hide() {
    hovered = -1;
    el.style.display = "none";
    delete el.dataset.index;
  }

  plot.on("pointOver", (/** @type {number} */ i) => show(i));
  plot.on("pointOut", () => hide());
  plot.on("drawing", () => {
    if (hovered >= 0) place();
  });
  return {
    el,
    /** The hovered point (-1 none). */
    hovered: () => hovered,
    hide,
    /** Redraw the tooltip of the hovered point (its text or thumbnail changed, or it was hidden). */
    refresh() {
      if (hovered >= 0) show(hovered);
    },
  };
}
