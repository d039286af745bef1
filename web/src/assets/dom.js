// Tiny DOM helpers: no framework, text always set through textContent.

/**
 * First element matching `sel` inside `root` (default: document).
 * @param {string} sel
 * @param {ParentNode} [root]
 * @returns {any}
 */
export const $ = (sel, root = document) => root.querySelector(sel);

/**
 * Create an element: h("li", {class: "x", dataset: {id: 1}}, "text", child).
 * @param {string} tag
 * @param {Record<string, any> | null} [attrs]
 * @param {...any} children
 * @returns {any} the element (loosely typed, as `$`'s: callers read form fields off it)
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, "");
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c == null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/**
 * Show exactly one `.view` section (by id) and move focus to its heading.
 * @param {string} id
 * @param {{focus?: boolean}} [options]
 */
export function showView(id, { focus = true } = {}) {
  for (const v of /** @type {NodeListOf<HTMLElement>} */ (document.querySelectorAll(".view"))) v.hidden = v.id !== id;
  const boot = document.getElementById("boot");
  if (boot) boot.remove();
  const view = document.getElementById(id);
  if (focus && view) {
    const heading = view.querySelector("h1");
    if (heading) {
      heading.tabIndex = -1;
      heading.focus({ preventScroll: true });
    }
  }
  return view;
}

/**
 * Say `text` to screen readers through the page's polite live region.
 * @param {string} text
 */
export function announce(text) {
  const el = document.getElementById("announcer");
  if (!el) return;
  el.textContent = "";
  // A fresh text node after a tick makes screen readers repeat equal messages.
  setTimeout(() => (el.textContent = text), 50);
}

/**
 * Put `message` into the `[data-error]` element of `root` (empty clears it).
 * @param {ParentNode} root
 * @param {string | null | undefined} message
 */
export function setError(root, message) {
  const el = root.querySelector("[data-error]");
  if (el) el.textContent = message || "";
}

/**
 * Disable the submit buttons of a form while `promise` runs.
 * @template T
 * @param {HTMLElement} form
 * @param {Promise<T>} promise
 * @returns {Promise<T>}
 */
export async function busy(form, promise) {
  const buttons = [...form.querySelectorAll("button")];
  buttons.forEach((b) => (b.disabled = true));
  form.setAttribute("aria-busy", "true");
  try {
    return await promise;
  } finally {
    buttons.forEach((b) => (b.disabled = false));
    form.removeAttribute("aria-busy");
  }
}

/**
 * Show the connection state in the top bar.
 * @param {string} state
 */
export function setNetStatus(state) {
  const el = document.getElementById("net");
  if (!el) return;
  /** @type {Record<string, string>} */
  const labels = { connected: "Live", connecting: "Connecting…", offline: "Reconnecting…", "": "" };
  el.textContent = labels[state] ?? state;
  el.dataset.state = state;
}

/** @type {(n: number, word: string) => string} */
export const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
/** @type {(n: number | null | undefined) => string} */
export const fmt = (n) => Number(n || 0).toLocaleString("en-US");
