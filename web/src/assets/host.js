// Host view: sign up / sign in -> write a quiz -> open a live session -> show
// the join code, watch players arrive, start and advance, see each question's
// answer distribution -> podium and results CSV.

import { Api, describeError } from "./api.js";
import { Countdown, serverOffset } from "./clock.js";
import { $, announce, busy, fmt, h, plural, setError, showView } from "./dom.js";
import { Board, PlayerCount, renderBoard, renderPodium } from "./leaderboard.js";
import { mountQuizEditor } from "./quiz-form.js";
import { openRoom } from "./realtime.js";
import { load, save } from "./store.js";

const api = new Api("host");
const SESSION_KEY = "host.session";
const QUIZZES_KEY = "host.quizzes";

/**
 * A live session on screen.
 * @typedef {object} Live
 * @property {any} session the stored session (its id, code, title, state, quiz)
 * @property {HTMLElement} root
 * @property {Board} board
 * @property {Countdown} countdown
 * @property {any} question the open question's event, null between questions
 * @property {number} index
 * @property {PlayerCount} players
 * @property {ReturnType<typeof openRoom> | null} room
 * @property {ReturnType<typeof setTimeout> | null} [boardTimer] the pending HTTP read of the top 10
 * @property {number} [boardReadAt] when the last one was sent (ms)
 */

/**
 * The live session on screen (null on the other host views). Typed as a Live so
 * its fields are checked; its nullness is not (the views guard it themselves).
 * @type {Live}
 */
let live = /** @type {any} */ (null);

/** Entry point of /host. */
export function startHost() {
  api.onSignedOut = () => {
    closeSession({ forget: false });
    showAuth("Your sign-in expired. Sign in again.");
  };
  wire();
  adoptSessionLink();
  const session = load(SESSION_KEY);
  if (!api.token) showAuth();
  else if (session) enterSession(session);
  else showDash();
}

function wire() {
  $("#h-signin").addEventListener("submit", async (/** @type {any} */ e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const body = { username: form.elements.username.value.trim(), password: form.elements.password.value };
    if (!body.username || !body.password) return setError(form, "Enter your username and password.");
    setError(form, "");
    try {
      await busy(form, signIn(body));
    } catch (err) {
      setError(form, err.status === 401 ? "Wrong username or password." : describeError(err));
    }
  });

  $("#h-signup").addEventListener("submit", async (/** @type {any} */ e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const username = form.elements.username.value.trim();
    const password = form.elements.password.value;
    const nickname = form.elements.nickname.value.trim();
    if (!/^[A-Za-z0-9_.@-]{3,40}$/.test(username))
      return setError(form, "Username: 3 to 40 letters, digits or . _ @ -");
    if (password.length < 8) return setError(form, "Password: at least 8 characters.");
    setError(form, "");
    try {
      await busy(
        form,
        (async () => {
          await api.post("/api/iam/users", { username, password, ...(nickname ? { nickname } : {}) }, { auth: false });
          await signIn({ username, password });
        })(),
      );
    } catch (err) {
      setError(form, err.status === 409 ? "This username is taken." : describeError(err));
    }
  });

  $("#h-signout").addEventListener("click", () => {
    api.auth = null;
    save(SESSION_KEY, null);
    showAuth();
  });

  mountQuizEditor($("#h-quiz-form"), async (/** @type {any} */ body) => {
    let created;
    try {
      created = await api.post("/api/quiz/quizzes", body);
    } catch (err) {
      throw new Error(describeError(err), { cause: err });
    }
    rememberQuiz({ ...created, title: created.title || body.title, public: !!body.public });
    announce(`Quiz "${created.title || body.title}" created.`);
    await loadQuizzes(created.id);
  });

  $("#h-advance").addEventListener("click", advance);
  $("#h-csv").addEventListener("click", downloadCsv);
  $("#h-close-session").addEventListener("click", () => {
    closeSession();
    showDash();
  });
}

/**
 * `/host?session=ID&code=CODE[&quiz=QUIZ_ID]` runs a session opened elsewhere
 * (e.g. the demo session `./dev up` prints) once its host signs in.
 */
function adoptSessionLink() {
  const params = new URLSearchParams(location.search);
  const id = params.get("session");
  const code = params.get("code");
  if (!id || !code) return;
  save(SESSION_KEY, { id, code, quiz_id: params.get("quiz") || "", mode: "live", state: "lobby", title: "", question_count: 0 });
  history.replaceState(null, "", "/host");
}

