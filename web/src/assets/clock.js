// Question clocks follow the server: every question carries `server_time_ms`
// (when the server sent it) and `deadline_ms`; the local deadline is the
// server deadline shifted by the estimated offset between the two clocks.

/**
 * Offset (server minus local, ms) from one server timestamp. With `sentAt`
 * (the local time the request left) the midpoint of the round trip is used,
 * otherwise the local receive time (socket.io events: one-way latency only).
 * @param {unknown} serverTimeMs
 * @param {number | null} [sentAt]
 * @param {number} [receivedAt]
 */
export function serverOffset(serverTimeMs, sentAt = null, receivedAt = Date.now()) {
  if (typeof serverTimeMs !== "number") return 0;
  const local = sentAt ? (sentAt + receivedAt) / 2 : receivedAt;
  return serverTimeMs - local;
}

/** A countdown bar + seconds label inside `root` (a `.countdown` element). */
export class Countdown {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.bar = /** @type {HTMLElement} */ (root.querySelector(".countdown-bar > span"));
    this.text = /** @type {HTMLElement} */ (root.querySelector(".countdown-text"));
    /** @type {ReturnType<typeof setInterval> | null} */
    this.timer = null;
    /** @type {(() => void) | null} */
    this.onExpire = null;
    this.deadlineLocal = 0;
    this.totalMs = 1;
  }

  /**
   * Run until `deadlineMs` (server clock); `onExpire` fires once at zero.
   * @param {number} deadlineMs
   * @param {number | null | undefined} timeLimitS
   * @param {number} offset
   * @param {(() => void) | null} [onExpire]
   */
  start(deadlineMs, timeLimitS, offset, onExpire = null) {
    this.stop();
    this.deadlineLocal = deadlineMs - offset;
    this.totalMs = Math.max(1, (timeLimitS || 20) * 1000);
    this.onExpire = onExpire;
    this.root.hidden = false;
    this.tick();
    if (this.remainingMs() > 0) this.timer = setInterval(() => this.tick(), 100);
  }

  remainingMs() {
    return Math.max(0, this.deadlineLocal - Date.now());
  }

  tick() {
    const left = this.remainingMs();
    const secs = Math.ceil(left / 1000);
    this.text.textContent = `${secs}s`;
    this.root.setAttribute("aria-label", `${secs} seconds left`);
    this.bar.style.width = `${Math.min(100, (left / this.totalMs) * 100)}%`;
    this.root.classList.toggle("urgent", left > 0 && left <= 5000);
    if (left <= 0) {
      this.stop();
      const cb = this.onExpire;
      this.onExpire = null;
      cb?.();
    }
  }

  /** Stop ticking and keep the display where it is. */
  stop() {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Stop and show the clock as closed. */
  close() {
    this.stop();
    this.onExpire = null;
    this.bar.style.width = "0%";
    this.text.textContent = "0s";
    this.root.classList.remove("urgent");
  }
}
