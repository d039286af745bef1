// The public HTTP protocol (docs/protocol.md) through nginx on the same origin.
// One Api per signed-in identity ("player" or "host"): it keeps that identity's
// tokens in localStorage and renews the access token once when a call gets 401.

import { load, save } from "./store.js";

export class ApiError extends Error {
  /**
   * An HTTP error with the JSON `detail` of the answer (status 0: no network).
   * @param {number} status
   * @param {string} detail
   * @param {any} [body]
   */
  constructor(status, detail, body = null) {
    super(detail || `HTTP ${status}`);
    this.status = status;
    this.detail = detail;
    this.body = body;
  }
}

/**
 * A message a person can act on, from any error thrown by Api.
 * @param {any} err
 * @returns {string}
 */
export function describeError(err) {
  if (!(err instanceof ApiError)) return String(err?.message || err);
  if (err.status === 0) return "No connection to the server. Check your network and try again.";
  if (err.status === 429) return "Too many requests; wait a moment and try again.";
  if (err.status >= 500) return "The server had a problem; try again in a moment.";
  return err.detail || `Request failed (${err.status})`;
}

/**
 * @typedef {object} RequestOptions
 * @property {unknown} [body] sent as JSON
 * @property {boolean} [auth] send the access token (default true)
 * @property {boolean} [timed] resolve to `{data, sentAt, receivedAt}`
 * @property {boolean} [raw] resolve to the Response itself
 * @property {boolean} [retry] renew the token once on 401, wait once on 429 (default true)
 */

/** @param {number} ms */
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export class Api {
  /** @param {string} slot names the stored identity: "player" or "host". */
  constructor(slot) {
    this.slot = slot;
    this.refreshing = null;
    /** @type {(() => void) | null} */
    this.onSignedOut = null;
  }

  get auth() {
    return load(`${this.slot}.auth`);
  }

  set auth(value) {
    save(`${this.slot}.auth`, value);
  }

  get token() {
    return this.auth?.access_token ?? null;
  }

  get user() {
    return this.auth?.user ?? null;
  }

  /**
   * One JSON call. Returns the decoded body, or `{data, sentAt, receivedAt}` with
   * `timed`, or the Response with `raw`. Throws ApiError for any non-2xx answer.
   * @param {string} method
   * @param {string} path
   * @param {RequestOptions} [options]
   * @returns {Promise<any>}
   */
  async request(method, path, { body, auth = true, timed = false, raw = false, retry = true } = {}) {
    /** @type {Record<string, string>} */
    const headers = { Accept: raw ? "*/*" : "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const token = this.token;
    if (auth && token) headers.Authorization = `Bearer ${token}`;
    const sentAt = Date.now();
    let res;
    try {
      res = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch {
      throw new ApiError(0, "network");
    }
    const receivedAt = Date.now();
    if (res.status === 401 && auth && retry && this.auth?.refresh_token) {
      if (await this.refresh(token)) return this.request(method, path, { body, auth, timed, raw, retry: false });
    }
    if (res.status === 429 && retry) {
      const wait = Math.min(Number(res.headers.get("Retry-After")) || 1, 5);
      await sleep(wait * 1000);
      return this.request(method, path, { body, auth, timed, raw, retry: false });
    }
    if (!res.ok) {
      let data = null;
      try {
        data = await res.json();
      } catch {
        // nginx or a proxy may answer with an empty body
      }
      throw new ApiError(res.status, detailOf(data) || res.statusText, data);
    }
    if (raw) return res;
    const data = res.status === 204 ? null : await res.json();
    return timed ? { data, sentAt, receivedAt } : data;
  }

  /**
   * @param {string} path
   * @param {RequestOptions} [opts]
   */
  get(path, opts) {
    return this.request("GET", path, opts);
  }

  /**
   * @param {string} path
   * @param {unknown} [body]
   * @param {RequestOptions} [opts]
   */
  post(path, body, opts = {}) {
    return this.request("POST", path, { ...opts, body: body ?? {} });
  }

  /**
   * Renew the token pair with the refresh token. Concurrent callers share one
   * request (a refresh token works once). `staleToken`: the access token the
   * caller saw fail; if another call already replaced it, nothing is sent.
   * Resolves true when a fresh access token is stored.
   * @param {string | null} [staleToken]
   */
  refresh(staleToken = null) {
    if (staleToken && this.token && this.token !== staleToken) return Promise.resolve(true);
    if (this.refreshing) return this.refreshing;
    const current = this.auth;
    if (!current?.refresh_token) return Promise.resolve(false);
    this.refreshing = (async () => {
      try {
        const res = await fetch("/api/iam/token/refresh", {
          method: "POST",
          headers: { "Content-Type": "application/json", Accept: "application/json" },
          body: JSON.stringify({ refresh_token: current.refresh_token }),
        });
        if (res.ok) {
          const pair = await res.json();
          this.auth = { ...current, ...pair, user: pair.user || current.user };
          return true;
        }
        if (res.status === 401 || res.status === 403) {
          this.auth = null;
          this.onSignedOut?.();
        }
        return false;
      } catch {
        return false;
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** Seconds until the access token expires (from its `exp` claim); Infinity if unknown. */
  tokenTtl() {
    const token = this.token;
    if (!token) return 0;
    try {
      const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
      const { exp } = JSON.parse(atob(part));
      return typeof exp === "number" ? exp - Date.now() / 1000 : Infinity;
    } catch {
      return Infinity;
    }
  }
}

/**
 * The `detail` of a JSON error body as one line.
 * @param {any} data
 * @returns {string}
 */
function detailOf(data) {
  if (!data) return "";
  if (typeof data.detail === "string") return data.detail;
  if (Array.isArray(data.detail)) return data.detail.map((/** @type {any} */ d) => d.msg || d.message || JSON.stringify(d)).join("; ");
  return "";
}
