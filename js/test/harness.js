// @ts-check
// Browser harness: renders the built widget bundles against a fake anywidget model.
// Served from the repository root (see check_harness.py); bundles are loaded from
// ../../cnnviz_widgets/static/ unless `?static=<url-prefix>` says otherwise.
// Exposes `window.harness` for the checks.

/** @typedef {import("../src/lib/anywidget.js").AnyModel} AnyModel */

/**
 * In-memory stand-in for an anywidget model. Like Backbone, `set` fires `change:<name>`
 * synchronously when the value changes (also for sets made by the widget itself).
 * @implements {AnyModel}
 */
class FakeModel {
  /** @param {Record<string, unknown>} state */
  constructor(state) {
    /** @type {Record<string, unknown>} */
    this.state = { ...state };
    /** @type {Map<string, Set<() => void>>} */
    this.listeners = new Map();
    this.saves = 0;
    /** @type {string[]} names set by the widget since the last save */
    this.dirty = [];
  }
  /** @param {string} name */
  get(name) {
    return this.state[name];
  }
  /** @param {string} name @param {unknown} value */
  set(name, value) {
    this.dirty.push(name);
    this.kernelSet(name, value);
  }
  /** Simulate a change coming from Python. @param {string} name @param {unknown} value */
  kernelSet(name, value) {
    const old = this.state[name];
    this.state[name] = value;
    if (old !== value) {
      for (const cb of [...(this.listeners.get(`change:${name}`) ?? [])]) cb();
    }
  }
  save_changes() {
    this.saves += 1;
    this.dirty = [];
  }
  /** @param {string} event @param {() => void} cb */
  on(event, cb) {
    let set = this.listeners.get(event);
    if (!set) {
      set = new Set();
      this.listeners.set(event, set);
    }
    set.add(cb);
  }
  /** @param {string | null} [event] @param {(() => void) | null} [cb] */
  off(event, cb) {
    if (!event) {
      this.listeners.clear();
    } else if (!cb) {
      this.listeners.delete(event);
    } else {
      this.listeners.get(event)?.delete(cb);
    }
  }
  listenerCount() {
    let n = 0;
    for (const set of this.listeners.values()) n += set.size;
    return n;
  }
}

/**
 * Colour of tile t in the synthetic atlases (distinct per tile, opaque).
 * @param {number} t
 * @param {number} salt
 * @returns {[number, number, number]}
 */
function tileColor(t, salt = 0) {
  return [(40 + 37 * t + salt) % 256, (200 + 101 * t) % 256, (90 + 53 * t + 2 * salt) % 256];
}

/**
 * PNG atlas: `n` solid tiles of tileH x tileW packed row-major in rows x cols (no gaps).
 * @param {{ n: number, tileH: number, tileW: number, rows: number, cols: number, salt?: number, gray?: boolean }} o
 * @returns {Promise<Uint8Array>}
 */
async function makeAtlas({ n, tileH, tileW, rows, cols, salt = 0, gray = false }) {
  const canvas = new OffscreenCanvas(cols * tileW, rows * tileH);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
  for (let t = 0; t < n; t++) {
    const [r, g, b] = tileColor(t, salt);
    const v = gray ? (20 + 29 * t) % 256 : 0;
    ctx.fillStyle = gray ? `rgb(${v},${v},${v})` : `rgb(${r},${g},${b})`;
    ctx.fillRect((t % cols) * tileW, Math.floor(t / cols) * tileH, tileW, tileH);
  }
  return toPng(canvas);
}

/** @param {OffscreenCanvas} canvas */
async function toPng(canvas) {
  const blob = await canvas.convertToBlob({ type: "image/png" });
  return new Uint8Array(await blob.arrayBuffer());
}

