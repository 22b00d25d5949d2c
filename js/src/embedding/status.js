// @ts-check
// The embedding view's status: the caption, the progress bar with its status text (`caption`,
// `status`, `progress`, `running`; the root's data-running) and the error line.

import { make, showProgress } from "../lib/dom.js";

/**
 * @param {import("../lib/anywidget.js").AnyModel} model
 * @param {HTMLElement} root the view's root element
 */
export function createStatus(model, root) {
  const caption = make("span", "cnnviz-caption");
  const progressBox = make("span", "cnnviz-progress-box");
  const progress = /** @type {HTMLProgressElement} */ (make("progress", "cnnviz-progress"));
  progress.max = 1;
  const status = make("span", "cnnviz-status");
  progressBox.append(progress, status);
  const error = make("div", "cnnviz-error");
  error.style.display = "none";
  return {
    caption,
    progressBox,
    error,
    update: () => showProgress(model, { root, caption, status, progress }),
    /** @param {string} text */
    showError(text) {
      error.textContent = text;
      error.style.display = text ? "" : "none";
    },
  };
}
