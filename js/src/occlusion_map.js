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
//
// Parts, in occlusion/: heatmap.js (image, cells and colour bar), hover.js (cell under the
// pointer: tooltip, outline), target.js (target class), controls.js (patch, stride, baseline,
// opacity).

import { getInt, initialize, onChanges } from "./lib/anywidget.js";
import { createProgress, make } from "./lib/dom.js";
import { watchPixelRatio } from "./lib/dpr.js";
import { fileName, saveButton } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle, TOOLTIP_RULES } from "./lib/style.js";
import { createControls, createRefusals } from "./occlusion/controls.js";
import { createHeatmap } from "./occlusion/heatmap.js";
import { createHover } from "./occlusion/hover.js";
import { createTarget } from "./occlusion/target.js";

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
const DRAW_TRAITS = [
  "image_png",
  "image_shape",
  "scores",
  "map_patch",
  "map_stride",
  "map_origin",
  "vmin",
  "vmax",
  "colormap_lut",
  "opacity",
  "view_px",
  "maps_done",
];
const TARGET_TRAITS = ["target", "top_classes", "class_names"];
const CONTROL_TRAITS = ["patch_size", "stride", "baseline", "opacity", "image_shape"];

/** @param {import("./lib/anywidget.js").RenderProps} props */
function render({ model, el }) {
  const root = make("div", "cnnviz-occlusion");
  const heatmap = createHeatmap({ model, onDraw: () => hover.update() });
  const hover = createHover({ heatmap, root });
  const refusals = createRefusals();
  const target = createTarget({ model, refuse: refusals.refuse });
  const controls = createControls({ model, refuse: refusals.refuse });
  const save = saveButton(
    () => heatmap.canvas,
    () => {
      // named after the target class
      const names = model.get("class_names");
      const t = getInt(model, "target", 0);
      const name = Array.isArray(names) && t >= 0 && t < names.length ? names[t] : `class ${t}`;
      return fileName("occlusion", String(name));
    },
  );
  const toolbar = make("div", "cnnviz-toolbar", target.el, ...controls.fields, save);
  const progress = createProgress(model, root, "div");
  root.append(progress.caption, toolbar, heatmap.error, heatmap.el, progress.box);
  el.append(root);
  injectStyle(root, "cnnviz-style-occlusion", CSS);

  const unsubscribers = [
    onChanges(model, DRAW_TRAITS, heatmap.schedule),
    progress.off,
    onChanges(model, ["base_score"], heatmap.updateMark),
    onChanges(model, TARGET_TRAITS, target.update),
    onChanges(model, CONTROL_TRAITS, controls.update),
    watchPixelRatio(heatmap.schedule),
  ];
  target.update();
  controls.update();
  heatmap.schedule();

  return () => {
    for (const off of unsubscribers) off();
    for (const part of [heatmap, hover, target, controls, refusals]) part.destroy();
    root.remove();
  };
}

export default { initialize, render };