/** 16x16 RGB gradient standing in for the model input. */
async function makeInput() {
  const canvas = new OffscreenCanvas(16, 16);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
  for (let y = 0; y < 16; y++) {
    for (let x = 0; x < 16; x++) {
      ctx.fillStyle = `rgb(${x * 16},${y * 16},128)`;
      ctx.fillRect(x, y, 1, 1);
    }
  }
  return toPng(canvas);
}

/**
 * Bytes as anywidget delivers them: a DataView, here deliberately at an odd byteOffset.
 * @param {Uint8Array} bytes
 */
function asDataView(bytes) {
  const buf = new ArrayBuffer(bytes.byteLength + 3);
  new Uint8Array(buf, 1, bytes.byteLength).set(bytes);
  return new DataView(buf, 1, bytes.byteLength);
}

/** @param {number[]} values little-endian float32 bytes */
function float32Bytes(values) {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => {
    view.setFloat32(i * 4, v, true);
  });
  return bytes;
}

/** @param {number[]} values little-endian int32 bytes */
function int32Bytes(values) {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  values.forEach((v, i) => {
    view.setInt32(i * 4, v, true);
  });
  return bytes;
}

/**
 * An `Array` trait's value as Python sends it (the array codec, cnnviz_widgets/widgets/_array.py):
 * dtype, shape and the bytes, a DataView at an odd byteOffset (see asDataView).
 * @param {string} dtype
 * @param {Uint8Array} bytes
 * @param {number[]} shape
 */
function codec(dtype, bytes, shape) {
  return { dtype, shape, buffer: asDataView(bytes) };
}

/** @param {number[]} values @param {number[]} [shape] */
function f32(values, shape = [values.length]) {
  return codec("float32", float32Bytes(values), shape);
}

/** @param {number[]} values @param {number[]} [shape] */
function i32(values, shape = [values.length]) {
  return codec("int32", int32Bytes(values), shape);
}

/**
 * Colour of a CSS-pixel position of a canvas (reads the backing store, any devicePixelRatio).
 * @param {HTMLCanvasElement} canvas
 * @param {number} x CSS px from the canvas' left edge
 * @param {number} y CSS px from the canvas' top edge
 * @returns {number[]} [r, g, b, a]
 */
function pixelAt(canvas, x, y) {
  const ratio = canvas.width / canvas.clientWidth;
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  return Array.from(ctx.getImageData(Math.floor(x * ratio), Math.floor(y * ratio), 1, 1).data);
}

/**
 * Number of distinct opaque colours on a canvas (a blank canvas has 0).
 * @param {HTMLCanvasElement} canvas
 */
function distinctColors(canvas) {
  const ctx = /** @type {CanvasRenderingContext2D} */ (canvas.getContext("2d"));
  const data = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
  const seen = new Set();
  for (let i = 0; i < data.length; i += 4) {
    if (data[i + 3] === 255) seen.add((data[i] << 16) | (data[i + 1] << 8) | data[i + 2]);
  }
  return seen.size;
}

/**
 * OcclusionMap fixture image colour at pixel (y, x) of its 32x32 image.
 * @param {number} y
 * @param {number} x
 * @returns {[number, number, number]}
 */
function occImageColor(y, x) {
  return [8 * x, 255 - 8 * y, 60];
}

/** 32x32 RGB image for the OcclusionMap (see occImageColor). */
async function makeOccImage() {
  const canvas = new OffscreenCanvas(32, 32);
  const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
  for (let y = 0; y < 32; y++) {
    for (let x = 0; x < 32; x++) {
      const [r, g, b] = occImageColor(y, x);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(x, y, 1, 1);
    }
  }
  return toPng(canvas);
}

/** OcclusionMap fixture LUT (256, 3): entry i is (i, 3i mod 256, 255 - i). */
function occLut() {
  const lut = new Uint8Array(768);
  for (let i = 0; i < 256; i++) lut.set([i, (3 * i) % 256, 255 - i], 3 * i);
  return codec("uint8", lut, [256, 3]);
}

