// @ts-check
// CNNExplorer: one model, one dataset, every view linked. The views are the ordinary widgets'
// views (scatter, feature maps, occlusion, top patches, filters), each rendering its own child
// widget model, which the explorer's model references; the links between them run in the kernel.
// This file adds the frame: header with the layer picker and tabs, the selected image with its
// top-5 classes, the kernel of the selected channel, and arrow keys that walk the neighbours.

import embedding from "./embedding_explorer.js";
import featureMaps from "./feature_maps.js";
import filterGrid from "./filter_grid.js";
import {
  childModel,
  getInt,
  getPair,
  getStr,
  initialize,
  onChanges,
  setTrait,
} from "./lib/anywidget.js";
import { createBitmapSlot, formatSig, readArray } from "./lib/codecs.js";
import { button, make } from "./lib/dom.js";
import { drawScaledImage } from "./lib/image.js";
import { saveButton } from "./lib/save.js";
import { BG, BORDER, FG, FG2, FONT, injectStyle, SELECT_COLOR } from "./lib/style.js";
import { readTopClasses } from "./occlusion/target.js";
import occlusion from "./occlusion_map.js";
import topPatches from "./top_patches.js";

/** @typedef {import("./lib/anywidget.js").RenderProps} RenderProps */
/** @typedef {import("./lib/anywidget.js").AnyModel} AnyModel */

const CSS = `
.cnnviz-explorer { font: 13px/1.4 ${FONT}; color: ${FG}; display: flex; flex-direction: column; gap: 10px; max-width: 100%; outline: none; }
.cnnviz-explorer .cnnviz-x-header { display: flex; align-items: center; flex-wrap: wrap; gap: 6px 16px; border-bottom: 1px solid ${BORDER}; padding-bottom: 6px; }
.cnnviz-explorer .cnnviz-x-title { font-weight: 600; }
.cnnviz-explorer .cnnviz-x-tabs { display: inline-flex; gap: 2px; }
.cnnviz-explorer .cnnviz-x-tabs button { font: inherit; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 3px 3px 0 0; padding: 2px 10px; cursor: pointer; }
.cnnviz-explorer .cnnviz-x-tabs button[aria-selected="true"] { border-bottom-color: ${SELECT_COLOR}; border-bottom-width: 2px; font-weight: 600; }
.cnnviz-explorer .cnnviz-x-layer { font: inherit; color: ${FG}; background: ${BG}; border: 1px solid ${BORDER}; border-radius: 2px; max-width: 32em; }
.cnnviz-explorer .cnnviz-x-hint { color: ${FG2}; }
.cnnviz-explorer .cnnviz-x-row { display: flex; flex-wrap: wrap; align-items: flex-start; gap: 16px; }
.cnnviz-explorer .cnnviz-x-col { display: flex; flex-direction: column; gap: 10px; min-width: 0; }
.cnnviz-explorer .cnnviz-x-row > .cnnviz-x-col { flex: 1 1 340px; }
.cnnviz-explorer .cnnviz-x-row > .cnnviz-x-panel { flex: 0 1 auto; }
.cnnviz-explorer .cnnviz-x-row > .cnnviz-x-emb { flex: 1 1 440px; max-width: 640px; }
.cnnviz-explorer .cnnviz-x-card { display: flex; gap: 12px; align-items: flex-start; }
.cnnviz-explorer .cnnviz-x-image { border: 1px solid ${BORDER}; image-rendering: pixelated; }
.cnnviz-explorer .cnnviz-x-info { display: flex; flex-direction: column; gap: 4px; min-width: 14em; }
.cnnviz-explorer .cnnviz-x-bars { display: grid; grid-template-columns: auto 8em auto; gap: 2px 6px; align-items: center; }
.cnnviz-explorer .cnnviz-x-bar-name { cursor: pointer; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; max-width: 12em; }
.cnnviz-explorer .cnnviz-x-bar-name[data-target="true"] { font-weight: 600; color: ${SELECT_COLOR}; }
.cnnviz-explorer .cnnviz-x-bar { height: 10px; background: ${BORDER}; border-radius: 2px; overflow: hidden; cursor: pointer; }
.cnnviz-explorer .cnnviz-x-bar > div { height: 100%; background: #1f77b4; }
.cnnviz-explorer .cnnviz-x-kernel { display: flex; flex-direction: column; align-items: flex-start; gap: 4px; }
.cnnviz-explorer .cnnviz-x-kernel canvas { image-rendering: pixelated; border: 1px solid ${BORDER}; }
.cnnviz-explorer .cnnviz-x-panel { min-width: 0; max-width: 100%; }
`;

