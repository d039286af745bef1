// The session's socket.io room: connect with the access token, join the room
// on every (re)connect and hand the join ack to the page so it can redraw
// everything it may have missed while offline.

import { io } from "./socket.io.esm.min.js";
import { setNetStatus } from "./dom.js";

const EVENTS = ["leaderboard", "question", "question_closed", "session_state", "session_ended"];

/**
 * Open the room of `sessionId` as the identity of `api`.
 * `handlers`: {joined(ack), refused(error), leaderboard(ev), question(ev),
 * question_closed(ev), session_state(ev), session_ended(ev)}.
 * Returns {close()}.
 * @param {import("./api.js").Api} api
 * @param {string} sessionId
 * @param {Record<string, ((payload: any) => void) | undefined>} handlers
 */
export function openRoom(api, sessionId, handlers) {
  // Long-polling requests must reach the same socket.io process: nginx hashes on ?sticky.
  const sticky = Math.random().toString(36).slice(2, 12);
  /** @type {string | null} */
  let triedToken = null;
  const socket = io({
    path: "/socket.io",
    transports: ["websocket", "polling"],
    tryAllTransports: true,
    query: { sticky },
    // A function, so every reconnection sends the token that is current then.
    auth: (cb) => {
      triedToken = api.token;
      cb({ token: triedToken });
    },
    reconnectionDelay: 400,
    reconnectionDelayMax: 3000,
    timeout: 8000,
  });
  let closed = false;
  let refusals = 0;
  let lastRefresh = 0;

  for (const name of EVENTS) {
    socket.on(name, (payload) => {
      if (payload?.session_id && payload.session_id !== sessionId) return;
      handlers[name]?.(payload);
    });
  }

  const join = () => {
    socket.timeout(8000).emit("join", { session_id: sessionId }, (/** @type {Error | null} */ err, /** @type {any} */ ack) => {
      if (closed) return;
      if (err) {
        // No ack in time: try again while the connection is up.
        if (socket.connected) setTimeout(join, 1000);
        return;
      }
      if (ack && ack.ok === false) {
        // A temporary refusal says when to try again (`retry_after_ms`, spread by
        // the server); older servers only said "retry" / "rate limited" in the text.
        // Anything else (unknown session, not a participant) is final.
        const after = Number.isFinite(ack.retry_after_ms)
          ? ack.retry_after_ms
          : /retry|rate limit/i.test(ack.error || "")
            ? 1000
            : null;
        if (after !== null) setTimeout(() => socket.connected && join(), Math.max(after, 50));
        else handlers.refused?.(ack.error || "refused");
      } else handlers.joined?.(ack || {});
    });
  };

  socket.on("connect", () => {
    refusals = 0;
    setNetStatus("connected");
    join();
  });

  socket.on("disconnect", (reason) => {
    if (closed) return;
    setNetStatus("offline");
    // The server dropped us on purpose (e.g. token expired): reconnect by hand.
    if (reason === "io server disconnect") reconnectWithFreshToken();
  });

  socket.on("connect_error", () => {
    if (closed) return;
    setNetStatus("offline");
    // socket.active is false when the server refused the connection (bad or
    // expired token); socket.io then stops retrying on its own.
    if (!socket.active) reconnectWithFreshToken();
  });

  async function reconnectWithFreshToken() {
    refusals += 1;
    if (Date.now() - lastRefresh > 20000 || api.tokenTtl() < 30) {
      lastRefresh = Date.now();
      // Skipped when another call already replaced the refused token.
      await api.refresh(triedToken);
    }
    if (!api.token) {
      handlers.refused?.("signed out");
      return;
    }
    setTimeout(() => !closed && socket.connect(), Math.min(400 * 2 ** refusals, 8000));
  }

  // Back online: try now rather than when the reconnection backoff says so
  // (connect() alone does nothing while a reconnection is scheduled).
  const online = () => {
    if (closed || socket.connected) return;
    socket.disconnect();
    socket.connect();
  };
  window.addEventListener("online", online);
  setNetStatus("connecting");

  return {
    socket,
    close() {
      closed = true;
      window.removeEventListener("online", online);
      if (socket.connected) socket.emit("leave", { session_id: sessionId });
      socket.disconnect();
      setNetStatus("");
    },
  };
}