/**
 * OcclusionMap fixture scores: cell (i, j) of an ny x nx map is (i * nx + j) / (ny * nx - 1),
 * so the map spans 0..1.
 * @param {number} ny
 * @param {number} nx
 */
function occScores(ny, nx) {
  const n = ny * nx;
  return f32(
    Array.from({ length: n }, (_, c) => c / Math.max(1, n - 1)),
    [ny, nx],
  );
}

/**
 * Push one finished map into the OcclusionMap model the way Python does (all traits in one tick).
 * @param {FakeModel} m
 * @param {{ ny: number, nx: number, patch: number, stride: number, mapsDone: number }} o
 */
function occPushMap(m, { ny, nx, patch, stride, mapsDone }) {
  m.kernelSet("scores", occScores(ny, nx));
  m.kernelSet("map_patch", [patch, patch]);
  m.kernelSet("map_stride", [stride, stride]);
  m.kernelSet("base_score", 0.93);
  m.kernelSet("vmin", 0);
  m.kernelSet("vmax", 1);
  m.kernelSet("caption", "probability of 'cat' with the patch at each place");
  m.kernelSet("status", `stride ${stride} · ${ny * nx} positions · 0.01 s`);
  m.kernelSet("progress", mapsDone / 3);
  m.kernelSet("maps_done", mapsDone);
}

const OCC_CLASSES = [
  "plane",
  "car",
  "bird",
  "cat",
  "deer",
  "dog",
  "frog",
  "horse",
  "ship",
  "truck",
  "crane",
  "crane",
];

/** TopPatches fixture: page 2 of 3, four channels x k = 3 patches of 10x10 (tile t: row t / 3). */
const TP_K = 3;
const TP_CHANNELS = [7, 2, 11, 5];
const TP_VALUES = [3.5, 2.25, 1.126, 9.87654, 4, 0.5, 1.5, 1.25, 1, 0.75, 0.5, 0.25];
const TP_INDICES = [42, 13, 7, 42, 8, 99, 5, 13, 42, 1, 2, -1];
const TP_LABELS = [3, 1, -1, 3, 0, 4, 2, 1, 3, 0, 4, -1];
const TP_NAMES = ["plane", "car", "bird", "cat", "deer"];
const TP_LAYERS = [
  { name: "layer2", label: "layer2 · 128×28×28 · stride 8 · RF 99×99" },
  { name: "layer3", label: "layer3 · 256×14×14 · stride 16 · RF 211×211" },
  { name: "layer4", label: "layer4 · 512×7×7 · stride 32 · RF 435×435" },
];

/**
 * The page traits of TopPatches as Python sends them (tile t: value 10 - t, image 100 + t when
 * no arrays are given).
 * @param {{ channels: number[], k?: number, salt?: number, values?: number[], indices?: number[], labels?: number[] }} o
 */
async function tpPageTraits({ channels, k = TP_K, salt = 0, values, indices, labels }) {
  const n = channels.length * k;
  const seq = (/** @type {(t: number) => number} */ f) => Array.from({ length: n }, (_, t) => f(t));
  return {
    atlas_png: asDataView(
      await makeAtlas({ n, tileH: 10, tileW: 10, rows: channels.length, cols: k, salt }),
    ),
    tile_shape: [10, 10],
    grid_shape: [channels.length, k],
    n_tiles: n,
    channels: i32(channels),
    values: f32(values ?? seq((t) => 10 - t), [channels.length, k]),
    indices: i32(indices ?? seq((t) => 100 + t), [channels.length, k]),
    labels: i32(labels ?? seq((t) => t % 5), [channels.length, k]),
  };
}

/**
 * Push a page into the TopPatches model the way Python does (all traits in one tick).
 * @param {FakeModel} m
 * @param {Record<string, unknown>} traits
 */
function tpPush(m, traits) {
  for (const [k, v] of Object.entries(traits)) m.kernelSet(k, v);
}