/** On-screen size (CSS px) of the selected image's longer side, and of the kernel grid. */
const IMAGE_PX = 128;
const KERNEL_PX = 320;

/** Steps of the arrow keys through a walk. */
const STEPS = { ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1 };

/**
 * The image to show after an arrow key: the walk is the image where it started followed by
 * that image's neighbours; Right/Down steps forward, Left/Up back (clamped).
 * @param {number[]} walk
 * @param {number} position
 * @param {string} key
 * @returns {number} the new position in `walk` (unchanged for other keys)
 */
function step(walk, position, key) {
  const delta = STEPS[/** @type {keyof typeof STEPS} */ (key)] ?? 0;
  return Math.max(0, Math.min(walk.length - 1, position + delta));
}

/** The explorer's children (`CNNExplorer`'s widget traits), by the prefix their element takes. */
const CHILDREN = /** @type {const} */ ({
  emb: ["embedding", embedding],
  fm: ["feature_maps", featureMaps],
  occ: ["occlusion", occlusion],
  tp: ["top_patches", topPatches],
  fg: ["filters", filterGrid],
});

/**
 * The child widget models the explorer references ("IPY_MODEL_<id>"), loaded by the widget
 * manager (lib/anywidget.js: `childModel`).
 * @param {AnyModel} model
 * @returns {Promise<Record<keyof typeof CHILDREN, AnyModel>>}
 */
async function childModels(model) {
  const entries = Object.entries(CHILDREN).map(async ([prefix, [trait]]) => [
    prefix,
    await childModel(model, trait),
  ]);
  return Object.fromEntries(await Promise.all(entries));
}

/**
 * Mount one child's view in a fresh element; returns its element and its cleanup.
 * @param {AnyModel} model the child's model
 * @param {string} prefix
 * @param {{render: (props: RenderProps) => unknown}} widget
 */
async function mount(model, prefix, widget) {
  const el = make("div", `cnnviz-x-panel cnnviz-x-${prefix}`);
  el.dataset.panel = prefix;
  const cleanup = await widget.render({ model, el });
  return { el, cleanup: typeof cleanup === "function" ? cleanup : () => {} };
}

/**
 * The header: title, tabs, the layer picker (the feature maps' layer, the top patches' options).
 * @param {AnyModel} model @param {Record<string, AnyModel>} kids
 */
