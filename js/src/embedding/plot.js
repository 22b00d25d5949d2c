// @ts-check
// The embedding map's plot: `div.cnnviz-plot` with the scatter's 2-D canvas
// (`canvas.cnnviz-scatter`) and the overlay canvas above it (`canvas.cnnviz-scatter-overlay`,
// drawn by thumbnails.js); regl-scatterplot started on them (a WebGL renderer on its own canvas
// that draws straight into the 2-D one; colours after the page's theme; performance mode for
// many points), its events, the plot's size (the widget's width × `view_px`) and the PNG of the
// map as shown.

import createScatterplot, { createRenderer } from "regl-scatterplot";
import { getInt } from "../lib/anywidget.js";
import { readArray } from "../lib/codecs.js";
import { make } from "../lib/dom.js";
import { SELECT_COLOR } from "../lib/style.js";

/** @typedef {ReturnType<typeof createScatterplot>} Scatterplot */
/** @typedef {ReturnType<typeof createRenderer>} Renderer */

/** From this many points on, the plot is created in performance mode. */
const MANY_POINTS = 50_000;
/** Default height of the plot (CSS px) when `view_px` is missing. */
const VIEW_PX = 480;
/** Width used before the plot has been laid out. */
const FALLBACK_WIDTH = 640;

/**
 * Make regl-scatterplot draw its frames straight into the renderer's WebGL canvas.
 *
 * regl-scatterplot 1.x draws every frame into a float32 framebuffer, resolves that with a
 * full-canvas gamma pass into its WebGL canvas and copies the result into the plot's 2-D
 * canvas. With its default gamma of 1 and a context without multisampling, the middle pass
 * changes no pixel (measured: identical in performance mode, at most 2/255 apart with alpha
 * blending), but with software WebGL (SwiftShader) it takes 12-20 ms a frame at 900×480 px,
 * most of a frame. This keeps the library's drawing and its copy to the 2-D canvas (same
 * arguments as its own `copyTo`) and leaves that pass out.
 * @param {Renderer} renderer
 */
function drawDirect(renderer) {
  if (renderer.gamma !== 1) return;
  const { regl, canvas: source } = renderer;
  renderer.render = (draw, target) => {
    regl.clear({ color: [0, 0, 0, 0], depth: 1 });
    draw();
    const ctx = target.getContext("2d");
    if (!ctx) return;
    const { width, height } = target;
    ctx.clearRect(0, 0, width, height);
    const sx = (source.width - width) / 2;
    const sy = (source.height - height) / 2;
    ctx.drawImage(source, sx, sy, width, height, 0, 0, width, height);
  };
}

/**
 * Whether the page's text colour is light (a dark theme).
 * @param {HTMLElement} el
 */
function isDarkTheme(el) {
  const m = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(getComputedStyle(el).color);
  if (!m) return false;
  const [r, g, b] = [Number(m[1]), Number(m[2]), Number(m[3])];
  return 0.299 * r + 0.587 * g + 0.114 * b > 140;
}

/**
 * The renderer and the scatterplot drawing into `canvas`, or why there are none.
 * @param {object} o
 * @param {HTMLElement} o.plot the element holding `canvas` (the lasso's elements go there)
 * @param {HTMLCanvasElement} o.canvas the 2-D canvas the frames are copied into
 * @param {number} o.width CSS px
 * @param {number} o.height
 * @param {boolean} o.dark
 * @param {boolean} o.performanceMode square points without blending (for many points)
 */
function startScatterplot({ plot, canvas, width, height, dark, performanceMode }) {
  const glCanvas = document.createElement("canvas");
  // No multisampling: the library's own frames never had it (they were drawn into a
  // framebuffer without it).
  const gl = glCanvas.getContext("webgl", { antialias: false, preserveDrawingBuffer: true });
  if (!gl) {
    const error = "WebGL is not available in this browser: the map cannot be drawn.";
    return { gl, renderer: null, sp: null, error };
  }
  /** @type {Renderer | null} */
  let renderer = null;
  try {
    renderer = createRenderer({ canvas: glCanvas });
    drawDirect(renderer);
    renderer.resize(width, height);
    renderer.refresh();
    const sp = createScatterplot({
      renderer,
      canvas,
      width,
      height,
      backgroundColor: dark ? "#111111" : "#ffffff",
      pointColorHover: dark ? "#ffffff" : "#000000",
      pointColorActive: dark ? "#ffffff" : "#222222",
      pointSize: 6,
      pointSizeSelected: 2,
      pointOutlineWidth: 2,
      opacity: 1,
      opacityInactiveScale: 0.35,
      colorBy: "valueA",
      lassoColor: SELECT_COLOR,
      lassoInitiatorParentElement: plot,
      lassoLongPressIndicatorParentElement: plot,
      deselectOnDblClick: true,
      deselectOnEscape: true,
      performanceMode,
    });
    return { gl, renderer, sp, error: "" };
  } catch (err) {
    const error = `could not start WebGL: ${String(/** @type {Error} */ (err)?.message ?? err)}`;
    return { gl, renderer, sp: null, error };
  }
}

/**
 * @param {object} o
 * @param {import("../lib/anywidget.js").AnyModel} o.model
 * @param {(text: string) => void} o.onError
 * @param {() => void} o.onResize after the plot changed size
 */
