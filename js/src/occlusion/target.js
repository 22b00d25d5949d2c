// @ts-check
// The occlusion map's target class: a select of the model's top-5 predictions (`top_classes`,
// with their scores) and the current `target`, and "other class…", which opens a text box for
// any class by name or index (a datalist of `class_names`); a refused entry is outlined.

import { getInt, setTrait } from "../lib/anywidget.js";
import { formatSig } from "../lib/codecs.js";
import { field, listen, make } from "../lib/dom.js";

/** `<option>` value of the "other class…" entry. */
const OTHER = "other";

let instances = 0;

/**
 * The `top_classes` trait (the model's top-5 predictions) as a clean list.
 * @param {unknown} raw
 */
export function readTopClasses(raw) {
  if (!Array.isArray(raw)) return [];
  /** @type {{ index: number, name: string, score: number }[]} */
  const out = [];
  for (const item of raw) {
    if (item == null || typeof item !== "object") continue;
    const rec = /** @type {Record<string, unknown>} */ (item);
    const index = Number(rec.index);
    if (!Number.isInteger(index) || index < 0) continue;
    out.push({
      index,
      name: rec.name == null ? `class ${index}` : String(rec.name),
      score: Number(rec.score),
    });
  }
  return out;
}

/**
 * Datalist values for class names: the name itself, or "name #index" when several classes share
 * that name. Returns the values and a map back to the class index.
 * @param {readonly string[]} names
 */
export function classChoices(names) {
  /** @type {Map<string, number>} */
  const count = new Map();
  for (const n of names) count.set(n, (count.get(n) ?? 0) + 1);
  const values = names.map((n, i) => ((count.get(n) ?? 0) > 1 ? `${n} #${i}` : n));
  /** @type {Map<string, number>} */
  const lookup = new Map();
  values.forEach((v, i) => {
    if (!lookup.has(v)) lookup.set(v, i);
  });
  return { values, lookup };
}

/**
 * Class index typed into the "other class" box: a datalist value, a class index, or a name
 * matched case-insensitively when that is unambiguous; -1 otherwise.
 * @param {string} text
 * @param {readonly string[]} names
 * @param {Map<string, number>} lookup
 */
export function parseClass(text, names, lookup) {
  const s = text.trim();
  if (!s) return -1;
  const hit = lookup.get(s);
  if (hit !== undefined) return hit;
  if (/^\d+$/.test(s)) {
    const i = Number(s);
    return i < names.length ? i : -1;
  }
  const lower = s.toLowerCase();
  let found = -1;
  for (let i = 0; i < names.length; i++) {
    if (names[i].toLowerCase() !== lower) continue;
    if (found >= 0) return -1;
    found = i;
  }
  return found;
}

/**
 * @param {object} o
 * @param {import("../lib/anywidget.js").AnyModel} o.model
 * @param {(input: HTMLElement) => void} o.refuse outline an input whose value was refused
 */
export function createTarget({ model, refuse }) {
  const select = make("select", "cnnviz-target");
  select.title = "target class (top-5 predictions)";
  const classInput = make("input", "cnnviz-class-input");
  classInput.type = "text";
  classInput.placeholder = "class name or index";
  classInput.autocomplete = "off";
  classInput.style.display = "none";
  const datalist = make("datalist", "cnnviz-class-list");
  instances += 1;
  datalist.id = `cnnviz-occlusion-classes-${instances}-${Math.random().toString(36).slice(2, 8)}`;
  classInput.setAttribute("list", datalist.id);
  const el = field("class", select);
  el.append(classInput, datalist);

  /** @type {unknown} */
  let namesRaw = {};
  /** @type {string[]} */
  let names = [];
  /** @type {Map<string, number>} */
  let lookup = new Map();
  let otherOpen = false;

  function update() {
    const rawNames = model.get("class_names");
    if (rawNames !== namesRaw) {
      namesRaw = rawNames;
      names = Array.isArray(rawNames) ? rawNames.map(String) : [];
      const choices = classChoices(names);
      lookup = choices.lookup;
      datalist.replaceChildren(...choices.values.map((v) => new Option("", v)));
    }
    const top = readTopClasses(model.get("top_classes"));
    const target = getInt(model, "target", -1);
    select.replaceChildren();
    for (const c of top) {
      const score = Number.isFinite(c.score) ? ` (${formatSig(c.score, 2)})` : "";
      select.add(new Option(`${c.name}${score}`, String(c.index)));
    }
    if (target >= 0 && !top.some((c) => c.index === target)) {
      const name = target < names.length ? names[target] : `class ${target}`;
      select.add(new Option(name, String(target)));
    }
    if (names.length > top.length) select.add(new Option("other class…", OTHER));
    select.value = otherOpen ? OTHER : target >= 0 ? String(target) : "";
  }

  function closeOther() {
    otherOpen = false;
    classInput.style.display = "none";
    classInput.value = "";
    classInput.removeAttribute("aria-invalid");
    update();
  }

  const setTarget = (/** @type {number} */ index) => setTrait(model, "target", index);

  const onSelect = () => {
    if (select.value === OTHER) {
      otherOpen = true;
      classInput.style.display = "";
      classInput.value = "";
      classInput.focus();
      return;
    }
    const index = Number(select.value);
    otherOpen = false;
    classInput.style.display = "none";
    if (Number.isInteger(index) && index >= 0) setTarget(index);
  };
  const onClassChange = () => {
    const index = parseClass(classInput.value, names, lookup);
    if (index < 0) {
      classInput.setAttribute("aria-invalid", "true");
      refuse(classInput);
      return;
    }
    otherOpen = false;
    setTarget(index);
    closeOther();
  };
  /** @param {KeyboardEvent} ev */
  const onClassKey = (ev) => {
    if (ev.key === "Escape") closeOther();
  };
  const onClassBlur = () => {
    if (!classInput.value.trim()) closeOther();
  };
  const destroy = listen([
    [select, "change", onSelect],
    [classInput, "change", onClassChange],
    [classInput, "keydown", onClassKey],
    [classInput, "blur", onClassBlur],
  ]);
  return { el, update, destroy };
}