function createHeader(model, kids) {
  const title = make("span", "cnnviz-x-title");
  const layer = make("select", "cnnviz-x-layer");
  layer.title = "Layer shown in the feature maps and top patches";
  const tabs = make("div", "cnnviz-x-tabs");
  tabs.setAttribute("role", "tablist");
  /** @type {Record<string, HTMLButtonElement>} */
  const buttons = {};
  for (const [name, text] of Object.entries({ explore: "Explore", filters: "Filters" })) {
    const b = button("cnnviz-x-tab", text);
    b.setAttribute("role", "tab");
    b.dataset.tab = name;
    b.addEventListener("click", () => setTrait(model, "tab", name));
    buttons[name] = b;
    tabs.append(b);
  }
  const hint = "click a point · ← → walk its neighbours · click a feature map";
  const layerLabel = make("label", "cnnviz-field", "layer ", layer);
  const el = make("div", "cnnviz-x-header", title, tabs, layerLabel);
  el.append(make("span", "cnnviz-x-hint", hint));
  layer.addEventListener("change", () => setTrait(kids.fm, "layer", layer.value));
  /** @type {unknown} */
  let optionsRaw;
  return {
    el,
    draw() {
      title.textContent = getStr(model, "title");
      const tab = getStr(model, "tab") || "explore";
      for (const [name, b] of Object.entries(buttons)) {
        b.setAttribute("aria-selected", String(name === tab));
      }
      const raw = kids.tp.get("layer_options");
      if (raw !== optionsRaw) {
        optionsRaw = raw;
        layer.replaceChildren();
        for (const o of Array.isArray(raw) ? raw : []) {
          layer.add(new Option(String(o.label ?? o.name), String(o.name)));
        }
      }
      const current = getStr(kids.fm, "layer");
      if (![...layer.options].some((o) => o.value === current))
        layer.add(new Option(current, current));
      layer.value = current;
    },
  };
}

/**
 * The selected image, what it is, and its top-5 classes (a click on one shows its occlusion map).
 * @param {AnyModel} model @param {Record<string, AnyModel>} kids
 */
function createCard(model, kids) {
  const image = make("canvas", "cnnviz-x-image");
  const text = make("div", "cnnviz-x-selected");
  const bars = make("div", "cnnviz-x-bars");
  const el = make("div", "cnnviz-x-card", image, make("div", "cnnviz-x-info", text, bars));
  const slot = createBitmapSlot();
  return {
    el,
    draw() {
      const sel = model.get("selected_info") ?? {};
      const conf = Number(sel.confidence);
      const index = Number.isFinite(Number(sel.index)) ? Number(sel.index) : -1;
      const parts = [`image ${index}`];
      if (sel.label_name) parts.push(`label ${sel.label_name}`);
      if (sel.predicted_name) {
        const pct = Number.isFinite(conf) ? ` (${formatSig(conf * 100, 3)}%)` : "";
        parts.push(`predicted ${sel.predicted_name}${pct}`);
      }
      text.textContent = parts.join(" · ");
      const target = getInt(kids.occ, "target", -1);
      bars.replaceChildren();
      for (const t of readTopClasses(kids.occ.get("top_classes"))) {
        const name = make("span", "cnnviz-x-bar-name", t.name); // text, never markup
        name.title = `show the occlusion map of ${t.name}`;
        name.dataset.target = String(t.index === target);
        const fill = make("div", "");
        fill.style.width = `${Math.max(0, Math.min(1, t.score)) * 100}%`;
        const bar = make("div", "cnnviz-x-bar", fill);
        const value = make("span", "cnnviz-x-hint", `${formatSig(t.score * 100, 3)}%`);
        for (const e of [name, bar])
          e.addEventListener("click", () => setTrait(kids.occ, "target", t.index));
        bars.append(name, bar, value);
      }
      slot.draw(kids.occ.get("image_png"), (bitmap) => drawScaledImage(image, bitmap, IMAGE_PX));
      return index;
    },
    dispose: () => slot.dispose(),
  };
}

/**
 * The kernel of the selected channel.
 * @param {AnyModel} model @param {Record<string, AnyModel>} kids
 */
function createKernel(model, kids) {
  const caption = make("div", "cnnviz-x-hint");
  const canvas = make("canvas", "");
  const save = saveButton(
    () => canvas,
    () => `kernel-${getStr(kids.fm, "layer")}-${getInt(kids.fm, "selected_channel", -1)}`,
  );
  const el = make("div", "cnnviz-x-kernel", caption, canvas, save);
  const slot = createBitmapSlot();
  return {
    el,
    draw() {
      caption.textContent = getStr(model, "kernel_caption");
      slot.draw(model.get("kernel_png"), (bitmap) => {
        const [rows, cols] = getPair(model, "kernel_grid");
        const px = bitmap ? Math.min(KERNEL_PX, Math.max(cols, rows) * 40) : 0;
        drawScaledImage(canvas, bitmap, px);
        save.style.display = bitmap ? "" : "none";
      });
    },
    dispose: () => slot.dispose(),
  };
}

