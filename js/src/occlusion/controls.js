// @ts-check
// The occlusion map's settings: patch size, stride and baseline (number inputs committed on
// change, a value out of range is refused: the input reverts to the trait and is outlined for a
// moment) and the map's opacity (a slider, live while dragged).

import { getFloat, getPair } from "../lib/anywidget.js";
import { field, listen, make } from "../lib/dom.js";

/** How long a refused input stays outlined (ms). */
const REFUSED_MS = 1200;

/** Outlining of refused inputs. */
export function createRefusals() {
  /** @type {Map<HTMLElement, ReturnType<typeof setTimeout>>} */
  const timers = new Map();
  return {
    /** Outline `input` briefly to show its value was refused. @param {HTMLElement} input */
    refuse(input) {
      input.classList.add("cnnviz-refused");
      const old = timers.get(input);
      if (old !== undefined) clearTimeout(old);
      timers.set(
        input,
        setTimeout(() => {
          timers.delete(input);
          input.classList.remove("cnnviz-refused");
        }, REFUSED_MS),
      );
    },
    destroy() {
      for (const t of timers.values()) clearTimeout(t);
      timers.clear();
    },
  };
}

/**
 * A number input: of whole numbers from 1 (image px), or with `step` "any" of any number.
 * @param {string} cls
 * @param {string} title
 */
function numberInput(cls, title, step = "1") {
  const input = make("input", cls);
  input.type = "number";
  input.title = title;
  if (step === "1") input.min = "1";
  input.step = step;
  return input;
}

/**
 * @param {object} o
 * @param {import("../lib/anywidget.js").AnyModel} o.model
 * @param {(input: HTMLElement) => void} o.refuse
 */
export function createControls({ model, refuse }) {
  const patchInput = numberInput("cnnviz-patch", "patch size (image px)");
  const strideInput = numberInput("cnnviz-stride", "stride of the finest map (image px)");
  const baselineInput = numberInput("cnnviz-baseline", "value the patch fills in", "any");
  const opacity = make("input", "cnnviz-opacity");
  opacity.type = "range";
  opacity.min = "0";
  opacity.max = "1";
  opacity.step = "0.01";
  opacity.title = "opacity of the map";

  function patchMax() {
    const [h, w] = getPair(model, "image_shape");
    return h > 0 && w > 0 ? Math.min(h, w) : Number.POSITIVE_INFINITY;
  }

  /**
   * A `change` handler that commits `input` to trait `name` when `accept(value)` holds, and
   * otherwise reverts the input to the trait value.
   * @param {HTMLInputElement} input
   * @param {string} name
   * @param {(v: number) => boolean} accept
   */
  function committer(input, name, accept) {
    return () => {
      const text = input.value.trim();
      const v = Number(text);
      if (text === "" || !Number.isFinite(v) || !accept(v)) {
        input.value = String(model.get(name) ?? "");
        refuse(input);
        return;
      }
      input.classList.remove("cnnviz-refused");
      if (v !== model.get(name)) {
        model.set(name, v);
        model.save_changes();
      }
    };
  }
  const onOpacityInput = () => {
    const v = Number(opacity.value);
    if (Number.isFinite(v)) model.set("opacity", Math.min(1, Math.max(0, v)));
  };
  const onOpacityChange = () => {
    onOpacityInput();
    model.save_changes();
  };
  const isCount = (/** @type {number} */ v) => Number.isInteger(v) && v >= 1;
  const isPatch = (/** @type {number} */ v) => isCount(v) && v <= patchMax();
  const unlisten = listen([
    [patchInput, "change", committer(patchInput, "patch_size", isPatch)],
    [strideInput, "change", committer(strideInput, "stride", isCount)],
    [baselineInput, "change", committer(baselineInput, "baseline", () => true)],
    [opacity, "input", onOpacityInput],
    [opacity, "change", onOpacityChange],
  ]);

  return {
    fields: [
      field("patch", patchInput),
      field("stride", strideInput),
      field("baseline", baselineInput),
      field("opacity", opacity),
    ],
    /** Show the traits in the inputs. */
    update() {
      patchInput.value = String(model.get("patch_size") ?? "");
      strideInput.value = String(model.get("stride") ?? "");
      baselineInput.value = String(model.get("baseline") ?? "");
      const max = patchMax();
      if (Number.isFinite(max)) patchInput.max = String(max);
      else patchInput.removeAttribute("max");
      opacity.value = String(Math.min(1, Math.max(0, getFloat(model, "opacity", 0.6))));
    },
    destroy: unlisten,
  };
}