export function createPlot({ model, onError, onResize }) {
  const canvas = make("canvas", "cnnviz-scatter");
  const overlay = make("canvas", "cnnviz-scatter-overlay");
  const el = make("div", "cnnviz-plot", canvas, overlay);
  /** @type {ReturnType<typeof startScatterplot>} */
  let gl = { gl: null, renderer: null, sp: null, error: "" };
  /** @type {[string, (payload: any) => void][]} handlers to subscribe when the plot starts */
  const handlers = [];
  /** @type {(() => void)[]} */
  const offs = [];
  let dark = false;
  let cssW = 0;
  let cssH = 0;
  let destroyed = false;

  function sizeOverlay() {
    const dpr = window.devicePixelRatio || 1;
    overlay.width = Math.max(1, Math.floor(cssW * dpr));
    overlay.height = Math.max(1, Math.floor(cssH * dpr));
    overlay.style.width = `${cssW}px`;
    overlay.style.height = `${cssH}px`;
  }

  /**
   * Start regl-scatterplot (once `root` is in the page: its theme and width are read).
   * @param {HTMLElement} root
   */
  function start(root) {
    // Many points: square points without blending (regl-scatterplot's performance mode) keep
    // panning fluid; the mode can only be chosen when the plot is created, so it follows how
    // many points the map will have (`n_points`: the points may not be in yet).
    const manyPoints =
      Math.max(readArray(model.get("points")).shape[0] ?? 0, getInt(model, "n_points", 0)) >=
      MANY_POINTS;
    dark = isDarkTheme(root);
    cssW = Math.max(50, Math.floor(el.clientWidth) || FALLBACK_WIDTH);
    cssH = Math.max(50, getInt(model, "view_px", VIEW_PX));
    gl = startScatterplot({
      plot: el,
      canvas,
      width: cssW,
      height: cssH,
      dark,
      performanceMode: manyPoints,
    });
    if (gl.error) onError(gl.error);
    el.style.height = `${cssH}px`;
    sizeOverlay();
    canvas.dataset.performanceMode = String(manyPoints && gl.sp !== null);
    const sp = gl.sp;
    if (!sp) return;
    for (const [event, handler] of handlers) {
      const sub = sp.subscribe(/** @type {any} */ (event), handler);
      offs.push(() => sp.unsubscribe(/** @type {any} */ (sub)));
    }
  }

  function resize() {
    if (destroyed) return;
    const w = Math.max(50, Math.floor(el.clientWidth) || cssW || FALLBACK_WIDTH);
    const h = Math.max(50, getInt(model, "view_px", VIEW_PX));
    const dprNow = window.devicePixelRatio || 1;
    if (w === cssW && h === cssH && overlay.width === Math.floor(w * dprNow)) return;
    cssW = w;
    cssH = h;
    el.style.height = `${h}px`;
    sizeOverlay();
    if (gl.renderer && gl.sp) {
      gl.renderer.resize(w, h);
      gl.renderer.refresh();
      gl.sp.set({ width: w, height: h });
    }
    onResize();
  }

  return {
    el,
    canvas,
    overlay,
    start,
    resize,
    /** Resize even when the size looks unchanged (the pixel ratio changed). */
    forceResize() {
      cssW = 0;
      resize();
    },
    /** The scatterplot (null before `start` or without WebGL). */
    get sp() {
      return gl.sp;
    },
    /** Whether the page has a dark theme (read at `start`). */
    get dark() {
      return dark;
    },
    /** @returns {[number, number]} CSS px */
    size: () => [cssW, cssH],
    /**
     * Subscribe to a regl-scatterplot event when the plot starts (in the order given).
     * @param {string} event
     * @param {(payload: any) => void} handler
     */
    on(event, handler) {
      handlers.push([event, handler]);
    },
    /**
     * The map as shown: the scatter's last frame (the 2-D canvas keeps it) and the overlay on
     * the plot's background, in a new canvas (for the PNG button); `drawMore` draws on top in
     * CSS px.
     * @param {(ctx: CanvasRenderingContext2D, dark: boolean) => void} drawMore
     */
    snapshot(drawMore) {
      const out = document.createElement("canvas");
      out.width = canvas.width || overlay.width;
      out.height = canvas.height || overlay.height;
      const ctx = out.getContext("2d");
      if (!ctx) return out;
      ctx.fillStyle = dark ? "#111111" : "#ffffff";
      ctx.fillRect(0, 0, out.width, out.height);
      if (canvas.width && canvas.height) ctx.drawImage(canvas, 0, 0);
      ctx.drawImage(overlay, 0, 0, out.width, out.height);
      ctx.scale(out.width / Math.max(1, cssW), out.width / Math.max(1, cssW));
      drawMore(ctx, dark);
      return out;
    },
    destroy() {
      destroyed = true;
      for (const off of offs) off();
      gl.sp?.destroy();
      gl.renderer?.destroy();
      // free the WebGL context now rather than at garbage collection (browsers cap live contexts)
      gl.gl?.getExtension("WEBGL_lose_context")?.loseContext();
    },
  };
}

/** @typedef {ReturnType<typeof createPlot>} Plot */