/**
 * Arrow keys walk the neighbours of the image where the walk started (the map's selection).
 * @param {AnyModel} emb
 * @returns {(e: KeyboardEvent) => void}
 */
function neighbourWalk(emb) {
  /** @type {number[]} */
  let walk = [];
  let position = 0;
  return (e) => {
    if (!e.key.startsWith("Arrow")) return;
    const current = getInt(emb, "selected_index", -1);
    if (walk[position] !== current) {
      walk = [current, ...readArray(emb.get("neighbours")).data];
      position = 0;
    }
    const next = step(walk, position, e.key);
    e.preventDefault();
    if (next === position) return;
    position = next;
    setTrait(emb, "selected_index", walk[position]);
  };
}

/** @param {RenderProps} props */
async function render({ model, el }) {
  const kids = await childModels(model);
  const root = make("div", "cnnviz-explorer");
  root.tabIndex = 0;
  const header = createHeader(model, kids);
  const card = createCard(model, kids);
  const kernel = createKernel(model, kids);
  const panels = Object.fromEntries(
    await Promise.all(
      Object.entries(CHILDREN).map(async ([prefix, [, widget]]) => [
        prefix,
        await mount(kids[/** @type {keyof typeof CHILDREN} */ (prefix)], prefix, widget),
      ]),
    ),
  );
  const right1 = make("div", "cnnviz-x-col", card.el, panels.occ.el);
  const right2 = make("div", "cnnviz-x-col", panels.tp.el, kernel.el);
  const explore = make("div", "cnnviz-x-explore cnnviz-x-col");
  explore.append(make("div", "cnnviz-x-row", panels.emb.el, right1));
  explore.append(make("div", "cnnviz-x-row", panels.fm.el, right2));
  const filters = make("div", "cnnviz-x-filters", panels.fg.el);
  root.append(header.el, explore, filters);
  el.append(root);
  injectStyle(root, "cnnviz-style-explorer", CSS);

  let disposed = false;
  function drawFrame() {
    header.draw();
    const tab = getStr(model, "tab") || "explore";
    const wasHidden = explore.style.display === "none";
    explore.style.display = tab === "explore" ? "" : "none";
    filters.style.display = tab === "filters" ? "" : "none";
    if (wasHidden && tab === "explore") window.dispatchEvent(new Event("resize"));
    root.dataset.selectedIndex = String(card.draw());
    kernel.draw();
  }
  const onKey = neighbourWalk(kids.emb);
  root.addEventListener("keydown", onKey);

  // One message from the kernel changes several frame traits: draw once, after all of them.
  let queued = false;
  function scheduleFrame() {
    if (queued) return;
    queued = true;
    queueMicrotask(() => {
      queued = false;
      if (!disposed) drawFrame();
    });
  }
  const unsubscribe = [
    onChanges(model, FRAME_TRAITS, scheduleFrame),
    onChanges(kids.occ, ["top_classes", "image_png", "target"], scheduleFrame),
    onChanges(kids.fm, ["layer", "selected_channel"], scheduleFrame),
    onChanges(kids.tp, ["layer_options"], scheduleFrame),
  ];
  drawFrame();

  return () => {
    disposed = true;
    for (const off of unsubscribe) off();
    root.removeEventListener("keydown", onKey);
    for (const p of Object.values(panels)) p.cleanup();
    card.dispose();
    kernel.dispose();
    root.remove();
  };
}

/** The explorer's own traits the frame draws. */
const FRAME_TRAITS = [
  "selected_info",
  "title",
  "kernel_png",
  "kernel_grid",
  "kernel_caption",
  "tab",
];

export default { initialize, render };
