// @ts-check
// The anywidget front-end contract as the widgets use it: a minimal typing of the model, the
// `initialize` they share, and helpers to read, write and follow traits.

/**
 * The subset of the anywidget model API the widgets use.
 * @typedef {object} AnyModel
 * @property {(name: string) => any} get
 * @property {(name: string, value: unknown) => void} set
 * @property {() => void} save_changes
 * @property {(event: string, callback: () => void) => void} on
 * @property {(event?: string | null, callback?: (() => void) | null) => void} off
 * @property {{get_model: (id: string) => Promise<AnyModel>}} [widget_manager]
 */

/** @typedef {{ model: AnyModel, el: HTMLElement }} RenderProps */

/**
 * anywidget's `initialize` (once per model): ask the kernel for its whole state, since updates
 * it sent while the front end was still building the model were dropped
 * (cnnviz_widgets/widgets/_base.py).
 * @param {{ model: any }} ctx
 */
export function initialize({ model }) {
  model.send({ type: "cnnviz-sync" });
}

/**
 * Subscribe `callback` to `change:<name>` for every name; returns the unsubscribe function.
 * @param {AnyModel} model
 * @param {readonly string[]} names
 * @param {() => void} callback
 */
export function onChanges(model, names, callback) {
  for (const name of names) model.on(`change:${name}`, callback);
  return () => {
    for (const name of names) model.off(`change:${name}`, callback);
  };
}

/**
 * Set trait `name` to `value` and send it to the kernel (nothing to do when it has that value).
 * @param {AnyModel} model
 * @param {string} name
 * @param {unknown} value
 */
export function setTrait(model, name, value) {
  if (model.get(name) === value) return;
  model.set(name, value);
  model.save_changes();
}

/**
 * An integer trait (`fallback` when missing or not finite).
 * @param {AnyModel} model
 * @param {string} name
 * @param {number} fallback
 */
export function getInt(model, name, fallback) {
  const v = Number(model.get(name));
  return Number.isFinite(v) ? Math.trunc(v) : fallback;
}

/**
 * A string trait ("" when missing).
 * @param {AnyModel} model
 * @param {string} name
 */
export function getStr(model, name) {
  const v = model.get(name);
  return v == null ? "" : String(v);
}

/**
 * A 2-element integer list trait such as `tile_shape` or `grid_shape`.
 * @param {AnyModel} model
 * @param {string} name
 * @returns {[number, number]}
 */
export function getPair(model, name) {
  const v = model.get(name);
  if (!Array.isArray(v) && !ArrayBuffer.isView(v)) return [0, 0];
  const arr = /** @type {ArrayLike<unknown>} */ (v);
  const a = Math.trunc(Number(arr[0]));
  const b = Math.trunc(Number(arr[1]));
  return [Number.isFinite(a) ? a : 0, Number.isFinite(b) ? b : 0];
}

/**
 * A float trait (`fallback` when missing or not finite).
 * @param {AnyModel} model
 * @param {string} name
 * @param {number} fallback
 */
export function getFloat(model, name, fallback) {
  const v = model.get(name);
  const x = typeof v === "number" ? v : Number(v);
  return v != null && v !== "" && Number.isFinite(x) ? x : fallback;
}

/**
 * The model of the child widget in trait `name` (a reference "IPY_MODEL_<id>", as ipywidgets'
 * `widget_serialization` sends it), from the widget manager. A front end restoring a kernel's
 * widgets creates their models in no set order, so a child not there yet is asked for again
 * (for up to `waitMs`).
 * @param {AnyModel} model
 * @param {string} name
 * @returns {Promise<AnyModel>}
 */
export async function childModel(model, name, waitMs = 20_000) {
  const ref = getStr(model, name);
  const manager = model.widget_manager;
  if (!ref.startsWith("IPY_MODEL_") || !manager) {
    throw new Error(`${name} is not a widget reference: ${JSON.stringify(ref)}`);
  }
  const id = ref.slice("IPY_MODEL_".length);
  const deadline = performance.now() + waitMs;
  for (let pause = 10; ; pause = Math.min(2 * pause, 500)) {
    try {
      return await manager.get_model(id);
    } catch (err) {
      if (performance.now() > deadline) throw err;
      await new Promise((resolve) => setTimeout(resolve, pause));
    }
  }
}
