// @ts-check
// Small DOM helpers shared by the widgets.

import { getFloat, getStr } from "./anywidget.js";

/**
 * A new element with one class.
 * @param {string} tag
 * @param {string} className
 * @returns {HTMLElement}
 */
export function make(tag, className) {
  const e = document.createElement(tag);
  e.className = className;
  return e;
}

/**
 * A `<label class="cnnviz-field">` holding a text and a control.
 * @param {string} text
 * @param {HTMLElement} control
 */
export function field(text, control) {
  const label = make("label", "cnnviz-field");
  label.append(text, control);
  return label;
}

/**
 * Show the `caption`, `status`, `progress` and `running` traits that long-running widgets share.
 * @param {import("./anywidget.js").AnyModel} model
 * @param {{root: HTMLElement, caption: HTMLElement, status: HTMLElement, progress: HTMLProgressElement}} els
 */
export function showProgress(model, { root, caption, status, progress }) {
  const text = getStr(model, "caption");
  caption.textContent = text;
  caption.style.display = text ? "" : "none";
  status.textContent = getStr(model, "status");
  progress.value = Math.min(1, Math.max(0, getFloat(model, "progress", 0)));
  root.dataset.running = String(Boolean(model.get("running")));
}
