// @ts-check
// Small DOM helpers shared by the widgets.

import { getFloat, getStr, onChanges } from "./anywidget.js";

/**
 * A new element with one class, holding `children`.
 * @template {keyof HTMLElementTagNameMap} K
 * @param {K} tag
 * @param {string} className
 * @param {...(Node | string)} children
 */
export function make(tag, className, ...children) {
  const e = document.createElement(tag);
  e.className = className;
  e.append(...children);
  return e;
}

/**
 * A `<button type="button">` with a class, a text and (when given) a title.
 * @param {string} className
 * @param {string} text
 * @param {string} [title]
 */
export function button(className, text, title) {
  const b = make("button", className);
  b.type = "button";
  b.textContent = text;
  if (title) b.title = title;
  return b;
}

/**
 * A `<label class="cnnviz-field">` holding a text and a control.
 * @param {string} text
 * @param {HTMLElement} control
 */
export const field = (text, control) => make("label", "cnnviz-field", text, control);

/**
 * Show `text` in `el`, and hide `el` while there is none.
 * @param {HTMLElement} el
 * @param {string} text
 */
export function showText(el, text) {
  el.textContent = text;
  el.style.display = text ? "" : "none";
}

/** The (hidden) line where a widget says what went wrong. */
export function errorLine() {
  const error = make("div", "cnnviz-error");
  error.style.display = "none";
  return error;
}

/** A hidden hover tooltip (`div.cnnviz-tooltip`). */
export function makeTooltip() {
  const tip = make("div", "cnnviz-tooltip");
  tip.style.display = "none";
  tip.setAttribute("role", "tooltip");
  return tip;
}

/**
 * Put `tip` (`width` px wide) 12 px right of and 14 px below the pointer at (x, y), or left of
 * the pointer (not past `minLeft`) where it would overhang `right`.
 * @param {HTMLElement} tip
 * @param {number} x
 * @param {number} y
 * @param {number} width
 * @param {number} right
 */
export function placeTooltip(tip, x, y, width, right, minLeft = 0) {
  let left = x + 12;
  if (left + width > right) left = Math.max(minLeft, x - width - 8);
  tip.style.left = `${left}px`;
  tip.style.top = `${y + 14}px`;
}

/**
 * Add event listeners (`[target, type, handler]` each); returns the function removing them.
 * @param {[EventTarget, string, (ev: any) => void][]} listeners
 */
export function listen(listeners) {
  for (const [target, type, fn] of listeners) target.addEventListener(type, fn);
  return () => {
    for (const [target, type, fn] of listeners) target.removeEventListener(type, fn);
  };
}

/**
 * The caption and the progress bar with its status text of a long-running widget, following
 * `caption`, `status`, `progress` and `running` (the root's data-running). `tag`: "span" in a
 * toolbar (`.cnnviz-progress-box`), "div" on lines of their own (`.cnnviz-progress-row`).
 * @param {import("./anywidget.js").AnyModel} model
 * @param {HTMLElement} root
 * @param {"span" | "div"} tag
 */
export function createProgress(model, root, tag) {
  const caption = make(tag, "cnnviz-caption");
  const progress = make("progress", "cnnviz-progress");
  progress.max = 1;
  const status = make("span", "cnnviz-status");
  const box = make(tag, `cnnviz-progress-${tag === "span" ? "box" : "row"}`, progress, status);
  const update = () => {
    showText(caption, getStr(model, "caption"));
    status.textContent = getStr(model, "status");
    progress.value = Math.min(1, Math.max(0, getFloat(model, "progress", 0)));
    root.dataset.running = String(Boolean(model.get("running")));
  };
  update();
  return {
    caption,
    box,
    off: onChanges(model, ["caption", "status", "progress", "running"], update),
  };
}

/**
 * Call `pick(n)` for a click in `container` on an element matching `selector` whose data-`key`
 * is a whole number n; returns the function removing the listener.
 * @param {HTMLElement} container
 * @param {string} selector
 * @param {string} key
 * @param {(n: number) => void} pick
 */
export function onPick(container, selector, key, pick) {
  /** @param {MouseEvent} ev */
  const onClick = (ev) => {
    const hit = /** @type {HTMLElement | null} */ (
      /** @type {Element | null} */ (ev.target)?.closest?.(selector) ?? null
    );
    const n = Number(hit?.dataset[key]);
    if (hit && container.contains(hit) && Number.isInteger(n) && n >= 0) pick(n);
  };
  return listen([[container, "click", onClick]]);
}