/**
 * @param {any} body
 */
async function signIn(body) {
  const pair = await api.post("/api/iam/token", body, { auth: false });
  if (pair.user?.role !== "host") throw new Error("This account cannot host quizzes.");
  api.auth = pair;
  const session = load(SESSION_KEY);
  if (session) enterSession(session);
  else showDash();
}

function showAuth(message = "") {
  showView("h-auth");
  setError($("#h-signin"), message);
  $("#h-in-user").focus();
}

// ----------------------------------------------------------------------------- quizzes

function showDash() {
  showView("h-dash");
  $("[data-host-name]", $("#h-dash")).textContent = `Signed in as ${api.user?.nickname || api.user?.username || "host"}`;
  loadQuizzes();
}

function myQuizzes() {
  return load(QUIZZES_KEY, []).filter((/** @type {any} */ q) => q.owner === api.user?.id);
}

/**
 * @param {any} quiz
 */
function rememberQuiz(quiz) {
  const all = load(QUIZZES_KEY, []).filter((/** @type {any} */ q) => q.id !== quiz.id);
  all.unshift({ ...quiz, owner: api.user?.id });
  save(QUIZZES_KEY, all.slice(0, 50));
}

/** List this browser's quizzes plus the public ones; `focusId` gets focus. */
async function loadQuizzes(focusId = null) {
  const dash = $("#h-dash");
  const status = $("[data-quizzes-status]", dash);
  const quizzes = myQuizzes();
  try {
    const { items } = await api.get("/api/quiz/quizzes");
    for (const q of items) if (!quizzes.some((/** @type {any} */ m) => m.id === q.id)) quizzes.push({ ...q, public: true, listed: true });
  } catch (err) {
    status.textContent = `Public quizzes could not be loaded: ${describeError(err)}`;
  }
  if (!quizzes.length) status.textContent = "No quizzes yet: write one below.";
  else if (!status.textContent.startsWith("Public")) status.textContent = "";
  $("#h-quizzes").replaceChildren(
    ...quizzes.map((/** @type {any} */ q) =>
      h(
        "li",
        { dataset: { quiz: q.id } },
        h(
          "span",
          { class: "quiz-name" },
          q.title,
          h("span", { class: "muted small" }, ` · ${plural(q.question_count, "question")}${q.public ? " · public" : ""}`),
        ),
        h(
          "button",
          { type: "button", class: "btn primary", "aria-label": `Open a live session of ${q.title}`, onclick: (/** @type {any} */ e) => openSession(q, e.currentTarget) },
          "Open live session",
        ),
      ),
    ),
  );
  if (focusId) $(`#h-quizzes [data-quiz="${CSS.escape(focusId)}"] button`)?.focus();
}

/**
 * @param {any} quiz
 * @param {HTMLButtonElement} button
 */
async function openSession(quiz, button) {
  const dash = $("#h-dash");
  setError(dash, "");
  button.disabled = true;
  try {
    const hold = $("#h-hold")?.checked === true;
    const s = await api.post("/api/quiz/sessions", { quiz_id: quiz.id, mode: "live", hold_results: hold });
    const session = { ...s, quiz_id: quiz.id, title: quiz.title, question_count: quiz.question_count };
    save(SESSION_KEY, session);
    enterSession(session);
  } catch (err) {
    setError(dash, err.status === 403 ? "Only the quiz's author can open a session of it." : describeError(err));
  } finally {
    button.disabled = false;
  }
}

// ----------------------------------------------------------------------------- live session

function closeSession({ forget = true } = {}) {
  if (live) {
    clearTimeout(live.boardTimer ?? undefined);
    live.room?.close();
    live.countdown.stop();
  }
  live = /** @type {any} */ (null);
  if (forget) save(SESSION_KEY, null);
}

/**
 * @param {any} session
 */