/** EmbeddingExplorer fixture: 500 points in 5 clusters of one class each. */
const EE_N = 500;
const EE_NAMES = ["plane", "car", "bird", "cat", "deer"];
const EE_COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
/** Thumbnails: 12x12, 16 per atlas row, 256 per page (two pages). */
const EE_THUMB = 12;
const EE_THUMB_COLS = 16;
const EE_PER_PAGE = 256;

/**
 * Solid colour of thumbnail i (opaque, never white).
 * @param {number} i
 * @returns {[number, number, number]}
 */
function eeThumbColor(i) {
  return [(17 * i) % 200, (60 + 7 * i) % 240, 220 - (i % 97)];
}

/** Deterministic pseudo-random numbers in [0, 1). */
function lcg(seed = 1) {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 4294967296;
  };
}

/**
 * The fixture's data: point i has class i % 5, lies in that class's cluster (centres on a circle
 * of radius 0.55, spread +-0.15), and every 17th point is predicted as the next class.
 */
function eeData() {
  const rand = lcg(42);
  const xy = [];
  const grid = [];
  const labels = [];
  const preds = [];
  const conf = [];
  const side = Math.ceil(Math.sqrt(EE_N));
  for (let i = 0; i < EE_N; i++) {
    const c = i % 5;
    const a = (2 * Math.PI * c) / 5;
    xy.push(0.55 * Math.cos(a) + 0.3 * (rand() - 0.5), 0.55 * Math.sin(a) + 0.3 * (rand() - 0.5));
    grid.push(
      -0.9 + (1.8 * (i % side)) / (side - 1),
      0.9 - (1.8 * Math.floor(i / side)) / (side - 1),
    );
    labels.push(c);
    preds.push(i % 17 === 0 ? (c + 1) % 5 : c);
    conf.push(0.5 + (i % 50) / 100);
  }
  return { xy, grid, labels, preds, conf };
}

/** The thumbnail atlas pages (PNG bytes). */
async function eeThumbPages() {
  const pages = [];
  for (let p = 0; p * EE_PER_PAGE < EE_N; p++) {
    const rows = EE_PER_PAGE / EE_THUMB_COLS;
    const canvas = new OffscreenCanvas(EE_THUMB_COLS * EE_THUMB, rows * EE_THUMB);
    const ctx = /** @type {OffscreenCanvasRenderingContext2D} */ (canvas.getContext("2d"));
    for (let s = 0; s < EE_PER_PAGE && p * EE_PER_PAGE + s < EE_N; s++) {
      const [r, g, b] = eeThumbColor(p * EE_PER_PAGE + s);
      ctx.fillStyle = `rgb(${r},${g},${b})`;
      ctx.fillRect(
        (s % EE_THUMB_COLS) * EE_THUMB,
        Math.floor(s / EE_THUMB_COLS) * EE_THUMB,
        EE_THUMB,
        EE_THUMB,
      );
    }
    pages.push(asDataView(await toPng(canvas)));
  }
  return pages;
}

const params = new URLSearchParams(location.search);
const STATIC = params.get("static") ?? "../../cnnviz_widgets/static/";

/** Fixture statistics for the FeatureMaps widget (10 channels). */
const CHANNEL_MEAN = [0.5, 0.1, 0.9, 0.3, 0.9, 0.0, 0.7, 0.2, 0.4, 0.6];
const CHANNEL_MAX = [1.23456, 2.5, 0.75, 3.14678, 0.1, 5.0, 1.0, 2.0, 0.456789, 4.0];

/**
 * The fixture model of each mounted widget.
 * @param {ReturnType<typeof eeData>} ee the embedding fixture
 * @returns {Promise<Record<string, FakeModel>>}
 */
