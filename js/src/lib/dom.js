// @ts-check
// Small DOM helpers shared by the widgets.

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