async function enterSession(session) {
  closeSession({ forget: false });
  const root = $("#h-session");
  live = {
    session,
    root,
    board: new Board(),
    countdown: new Countdown($(".countdown", root)),
    question: null,
    index: -1,
    players: new PlayerCount(),
    room: /** @type {ReturnType<typeof openRoom> | null} */ (null),
  };
  showView("h-session");
  $("#h-s-title").textContent = session.title || "Live quiz";
  $("[data-code]", root).textContent = session.code;
  $("[data-join-url]", root).textContent = `${location.host}/join/${session.code}`;
  $("#h-question").hidden = true;
  $("#h-closed").hidden = true;
  $("#h-podium").hidden = true;
  setError(root, "");
  drawBoard();
  setPlayers(0);
  setState(session.state || "lobby");

  const current = live;
  if (api.tokenTtl() < 30) await api.refresh();
  if (current !== live) return; // left while the token was renewed
  if (!session.title && session.quiz_id) describeQuiz(current);
  const mine = (/** @type {(ev: any) => unknown} */ fn) => (/** @type {any} */ ev) => current === live && fn(ev);
  live.room = openRoom(api, session.id, {
    joined: mine(onJoined),
    refused: mine((/** @type {string} */ error) => {
      closeSession();
      showDash();
      setError($("#h-dash"), `Could not reopen the session: ${error}`);
    }),
    leaderboard: mine(onLeaderboard),
    question: mine((/** @type {any} */ ev) => showQuestion(ev, serverOffset(ev.server_time_ms))),
    question_closed: mine(onQuestionClosed),
    session_state: mine((/** @type {any} */ ev) => {
      if (ev.players !== live.board.snapshot?.players) refreshBoardSoon();
      setPlayers(ev.players, ev.version);
      if (typeof ev.question_index === "number" && ev.question_index >= 0) live.index = ev.question_index;
      setState(ev.state);
    }),
    session_ended: mine((/** @type {any} */ ev) => {
      live.board.finish(ev.entries, ev.players);
      drawBoard();
      setState("ended");
    }),
  });
}

/**
 * Title and question count of a session adopted from a link (its host may read the quiz).
 * @param {Live} current
 */
async function describeQuiz(current) {
  try {
    const quiz = await api.get(`/api/quiz/quizzes/${encodeURIComponent(current.session.quiz_id)}`);
    if (current !== live) return;
    Object.assign(live.session, { title: quiz.title, question_count: quiz.questions.length });
    save(SESSION_KEY, live.session);
    $("#h-s-title").textContent = quiz.title;
    $("#h-advance").textContent = advanceLabel();
  } catch {
    // Not this host's quiz: the room refuses the join and says so.
  }
}

/**
 * @param {any} ack
 */
function onJoined(ack) {
  if (ack.leaderboard) onLeaderboard(ack.leaderboard);
  if (ack.question) showQuestion(ack.question, serverOffset(ack.question.server_time_ms));
  if (ack.state) setState(ack.state);
}

/**
 * @param {any} snap
 */
function onLeaderboard(snap) {
  if (!live.board.accept(snap)) return;
  drawBoard();
  setPlayers(snap.players, snap.version);
}

/**
 * Players arriving in the lobby change the count before any score moves: read
 * the top 10 over HTTP so the host sees who is here. One host per session, at
 * most one read a second, so this stays cheap however many join.
 */
function refreshBoardSoon() {
  if (live.boardTimer) return;
  const current = live;
  const wait = Math.max(0, 1000 - (Date.now() - (live.boardReadAt || 0)));
  live.boardTimer = setTimeout(async () => {
    current.boardReadAt = Date.now();
    try {
      const snap = await api.get(`/api/leaderboard/sessions/${encodeURIComponent(current.session.id)}/top?limit=10`);
      if (current === live) onLeaderboard(snap);
    } catch {
      // The next event or read fills it in.
    } finally {
      current.boardTimer = null;
    }
  }, wait);
}

function drawBoard() {
  renderBoard($("[data-board]", live.root), live.board, null, $("[data-board-players]", live.root));
  if (live.session.state === "ended") renderPodium($("[data-podium]", live.root), live.board.snapshot?.entries, null);
}

/**
 * Show the player count, if it is the newest (see PlayerCount).
 * @param {number} n
 * @param {number} [version]
 */
function setPlayers(n, version = 0) {
  if (!live.players.accept(n, version)) return;
  $("[data-h-players]", live.root).textContent = String(n);
  $("[data-h-players-word]", live.root).textContent = n === 1 ? "player" : "players";
}

/**
 * @param {string} state
 */
