// @ts-check
// A widget's view inside a composite: the composite's model holds the panel's traits under
// `<prefix>__<name>`, and the selections panels share under one host name each (the host's
// `panel_links`; see cnnviz_widgets/widgets/_panels.py); this proxy gives the panel's own
// `render` the plain names back.

/** @typedef {import("./anywidget.js").AnyModel} AnyModel */

/**
 * The model a panel's view sees: `get("x")` reads `<prefix>__x` of the host model (or the host
 * trait `x` is shared as, per `panel_links`), `set` writes it, `on("change:x")` listens to its
 * change. `off()` with no event removes only the listeners added through this proxy.
 * @param {AnyModel} host
 * @param {string} prefix
 * @returns {AnyModel}
 */
export function panelModel(host, prefix) {
  const links = /** @type {Record<string, Record<string, string>> | null | undefined} */ (
    host.get("panel_links")
  );
  const shared = links && typeof links === "object" ? (links[prefix] ?? {}) : {};
  const key = (/** @type {string} */ name) =>
    Object.hasOwn(shared, name) ? shared[name] : `${prefix}__${name}`;
  const event = (/** @type {string} */ e) =>
    e.startsWith("change:") ? `change:${key(e.slice(7))}` : e;
  /** @type {Array<[string, () => void]>} */
  const listeners = [];
  return {
    get: (name) => host.get(key(name)),
    set: (name, value) => host.set(key(name), value),
    save_changes: () => host.save_changes(),
    on(name, callback) {
      listeners.push([event(name), callback]);
      host.on(event(name), callback);
    },
    off(name, callback) {
      for (let i = listeners.length - 1; i >= 0; i--) {
        const [e, cb] = listeners[i];
        if ((name == null || e === event(name)) && (callback == null || cb === callback)) {
          host.off(e, cb);
          listeners.splice(i, 1);
        }
      }
    },
  };
}