async function fixtureModels(ee) {
  return {
    fm: new FakeModel({
      atlas_png: asDataView(await makeAtlas({ n: 10, tileH: 6, tileW: 8, rows: 3, cols: 4 })),
      tile_shape: [6, 8],
      grid_shape: [3, 4],
      n_tiles: 10,
      channel_max: f32(CHANNEL_MAX),
      channel_mean: f32(CHANNEL_MEAN),
      sort_by: "index",
      selected_channel: -1,
      layer: "conv2",
      caption: "conv2 · 10 channels · 6×8 · image 5",
      input_png: asDataView(await makeInput()),
      tile_px: 32,
    }),
    fgRgb: new FakeModel({
      atlas_png: (await makeAtlas({ n: 8, tileH: 5, tileW: 5, rows: 2, cols: 4 })).buffer,
      tile_shape: [5, 5],
      grid_shape: [2, 4],
      n_tiles: 8,
      mode: "filters",
      n_filters: 8,
      n_channels_shown: 3,
      layer: "conv1",
      caption: "conv1 · 8 filters 3×5×5 · per-filter normalisation",
      tile_px: 40,
      selected_filter: -1,
    }),
    fgChannels: new FakeModel({
      atlas_png: await makeAtlas({ n: 12, tileH: 3, tileW: 3, rows: 4, cols: 3, gray: true }),
      tile_shape: [3, 3],
      grid_shape: [4, 3],
      n_tiles: 12,
      mode: "channels",
      n_filters: 4,
      n_channels_shown: 3,
      layer: "conv2",
      caption: "conv2 · 4 filters 3×3×3 · per-filter normalisation",
      tile_px: 24,
      selected_filter: 1,
    }),
    fgBig: new FakeModel({
      atlas_png: asDataView(
        await makeAtlas({ n: 512, tileH: 3, tileW: 3, rows: 32, cols: 16, gray: true }),
      ),
      tile_shape: [3, 3],
      grid_shape: [32, 16],
      n_tiles: 512,
      mode: "channels",
      n_filters: 32,
      n_channels_shown: 16,
      layer: "conv3",
      caption: "conv3 · 32 filters · 16 of 64 input channels",
      tile_px: 24,
      selected_filter: -1,
    }),
    occ: new FakeModel({
      image_png: asDataView(await makeOccImage()),
      image_shape: [32, 32],
      scores: f32([], [0, 0]),
      map_patch: [0, 0],
      map_stride: [0, 0],
      vmin: 0,
      vmax: 1,
      colormap: "viridis",
      colormap_lut: occLut(),
      opacity: 0.6,
      view_px: 256,
      base_score: 0,
      caption: "",
      target: 3,
      top_classes: [
        { index: 3, name: "cat", score: 0.93 },
        { index: 5, name: "dog", score: 0.04 },
        { index: 2, name: "bird", score: 0.012 },
        { index: 0, name: "plane", score: 0.005 },
        { index: 8, name: "ship", score: 0.0021 },
      ],
      class_names: OCC_CLASSES,
      patch_size: 8,
      stride: 4,
      baseline: 0,
      output: "prob",
      progress: 0,
      running: true,
      status: "starting…",
      maps_done: 0,
    }),
    tp: new FakeModel({
      ...(await tpPageTraits({
        channels: TP_CHANNELS,
        values: TP_VALUES,
        indices: TP_INDICES,
        labels: TP_LABELS,
      })),
      tile_px: 30,
      caption: "layer3 · top 3 of 2000 images per channel",
      class_names: TP_NAMES,
      k: TP_K,
      page: 1,
      n_pages: 3,
      channels_per_page: 4,
      sort_by: "max",
      selected_channel: -1,
      selected_index: -1,
      layer: "layer3",
      layer_options: TP_LAYERS,
      progress: 1,
      running: false,
      status: "2000 images · 12.3 s",
    }),
    ee: new FakeModel({
      points: f32(ee.xy, [EE_N, 2]),
      grid_points: f32(ee.grid, [EE_N, 2]),
      arrangement: "scatter",
      labels: i32(ee.labels),
      predictions: i32(ee.preds),
      confidences: f32(ee.conf),
      class_names: EE_NAMES,
      class_colors: EE_COLORS,
      hidden_classes: [],
      highlight_misclassified: false,
      thumb_pages: await eeThumbPages(),
      thumb_shape: [EE_THUMB, EE_THUMB],
      thumb_cols: EE_THUMB_COLS,
      thumbs_per_page: EE_PER_PAGE,
      show_thumbnails: false,
      selected_index: -1,
      selected_indices: i32([]),
      neighbours: i32([]),
      neighbour_distances: f32([]),
      caption: "t-SNE of layer4 · 500 images",
      status: "t-SNE map",
      progress: 1,
      running: false,
      view_px: 360,
    }),
  };
}

