// Everything that must survive a reload (tokens, the current session, given
// answers) lives in localStorage under one prefix.

const PREFIX = "quizrt.";

/**
 * The stored JSON value of `key`, or `fallback` when absent or unreadable.
 * @param {string} key
 * @param {any} [fallback]
 * @returns {any}
 */
export function load(key, fallback = null) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw == null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

/**
 * Store `value` as JSON under `key`; null or undefined removes the key.
 * @param {string} key
 * @param {unknown} value
 */
export function save(key, value) {
  try {
    if (value == null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Private mode or a full quota: the page still works, it just forgets on reload.
  }
}