function setState(state) {
  const s = live.session;
  if (s.state !== state) {
    s.state = state;
    save(SESSION_KEY, s);
    if (state === "ended") announce("The quiz has ended.");
  }
  /** @type {Record<string, string>} */
  const labels = { lobby: "Waiting for players", running: "Running", ended: "Ended" };
  $("[data-h-state]", live.root).textContent = labels[state] || state;
  $("[data-join]", live.root).classList.toggle("compact", state !== "lobby");
  $("[data-join]", live.root).hidden = state === "ended";
  const advanceBtn = $("#h-advance");
  advanceBtn.hidden = state === "ended";
  advanceBtn.textContent = advanceLabel();
  $("#h-csv").hidden = state !== "ended";
  $("#h-podium").hidden = state !== "ended";
  if (state === "ended") {
    live.countdown.close();
    $("#h-question").hidden = true;
    renderPodium($("[data-podium]", live.root), live.board.snapshot?.entries, null);
  }
}

function questionCount() {
  return live.question?.count || live.session.question_count || 0;
}

function advanceLabel() {
  if (live.session.state === "lobby") return "Start";
  const count = questionCount();
  return count && live.index >= count - 1 ? "Finish and show podium" : "Next question";
}

async function advance() {
  const button = $("#h-advance");
  setError(live.root, "");
  button.disabled = true;
  const current = live;
  try {
    const res = await api.post(`/api/quiz/sessions/${encodeURIComponent(live.session.id)}/advance`);
    if (current !== live) return;
    live.index = res.question_index;
    setState(res.state);
  } catch (err) {
    if (current === live) setError(live.root, describeError(err));
  } finally {
    button.disabled = false;
  }
}

/**
 * @param {any} q
 * @param {number} offset
 */
function showQuestion(q, offset) {
  live.question = q;
  live.index = q.index;
  const panel = $("#h-question");
  panel.hidden = false;
  $("[data-q-index]", panel).textContent = `Question ${q.index + 1} of ${q.count}`;
  $("[data-q-text]", panel).textContent = q.text;
  $("[data-choices]", panel).replaceChildren(
    ...q.choices.map((/** @type {string} */ text, /** @type {number} */ i) =>
      h("li", { class: `choice c${i}` }, h("span", { class: "key", "aria-hidden": "true" }, String(i + 1)), h("span", { class: "text" }, text)),
    ),
  );
  live.countdown.start(q.deadline_ms, q.time_limit_s, offset);
  $("#h-advance").textContent = advanceLabel();
  if (live.session.state === "lobby") setState("running");
}

/**
 * @param {any} ev
 */
function onQuestionClosed(ev) {
  const q = live.question?.question_id === ev.question_id ? live.question : null;
  if (q) {
    live.countdown.close();
    [...$("#h-question [data-choices]").children].forEach((li, i) => {
      li.classList.toggle("correct", i === ev.answer);
      li.classList.toggle("dim", i !== ev.answer);
    });
  }
  const choices = q?.choices || ev.distribution.map((/** @type {unknown} */ _, /** @type {number} */ i) => `Choice ${i + 1}`);
  const total = ev.distribution.reduce((/** @type {number} */ a, /** @type {number} */ b) => a + b, 0);
  const panel = $("#h-closed");
  $("[data-closed-index]", panel).textContent = String((q?.index ?? ev.index ?? 0) + 1);
  $("[data-distribution]", panel).replaceChildren(
    ...choices.map((/** @type {string} */ text, /** @type {number} */ i) => {
      const n = ev.distribution[i] || 0;
      const right = i === ev.answer;
      const li = h(
        "li",
        { class: `dist c${i} ${right ? "correct" : ""}`.trim() },
        h("span", { class: "label" }, text, right ? h("span", { class: "tick" }, " ✓ right answer") : null),
        h("span", { class: "bar", "aria-hidden": "true" }, h("span")),
        h("span", { class: "n" }, `${fmt(n)}`),
      );
      // Through the CSSOM: a style attribute would be refused by the page's CSP (style-src 'self').
      li.style.setProperty("--share", String(total ? n / total : 0));
      return li;
    }),
  );
  panel.hidden = false;
}

async function downloadCsv() {
  const button = $("#h-csv");
  setError(live.root, "");
  button.disabled = true;
  try {
    const res = await api.get(`/api/quiz/sessions/${encodeURIComponent(live.session.id)}/results?format=csv`, { raw: true });
    const blob = await res.blob();
    const url = URL.createObjectURL(blob);
    const a = h("a", { href: url, download: `quiz-results-${live.session.code}.csv`, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  } catch (err) {
    setError(live.root, describeError(err));
  } finally {
    button.disabled = false;
  }
}
