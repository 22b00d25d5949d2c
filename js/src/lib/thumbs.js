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
 * A thumbnail: its rectangle in the decoded page `bitmap`.
 * @typedef {{ bitmap: ImageBitmap, sx: number, sy: number, sw: number, sh: number }} ThumbRect
 */

/**
 * Source rectangle of thumbnail i in its page, or null when the geometry does not contain it.
 * @param {ThumbLayout} lay
 * @param {number} i
 */
function thumbRect(lay, i) {
  const { h, w, cols, perPage } = lay;
  if (!(h > 0 && w > 0 && cols > 0 && perPage > 0) || !Number.isInteger(i) || i < 0) return null;
  const page = Math.floor(i / perPage);
  if (page >= lay.pages.length) return null;
  const s = i % perPage;
  return { page, sx: (s % cols) * w, sy: Math.floor(s / cols) * h, sw: w, sh: h };
}

/**
 * The thumbnails of the atlas pages given to `update`: `get(i)` is image i's thumbnail when its
 * page is decoded, and otherwise starts decoding it and is null; `onLoad` is called when a page
 * finished decoding (or failed to). `valid()`: whether the geometry describes any thumbnail.
 * @param {() => void} onLoad
 */
export function createThumbAtlas(onLoad) {
  /** @type {ThumbLayout} */
  let lay = { pages: [], h: 0, w: 0, cols: 0, perPage: 0 };
  /** @type {unknown[]} raw Bytes object each entry was decoded from */
  const raws = [];
  /** @type {(Promise<ImageBitmap | null> | null)[]} */
  const jobs = [];
  /** @type {(ImageBitmap | null | undefined)[]} undefined: not decoded (yet) */
  const bitmaps = [];
  let disposed = false;

  /** @param {number} p */
  function decode(p) {
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
      () => {
        if (!disposed && jobs[p] === mine) bitmaps[p] = null;
        onLoad();
        return null;
      },
    );
    jobs[p] = mine;
  }

  return {
    /** Set the atlas pages and geometry (a page decoded from the same Bytes object is kept). */
    update(/** @type {ThumbLayout} */ next) {
      const pages = Array.isArray(next.pages) ? next.pages : [];
      for (let p = 0; p < Math.max(pages.length, raws.length); p++) {
        if (p < pages.length && raws[p] === pages[p]) continue;
        bitmaps[p]?.close();
        raws[p] = pages[p];
        jobs[p] = null;
        bitmaps[p] = undefined;
      }
      for (const a of [raws, jobs, bitmaps]) a.length = pages.length;
      lay = { ...next, pages };
    },
    /** @param {number} i @returns {ThumbRect | null} */
    get(i) {
      const r = thumbRect(lay, i);
      if (!r) return null;
      const bitmap = bitmaps[r.page];
      if (bitmap === undefined) {
        if (!jobs[r.page]) decode(r.page);
        return null;
      }
      return bitmap ? { bitmap, sx: r.sx, sy: r.sy, sw: r.sw, sh: r.sh } : null;
    },
    valid: () => lay.h > 0 && lay.w > 0 && lay.cols > 0 && lay.perPage > 0 && lay.pages.length > 0,
    /** Close every decoded page. */
    dispose() {
      disposed = true;
      for (const b of bitmaps) b?.close();
      for (const a of [raws, jobs, bitmaps]) a.length = 0;
    },
  };
}

/** @typedef {ReturnType<typeof createThumbAtlas>} ThumbAtlas */
