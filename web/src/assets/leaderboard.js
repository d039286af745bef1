// The live top-10: snapshots may arrive out of order (several socket.io
// processes, HTTP and events), so only a higher version replaces the board.

import { fmt, h, plural } from "./dom.js";

/**
 * One row of a leaderboard (protocol: LeaderboardEntry).
 * @typedef {{rank: number, user_id: string, nickname: string, score: number}} Entry
 */
/**
 * A leaderboard snapshot (protocol: the `leaderboard` event, the `top` reply).
 * @typedef {{entries: Entry[], players?: number, version?: number, session_id?: string}} Snapshot
 */

/**
 * A session's player count as of the newest board version seen. Events of several
 * quiz processes can arrive out of order, and players never leave a session, so a
 * count without a version only ever raises it.
 */
export class PlayerCount {
  constructor() {
    this.n = 0;
    this.version = 0;
  }

  /**
   * Take `n` (read at board `version`, 0: unknown) if it is not older than the count held.
   * @param {unknown} n
   * @param {number} [version]
   * @returns {boolean} whether it was taken
   */
  accept(n, version = 0) {
    if (typeof n !== "number") return false;
    if (version ? version < this.version : n < this.n) return false;
    if (version) this.version = version;
    this.n = n;
    return true;
  }
}

export class Board {
  constructor() {
    this.version = -1;
    /** @type {Snapshot | null} */
    this.snapshot = null;
  }

  /**
   * Take `snap` if it is newer than what is shown; true when it was taken.
   * @param {any} snap
   */
  accept(snap) {
    if (!snap || !Array.isArray(snap.entries)) return false;
    const version = typeof snap.version === "number" ? snap.version : -1;
    if (this.snapshot && version <= this.version) return false;
    this.version = version;
    this.snapshot = snap;
    return true;
  }

  /**
   * Replace the board with a final one (session_ended carries no version).
   * @param {Entry[]} entries
   * @param {number} [players]
   */
  finish(entries, players) {
    this.version = Number.MAX_SAFE_INTEGER;
    this.snapshot = { entries, players, version: this.version };
  }

  /**
   * This user's entry if they are in the top 10.
   * @param {string | null | undefined} userId
   */
  entryOf(userId) {
    return this.snapshot?.entries.find((e) => e.user_id === userId) || null;
  }
}

/**
 * Draw the board into `list` (an <ol>), marking `meId`; `countEl` gets the player count.
 * @param {HTMLElement} list
 * @param {Board} board
 * @param {string | null | undefined} meId
 * @param {HTMLElement | null} [countEl]
 */
export function renderBoard(list, board, meId, countEl = null) {
  const snap = board.snapshot;
  const items = /** @type {HTMLElement[]} */ ([...list.children]);
  const previous = new Map(items.map((li) => [li.dataset.user, li.dataset.score]));
  list.replaceChildren(
    ...(snap?.entries || []).map((e) => {
      const me = e.user_id === meId;
      const changed = previous.has(e.user_id) && previous.get(e.user_id) !== String(e.score);
      return h(
        "li",
        { class: `${me ? "me" : ""} ${changed ? "bump" : ""}`.trim(), dataset: { user: e.user_id, score: e.score } },
        h("span", { class: "rank" }, `#${e.rank}`),
        h("span", { class: "name" }, e.nickname, me ? h("span", { class: "you" }, " (you)") : null),
        h("span", { class: "score" }, fmt(e.score)),
      );
    }),
  );
  if (!snap?.entries?.length) list.append(h("li", { class: "empty muted" }, "No players yet"));
  if (countEl) countEl.textContent = snap ? `(${plural(snap.players ?? snap.entries.length, "player")})` : "";
}

/**
 * Draw the top three of `entries` as a podium into `list` (an <ol>).
 * @param {HTMLElement} list
 * @param {Entry[] | null | undefined} entries
 * @param {string | null | undefined} meId
 */
export function renderPodium(list, entries, meId) {
  const top = (entries || []).slice(0, 3);
  list.replaceChildren(
    ...top.map((e, i) =>
      h(
        "li",
        { class: `step step-${i + 1} ${e.user_id === meId ? "me" : ""}`.trim() },
        h("span", { class: "medal", "aria-hidden": "true" }, ["1st", "2nd", "3rd"][i]),
        h("span", { class: "name" }, e.nickname),
        h("span", { class: "score" }, `${fmt(e.score)} pts`),
        h("span", { class: "sr-only" }, `, place ${e.rank}`),
      ),
    ),
  );
  if (!top.length) list.append(h("li", { class: "muted" }, "Nobody played"));
}
