// @ts-check
// Binary traits: the array codec (`readArray` / `writeArray`, cnnviz_widgets/widgets/_codec.py)
// and PNG Bytes traits (arrive as DataView, ArrayBuffer or Uint8Array).

const EMPTY = new Uint8Array(0);

/**
 * View the bytes of a Bytes trait value as a Uint8Array (no copy).
 * Accepts DataView, ArrayBuffer, any typed array, or null/undefined (-> empty).
 * @param {unknown} value
 */
export function toBytes(value) {
  if (value == null) return EMPTY;
  if (value instanceof Uint8Array) return value;
  if (ArrayBuffer.isView(value)) {
    return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  }
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  // SharedArrayBuffer or a buffer from another realm (iframe): duck-type on byteLength.
  const maybe = /** @type {{ byteLength?: unknown }} */ (value);
  if (typeof maybe.byteLength === "number") {
    return new Uint8Array(/** @type {ArrayBuffer} */ (value));
  }
  return EMPTY;
}

/** The typed array of each dtype the array codec sends (cnnviz_widgets/widgets/_codec.py). */
const TYPED = /** @type {const} */ ({
  int8: Int8Array,
  uint8: Uint8Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int32: Int32Array,
  uint32: Uint32Array,
  float32: Float32Array,
  float64: Float64Array,
});

/**
 * @typedef {Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array |
 *   Float32Array | Float64Array} Typed
 * @typedef {{ data: Typed, shape: number[] }} NdArray
 */

/** @type {WeakMap<object, NdArray>} */
const decoded = new WeakMap();

/**
 * An `Array` trait's value (`{dtype, shape, buffer}`, the one array codec) as a typed array and
 * its shape; decoded once per value (a copy: the buffer's offset may be unaligned). A missing
 * or malformed value is an empty array.
 * @param {unknown} value
 * @returns {NdArray}
 */
export function readArray(value) {
  const v = /** @type {{dtype?: unknown, shape?: unknown, buffer?: unknown} | null} */ (value);
  if (v === null || typeof v !== "object") return { data: new Float32Array(0), shape: [0] };
  const hit = decoded.get(v);
  if (hit) return hit;
  const Type = TYPED[/** @type {keyof typeof TYPED} */ (String(v.dtype))] ?? Float32Array;
  const bytes = toBytes(v.buffer);
  const n = Math.floor(bytes.byteLength / Type.BYTES_PER_ELEMENT);
  const data = new Type(n);
  new Uint8Array(data.buffer).set(bytes.subarray(0, n * Type.BYTES_PER_ELEMENT));
  const shape = Array.isArray(v.shape) ? v.shape.map(Number) : [n];
  const out = { data, shape };
  decoded.set(v, out);
  return out;
}

/**
 * The value to `model.set` on an `Array` trait: the codec's `{dtype, shape, buffer}`.
 * @param {Typed} data
 * @param {number[]} [shape]
 */
export function writeArray(data, shape = [data.length]) {
  const dtype = Object.keys(TYPED).find(
    (k) => data instanceof TYPED[/** @type {keyof typeof TYPED} */ (k)],
  );
  const buffer = new DataView(data.buffer, data.byteOffset, data.byteLength);
  return { dtype, shape, buffer };
}

/**
 * A decoder that re-decodes only when given a different trait object than last time.
 * @template T
 * @param {(raw: unknown) => T} decode
 * @returns {(raw: unknown) => T}
 */
export function memoDecoder(decode) {
  /** @type {unknown} */
  let lastRaw = {};
  /** @type {T | undefined} */
  let last;
  return (raw) => {
    if (raw !== lastRaw || last === undefined) {
      lastRaw = raw;
      last = decode(raw);
    }
    return last;
  };
}

/**
 * Decode a PNG Bytes trait into an ImageBitmap; resolves to null for empty bytes.
 * @param {unknown} value
 * @returns {Promise<ImageBitmap | null>}
 */
export async function decodePng(value) {
  const bytes = toBytes(value);
  if (bytes.byteLength === 0) return null;
  // Copy: Blob parts must not be backed by a SharedArrayBuffer, and it detaches us from the model.
  const blob = new Blob([bytes.slice()], { type: "image/png" });
  return createImageBitmap(blob, { colorSpaceConversion: "none" });
}

/**
 * Format a number with `digits` significant digits, dropping trailing zeros ("1.23", "0.456").
 * @param {number} x
 * @param {number} [digits]
 */
export function formatSig(x, digits = 3) {
  if (!Number.isFinite(x)) return String(x);
  return String(Number(x.toPrecision(digits)));
}

/**
 * @typedef {object} SlotResult
 * @property {ImageBitmap | null} bitmap null for empty bytes or a decoding failure
 * @property {string} error "" or why decoding failed
 */

/** Holds the latest decoded PNG of one Bytes trait and releases superseded bitmaps. */
export function createBitmapSlot() {
  /** @type {unknown} */
  let currentRaw = {};
  /** @type {Promise<SlotResult>} */
  let job = Promise.resolve({ bitmap: null, error: "" });
  /** @type {ImageBitmap | null} */
  let shown = null;
  let disposed = false;

  /**
   * Decode `raw` (re-using the previous result when `raw` is the same object). Resolves to null
   * when a newer `load` with different bytes superseded this one, or after `dispose`.
   * @param {unknown} raw
   * @returns {Promise<SlotResult | null>}
   */
  function load(raw) {
    if (raw !== currentRaw) {
      currentRaw = raw;
      job = decodePng(raw).then(
        (bitmap) => {
          if (raw !== currentRaw || disposed) {
            bitmap?.close();
            return { bitmap: null, error: "" };
          }
          return { bitmap, error: "" };
        },
        (err) => ({ bitmap: null, error: String(err?.message ?? err) }),
      );
    }
    const mine = job;
    return mine.then((result) => {
      if (mine === job && !disposed) return result;
      // Superseded before anyone showed it: nobody else will, so release it now.
      if (result.bitmap && result.bitmap !== shown) result.bitmap.close();
      return null;
    });
  }

  /** Declare `bitmap` the one on screen (closes the one before). @param {ImageBitmap | null} bitmap */
  function show(bitmap) {
    if (shown && shown !== bitmap) shown.close();
    shown = bitmap;
  }

  return {
    load,
    show,
    /**
     * Decode `raw`, then (unless superseded or disposed) draw it with `draw` and show it.
     * @param {unknown} raw
     * @param {(bitmap: ImageBitmap | null, error: string) => void} draw
     */
    draw(raw, draw) {
      load(raw).then((r) => {
        if (!r) return;
        draw(r.bitmap, r.error);
        show(r.bitmap);
      });
    },
    dispose() {
      disposed = true;
      shown?.close();
      shown = null;
    },
  };
}
