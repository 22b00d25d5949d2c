// @ts-check
// Thumbnails of dataset images, cut from paged sprite atlases.
//
// Atlas layout: `pages` is a list of image Bytes (PNG or JPEG); thumbnail i lies in page
// floor(i / perPage) at slot s = i % perPage, row-major with `cols` thumbnails per atlas row and
// no gaps: source rectangle x = (s % cols) * w, y = floor(s / cols) * h, w x h (one thumbnail is
// `thumb_shape` = [h, w] atlas pixels).
//
// Pages are decoded lazily (on the first request for a thumbnail in them) and once: a page is
// decoded again only when the Bytes object of that page changes.

import { decodePng } from "./codecs.js";

/**
 * @typedef {object} ThumbLayout
 * @property {readonly unknown[]} pages raw Bytes of each atlas page
 * @property {number} h thumbnail height (atlas px)
 * @property {number} w thumbnail width (atlas px)
 * @property {number} cols thumbnails per atlas row
 * @property {number} perPage thumbnails per page
 */

/**
 * @typedef {object} ThumbRect
 * @property {ImageBitmap} bitmap the decoded page
 * @property {number} sx
 * @property {number} sy
 * @property {number} sw
 * @property {number} sh
 */

/**
 * @typedef {object} ThumbAtlas
 * @property {(layout: ThumbLayout) => void} update set the atlas pages and geometry
 * @property {(i: number) => ThumbRect | null} get the thumbnail of image i when its page is
 *   decoded; otherwise starts decoding it and returns null (`onLoad` fires when it is ready)
 * @property {(i: number) => Promise<ThumbRect | null>} load the thumbnail of image i, decoding
 *   its page if needed (null: no such thumbnail, or the page failed to decode)
 * @property {() => boolean} valid whether the geometry describes any thumbnail
 * @property {() => string} error "" or why the last page decode failed
 * @property {() => void} dispose close every decoded page
 */

/**
 * Source rectangle of thumbnail i in its page, or null when the geometry does not contain it.
 * @param {ThumbLayout} lay
 * @param {number} i
 * @returns {{ page: number, sx: number, sy: number, sw: number, sh: number } | null}
 */
export function thumbRect(lay, i) {
  const { h, w, cols, perPage } = lay;
  if (!(h > 0 && w > 0 && cols > 0 && perPage > 0) || !Number.isInteger(i) || i < 0) return null;
  const page = Math.floor(i / perPage);
  if (page >= lay.pages.length) return null;
  const s = i % perPage;
  return { page, sx: (s % cols) * w, sy: Math.floor(s / cols) * h, sw: w, sh: h };
}

/**
 * @param {() => void} onLoad called (at most once per microtask burst) when a page finished
 *   decoding
 * @returns {ThumbAtlas}
 */
export function createThumbAtlas(onLoad) {
  /** @type {ThumbLayout} */
  let lay = { pages: [], h: 0, w: 0, cols: 0, perPage: 0 };
  /** raw Bytes object each cached entry was decoded from */
  /** @type {unknown[]} */
  let raws = [];
  /** @type {(Promise<ImageBitmap | null> | null)[]} */
  let jobs = [];
  /** @type {(ImageBitmap | null | undefined)[]} undefined: not decoded (yet) */
  let bitmaps = [];
  let lastError = "";
  let disposed = false;

  /** @param {number} p */
  function decode(p) {
    const job = jobs[p];
    if (job) return job;
    const raw = lay.pages[p];
    const mine = decodePng(raw).then(
      (bitmap) => {
        if (disposed || raws[p] !== raw || jobs[p] !== mine) {
          bitmap?.close();
          return null;
        }
        bitmaps[p] = bitmap;
        onLoad();
        return bitmap;
      },
      (err) => {
        lastError = `could not decode thumbnail page ${p}: ${String(err?.message ?? err)}`;
        if (!disposed && jobs[p] === mine) bitmaps[p] = null;
        onLoad();
        return null;
      },
    );
    jobs[p] = mine;
    return mine;
  }

  return {
    update(next) {
      const pages = Array.isArray(next.pages) ? next.pages : [];
      const n = pages.length;
      /** @type {unknown[]} */
      const newRaws = new Array(n);
      /** @type {(Promise<ImageBitmap | null> | null)[]} */
      const newJobs = new Array(n).fill(null);
      /** @type {(ImageBitmap | null | undefined)[]} */
      const newBitmaps = new Array(n).fill(undefined);
      for (let p = 0; p < Math.max(n, raws.length); p++) {
        if (p < n && raws[p] === pages[p]) {
          newRaws[p] = raws[p];
          newJobs[p] = jobs[p] ?? null;
          newBitmaps[p] = bitmaps[p];
        } else {
          bitmaps[p]?.close();
          if (p < n) newRaws[p] = pages[p];
        }
      }
      raws = newRaws;
      jobs = newJobs;
      bitmaps = newBitmaps;
      lay = { ...next, pages };
    },
    get(i) {
      const r = thumbRect(lay, i);
      if (!r) return null;
      const bitmap = bitmaps[r.page];
      if (bitmap === undefined) {
        decode(r.page);
        return null;
      }
      return bitmap ? { bitmap, sx: r.sx, sy: r.sy, sw: r.sw, sh: r.sh } : null;
    },
    async load(i) {
      const r = thumbRect(lay, i);
      if (!r) return null;
      const bitmap = bitmaps[r.page] ?? (await decode(r.page));
      return bitmap ? { bitmap, sx: r.sx, sy: r.sy, sw: r.sw, sh: r.sh } : null;
    },
    valid() {
      return lay.h > 0 && lay.w > 0 && lay.cols > 0 && lay.perPage > 0 && lay.pages.length > 0;
    },
    error() {
      return lastError;
    },
    dispose() {
      disposed = true;
      for (const b of bitmaps) b?.close();
      bitmaps = [];
      jobs = [];
      raws = [];
    },
  };
}
