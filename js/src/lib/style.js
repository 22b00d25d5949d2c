// @ts-check
// One <style> element per style block id, injected into the document (or the shadow root the
// widget lives in). All class names are prefixed `cnnviz-`.

/** Text colour readable on JupyterLab light/dark themes, VS Code, and plain pages. */
export const FG = "var(--jp-ui-font-color1, var(--vscode-editor-foreground, #222))";
/** Secondary text colour. */
export const FG2 = "var(--jp-ui-font-color2, var(--vscode-descriptionForeground, #555))";
/** Background of inputs/panels. */
export const BG = "var(--jp-layout-color1, var(--vscode-editor-background, #fff))";
/** Subtle background used behind tiles (shows through the gaps). */
export const BG_TILES = "var(--jp-layout-color3, var(--vscode-editorWidget-border, #bdbdbd))";
/** Border colour. */
export const BORDER = "var(--jp-border-color1, var(--vscode-panel-border, #bdbdbd))";
/** Font used by all widgets. */
export const FONT = "var(--jp-ui-font-family, system-ui, -apple-system, 'Segoe UI', sans-serif)";
/** Highlight colour for selected tiles (matplotlib's tab:orange). */
export const SELECT_COLOR = "#ff7f0e";
/** Second highlight colour, for tiles marked for another reason (matplotlib's tab:blue). */
export const MARK_COLOR = "#1f77b4";

/**
 * @param {Node} root a Document or ShadowRoot
 * @param {Document} doc
 * @param {string} id
 * @param {string} css
 */
function insertStyle(root, doc, id, css) {
  const isShadow = typeof ShadowRoot !== "undefined" && root instanceof ShadowRoot;
  const existing = isShadow ? root.getElementById(id) : doc.getElementById(id);
  if (existing) return;
  const style = doc.createElement("style");
  style.id = id;
  style.textContent = css;
  (isShadow ? root : doc.head || doc.documentElement).appendChild(style);
}

/**
 * Inject `css` once per root node (the document, or the shadow root the widget lives in) under
 * the id `id`. A widget rendered before its element is attached (marimo renders into a shadow
 * root, and a composite's panels render before the composite attaches them) gets the style in
 * the document at once and, once the element is attached, in the shadow root it lands in:
 * styles in `document.head` do not reach into a shadow root.
 * @param {HTMLElement} el an element of the widget (attached or not yet)
 * @param {string} id
 * @param {string} css
 */
export function injectStyle(el, id, css) {
  const doc = el.ownerDocument;
  if (el.isConnected) {
    insertStyle(el.getRootNode(), doc, id, css);
    return;
  }
  insertStyle(doc, doc, id, css);
  const view = doc.defaultView;
  if (!view) return;
  let frames = 0;
  const attached = () => {
    if (el.isConnected) insertStyle(el.getRootNode(), doc, id, css);
    else if (++frames < 1200) view.requestAnimationFrame(attached); // about 20 s
  };
  view.requestAnimationFrame(attached);
}

/** Declarations of a hover tooltip (dark-on-light in light themes, inverted in dark ones). */
export const TOOLTIP_RULES = `
  position: absolute; z-index: 10; pointer-events: none; white-space: nowrap;
  padding: 2px 6px; border-radius: 3px; font: 12px/1.4 ${FONT};
  color: var(--jp-layout-color1, var(--vscode-editor-background, #fff));
  background: ${FG}; opacity: 0.92; box-shadow: 0 1px 3px rgba(0, 0, 0, 0.3);
`;
