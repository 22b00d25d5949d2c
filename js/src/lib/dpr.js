// @ts-check
// Noticing changes of window.devicePixelRatio (page zoom, moving to another monitor).

/**
 * Call `callback` whenever the device pixel ratio changes; returns the unsubscribe function.
 * @param {() => void} callback
 */
export function watchPixelRatio(callback) {
  /** @type {MediaQueryList | null} */
  let query = null;
  const onChange = () => {
    watch();
    callback();
  };
  function watch() {
    query?.removeEventListener("change", onChange);
    query = window.matchMedia?.(`(resolution: ${window.devicePixelRatio || 1}dppx)`) ?? null;
    query?.addEventListener("change", onChange);
  }
  watch();
  return () => {
    query?.removeEventListener("change", onChange);
    query = null;
  };
}
