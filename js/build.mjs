// Bundles each widget entry to ../cnnviz_widgets/static/<name>.js (one ESM file per widget,
// loaded by anywidget through the Python class's `_esm`).
//
//   node build.mjs          one-shot, minified build
//   node build.mjs --watch  rebuild on change
//
// To add a widget, add one line to ENTRIES.
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

/** Output name (without .js) -> entry module, relative to this directory. */
const ENTRIES = {
  filter_grid: "src/filter_grid.js",
  feature_maps: "src/feature_maps.js",
  occlusion_map: "src/occlusion_map.js",
  top_patches: "src/top_patches.js",
  embedding_explorer: "src/embedding_explorer.js",
  cnn_explorer: "src/cnn_explorer.js",
};

const here = (/** @type {string} */ p) => fileURLToPath(new URL(p, import.meta.url));

/** @type {import("esbuild").BuildOptions} */
const options = {
  entryPoints: Object.fromEntries(Object.entries(ENTRIES).map(([name, src]) => [name, here(src)])),
  outdir: here("../cnnviz_widgets/static"),
  bundle: true,
  format: "esm",
  minify: !process.env.CNNVIZ_DEV, // CNNVIZ_DEV=1 npm run build: readable stack traces
  target: "es2020",
  platform: "browser",
  define: { "define.amd": "false" },
  legalComments: "none",
  logLevel: "info",
};

if (process.argv.includes("--watch")) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