async function main() {
  const [featureMaps, filterGrid, occlusionMap, topPatches, embeddingExplorer] = await Promise.all([
    import(`${STATIC}feature_maps.js`),
    import(`${STATIC}filter_grid.js`),
    import(`${STATIC}occlusion_map.js`),
    import(`${STATIC}top_patches.js`),
    import(`${STATIC}embedding_explorer.js`),
  ]);
  const ee = eeData();
  const models = await fixtureModels(ee);

  const mounts = {
    fm: { module: featureMaps, el: "feature-maps" },
    fgRgb: { module: filterGrid, el: "filter-grid-rgb" },
    fgChannels: { module: filterGrid, el: "filter-grid-channels" },
    fgBig: { module: filterGrid, el: "filter-grid-big" },
    occ: { module: occlusionMap, el: "occlusion-map" },
    tp: { module: topPatches, el: "top-patches" },
    ee: { module: embeddingExplorer, el: "embedding-explorer" },
  };

  /** @type {Record<string, () => void>} */
  const cleanups = {};
  /** @type {Record<string, number>} */
  const renderStart = {};
  for (const [name, { module, el }] of Object.entries(mounts)) {
    const target = /** @type {HTMLElement} */ (document.getElementById(el));
    renderStart[name] = performance.now();
    cleanups[name] = await module.default.render({ model: models[name], el: target });
  }

  /**
   * Render `name`'s widget into an element that joins a shadow root only after render returns
   * (as marimo and the explorer's panels do); the host is `#shadow-<name>`.
   * @param {keyof typeof mounts} name
   */
  async function renderInShadow(name) {
    const host = document.createElement("div");
    host.id = `shadow-${name}`;
    document.body.append(host);
    const shadow = host.attachShadow({ mode: "open" });
    const el = document.createElement("div");
    const cleanup = await mounts[name].module.default.render({ model: models[name], el });
    shadow.append(el);
    return cleanup;
  }

  /**
   * Render `name`'s widget once more into a new `#variant-<name>`, its model's state with
   * `overrides` (a fresh model: the mounted one is left as it is). Returns the cleanup.
   * @param {keyof typeof mounts} name
   * @param {Record<string, unknown>} overrides
   */
  async function renderVariant(name, overrides) {
    const el = document.createElement("div");
    el.id = `variant-${name}`;
    document.body.append(el);
    const model = new FakeModel({ ...models[name].state, ...overrides });
    const cleanup = await mounts[name].module.default.render({ model, el });
    return () => {
      cleanup?.();
      el.remove();
    };
  }

  return {
    models,
    cleanups,
    renderInShadow,
    renderVariant,
    renderStart,
    pixelAt,
    distinctColors,
    makeAtlas,
    asDataView,
    tileColor,
    CHANNEL_MAX,
    CHANNEL_MEAN,
    occImageColor,
    occPushMap,
    tpPageTraits,
    tpPush,
    ee,
    eeThumbColor,
    i32,
    f32,
  };
}

main().then(
  (h) => {
    /** @type {any} */ (window).harness = h;
  },
  (err) => console.error("harness setup failed:", err),
);
