// @ts-check
// Once a widget's model exists in the browser, ask the kernel for its whole state: updates the
// kernel sent while the front-end was still building the model were dropped
// (cnnviz_widgets/widgets/_base.py).

/** anywidget's `initialize`: runs once per model. @param {{ model: any }} ctx */
export function initialize({ model }) {
  model.send({ type: "cnnviz-sync" });
}
