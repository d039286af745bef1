// Player view: nickname -> join (code or public quiz) -> questions, live
// leaderboard, own rank -> podium. Live sessions follow the host through
// socket.io events; self-paced ones fetch the next question over HTTP.

import { Api, describeError } from "./api.js";
import { Countdown, serverOffset } from "./clock.js";
import { $, announce, busy, fmt, h, plural, setError, showView } from "./dom.js";
import { Board, PlayerCount, renderBoard, renderPodium } from "./leaderboard.js";
import { openRoom } from "./realtime.js";
import { load, save } from "./store.js";

const api = new Api("player");
const SESSION_KEY = "player.session";
const ANSWERS_KEY = "player.answers";
const MAX_KEPT_ANSWERS = 200;

/**
 * A game in progress.
 * @typedef {object} Game
 * @property {any} session the stored session (its id, code, title, mode)
 * @property {HTMLElement} root
 * @property {Board} board
 * @property {Countdown} countdown
 * @property {any} question the question on screen, null between questions
 * @property {number} offset server clock minus local clock (ms)
 * @property {boolean} answering
 * @property {boolean} finished
 * @property {any} me this player's own rank and score, when known
 * @property {number} meSeq
 * @property {PlayerCount} players the player count on screen
 * @property {ReturnType<typeof openRoom> | null} room
 */

/**
 * The game in progress (null on the name and join views). Typed as a Game so its
 * fields are checked; its nullness is not (the views guard it themselves).
 * @type {Game}
 */
let game = /** @type {any} */ (null);

/** Entry point: `code` comes from a /join/CODE link. */
export function startPlayer({ code = "" } = {}) {
  api.onSignedOut = () => {
    leaveGame();
    showName("Your guest pass expired. Enter a nickname to play on.");
  };
  wireForms();
  document.addEventListener("keydown", onKey);
  const session = load(SESSION_KEY);
  if (!api.token) showName("", code);
  else if (session && (!code || session.code === code)) enterGame(session);
  else if (code) join({ code }).catch((err) => showJoin(code, joinError(err)));
  else showJoin();
}

// ----------------------------------------------------------------------------- name and join

function wireForms() {
  $("#p-name-form").addEventListener("submit", async (/** @type {any} */ e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const nickname = form.elements.nickname.value.trim();
    if (!nickname) return setError(form, "Enter a nickname (1–24 characters).");
    setError(form, "");
    try {
      const pair = await busy(form, api.post("/api/iam/guests", { nickname }, { auth: false }));
      api.auth = pair;
      const code = form.dataset.code;
      if (code) await join({ code }).catch((err) => showJoin(code, joinError(err)));
      else showJoin();
    } catch (err) {
      setError(form, describeError(err));
    }
  });

  $("#p-join-form").addEventListener("submit", async (/** @type {any} */ e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const code = normaliseCode(form.elements.code.value);
    if (!code) return setError(form, "Enter the join code shown by the host.");
    setError(form, "");
    try {
      await busy(form, join({ code }));
    } catch (err) {
      setError(form, joinError(err));
    }
  });

  $("#p-rename").addEventListener("click", () => {
    api.auth = null;
    showName();
  });
  $("#p-public-refresh").addEventListener("click", () => loadPublicQuizzes());
  $("#p-next").addEventListener("click", () => nextSelfPacedQuestion());
  $("#p-again").addEventListener("click", () => {
    leaveGame();
    showJoin();
  });
  $("#p-leave").addEventListener("click", () => {
    leaveGame();
    showJoin();
  });
}

function showName(message = "", code = "") {
  const view = showView("p-name");
  const form = $("#p-name-form");
  form.dataset.code = code;
  setError(form, message);
  $("#p-nickname").focus();
  return view;
}

function showJoin(code = "", message = "") {
  showView("p-join");
  $("[data-nickname]", $("#p-join")).textContent = api.user?.nickname || "player";
  const form = $("#p-join-form");
  form.elements.code.value = code;
  setError(form, message);
  loadPublicQuizzes();
}

async function loadPublicQuizzes() {
  const list = $("#p-public");
  const status = $("[data-public-status]", $("#p-join"));
  status.textContent = "Loading quizzes…";
  try {
    const { items } = await api.get("/api/quiz/quizzes");
    const playable = items.filter((/** @type {any} */ q) => q.open_session_id);
    status.textContent = playable.length ? "" : "No public quizzes yet.";
    list.replaceChildren(
      ...playable.map((/** @type {any} */ q) =>
        h(
          "li",
          {},
          h("span", { class: "quiz-name" }, q.title, h("span", { class: "muted small" }, ` · ${plural(q.question_count, "question")}`)),
          h(
            "button",
            {
              type: "button",
              class: "btn",
              "aria-label": `Play ${q.title}`,
              onclick: (/** @type {any} */ e) =>
                busy(e.currentTarget.parentElement, join({ session_id: q.open_session_id }, q.title)).catch((err) =>
                  setError($("#p-join-form"), joinError(err)),
                ),
            },
            "Play",
          ),
        ),
      ),
    );
  } catch (err) {
    status.textContent = `Could not load the quiz list: ${describeError(err)}`;
  }
}

/**
 * @param {string} raw
 */
function normaliseCode(raw) {
  return String(raw || "").replace(/\s+/g, "").toUpperCase();
}

/**
 * @param {any} err
 */
function joinError(err) {
  if (err.status === 404) return "No quiz session has this code. Check it and try again.";
  if (err.status === 409) return "This session is not open any more.";
  return describeError(err);
}

/**
 * Join by `{code}` or `{session_id}` and open the game view.
 * @param {any} body
 */
async function join(body, title = "") {
  const res = await api.post("/api/quiz/sessions/join", body);
  const session = { ...res, title: res.title || title || "Quiz", code: body.code || "" };
  save(SESSION_KEY, session);
  await enterGame(session);
}

// ----------------------------------------------------------------------------- the game

function leaveGame() {
  if (!game) return;
  game.room?.close();
  game.countdown.stop();
  game = /** @type {any} */ (null);
  save(SESSION_KEY, null);
}

/**
 * @param {any} session
 */
async function enterGame(session) {
  if (game) leaveGame();
  const root = $("#p-game");
  game = {
    session,
    root,
    board: new Board(),
    countdown: new Countdown($(".countdown", root)),
    question: null,
    offset: 0,
    answering: false,
    finished: false,
    me: null,
    meSeq: 0,
    players: new PlayerCount(),
    room: /** @type {ReturnType<typeof openRoom> | null} */ (null),
  };
  save(SESSION_KEY, session);
  showView("p-game");
  $("#p-title").textContent = session.title || "Quiz";
  for (const id of ["p-lobby", "p-question", "p-done", "p-next"]) $(`#${id}`).hidden = true;
  $(".board-card", root).hidden = false;
  setFeedback("", []);
  renderBoard($("[data-board]", root), game.board, api.user?.id, $("[data-board-players]", root));
  renderMe();

  const current = game;
  if (api.tokenTtl() < 30) await api.refresh();
  if (current !== game) return; // left while the token was renewed
  current.room = openRoom(api, session.session_id, {
    joined: (ack) => current === game && onJoined(ack),
    refused: (error) => current === game && onRefused(error),
    leaderboard: (ev) => current === game && onLeaderboard(ev),
    question: (ev) => current === game && isLive() && showQuestion(ev, serverOffset(ev.server_time_ms)),
    question_closed: (ev) => current === game && onQuestionClosed(ev),
    session_state: (ev) => current === game && onSessionState(ev),
    session_ended: (ev) => current === game && onSessionEnded(ev),
  });
  refreshMe();
  if (!isLive()) nextSelfPacedQuestion();
}

const isLive = () => game?.session.mode === "live";

/**
 * @param {any} ack
 */
function onJoined(ack) {
  if (ack.leaderboard) onLeaderboard(ack.leaderboard);
  if (ack.state) setState(ack.state);
  refreshMe();
  if (!isLive()) return;
  if (ack.state === "lobby") showLobby();
  else if (ack.state === "running") syncLiveQuestion();
  else if (ack.state === "ended") showEnded();
}

/**
 * @param {string} error
 */
function onRefused(error) {
  const session = game?.session;
  leaveGame();
  if (!api.token) return showName("Your guest pass expired. Enter a nickname to play on.");
  showJoin(session?.code || "", `Could not rejoin "${session?.title || "the quiz"}": ${error}`);
}

/**
 * @param {string} state
 */
function setState(state) {
  if (!game || game.session.state === state) return;
  game.session.state = state;
  save(SESSION_KEY, game.session);
}

/**
 * @param {any} snap
 */
function onLeaderboard(snap) {
  if (!game.board.accept(snap)) return;
  const root = game.root;
  renderBoard($("[data-board]", root), game.board, api.user?.id, $("[data-board-players]", root));
  const mine = game.board.entryOf(api.user?.id);
  if (mine) updateMe({ rank: mine.rank, score: mine.score, players: snap.players });
  else if (game.me) updateMe({ players: snap.players });
  setPlayers(snap.players, snap.version);
  if (game.finished) renderPodium($("[data-podium]", root), snap.entries, api.user?.id);
}

/**
 * @param {any} ev
 */
function onSessionState(ev) {
  setPlayers(ev.players, ev.version);
  if (isLive() && ev.state === "running" && ev.question_index > (game.question?.index ?? -1)) {
    // The `question` event travels with this one; only if it went missing, ask once.
    const current = game;
    setTimeout(() => {
      if (current === game && ev.question_index > (game.question?.index ?? -1)) syncLiveQuestion();
    }, 1500);
  }
  if (ev.state === "ended" && game.session.state !== "ended") {
    setState("ended");
    showEnded();
  } else setState(ev.state);
}

/**
 * @param {any} ev
 */
function onSessionEnded(ev) {
  game.board.finish(ev.entries, ev.players);
  renderBoard($("[data-board]", game.root), game.board, api.user?.id, $("[data-board-players]", game.root));
  setState("ended");
  showEnded();
}

/**
 * Show the player count, if it is the newest (see PlayerCount).
 * @param {number} n
 * @param {number} [version]
 */
function setPlayers(n, version = 0) {
  if (!game.players.accept(n, version)) return;
  $("[data-players]", game.root).textContent = `${plural(n, "player")} here.`;
  // Joins change the count before any leaderboard event says so.
  if (n > (game.board.snapshot?.players ?? 0)) $("[data-board-players]", game.root).textContent = `(${plural(n, "player")})`;
  if (game.me?.players != null && n > game.me.players) updateMe({ players: n });
}

function showLobby() {
  game.countdown.stop();
  $("#p-question").hidden = true;
  $("#p-lobby").hidden = false;
  // Joins do not move the board (only answers do), so it would list a stale few.
  $(".board-card", game.root).hidden = true;
}

/** Live: ask for the open question (with `answered`) after a (re)join. */
async function syncLiveQuestion() {
  const current = game;
  try {
    const { data, sentAt, receivedAt } = await api.get(questionPath(), { timed: true });
    if (current === game) showQuestion(data, serverOffset(data.server_time_ms, sentAt, receivedAt));
  } catch (err) {
    if (current !== game) return;
    if (err.status === 409) {
      if (!game.question) {
        $("#p-lobby").hidden = true;
        setFeedback("wait", ["Waiting for the next question…"]);
      }
    } else setFeedback("error", [describeError(err)]);
  }
}

/** Self-paced: fetch this player's next question; 409 means all are answered. */
async function nextSelfPacedQuestion() {
  const current = game;
  $("#p-next").hidden = true;
  try {
    const { data, sentAt, receivedAt } = await api.get(questionPath(), { timed: true });
    if (current !== game) return;
    const offset = serverOffset(data.server_time_ms, sentAt, receivedAt);
    // An expired, unanswered question handed back again would loop forever.
    if (data.question_id === game.question?.question_id && data.deadline_ms - offset <= Date.now()) showFinished();
    else showQuestion(data, offset);
  } catch (err) {
    if (current !== game) return;
    if (err.status === 409) showFinished();
    else {
      setFeedback("error", [describeError(err)]);
      showNextButton("Try again");
    }
  }
}

const questionPath = () => `/api/quiz/sessions/${encodeURIComponent(game.session.session_id)}/question`;

/**
 * @param {any} q
 * @param {number} offset
 */
function showQuestion(q, offset) {
  const same = game.question?.question_id === q.question_id;
  game.question = { ...q, closed: same ? game.question.closed : false };
  game.offset = offset;
  game.finished = false;
  $("#p-lobby").hidden = true;
  $("#p-done").hidden = true;
  $("#p-next").hidden = true;
  $(".board-card", game.root).hidden = false;
  const panel = $("#p-question");
  panel.hidden = false;
  if (!same) {
    $("[data-q-index]", panel).textContent = `Question ${q.index + 1} of ${q.count}`;
    $("[data-q-text]", panel).textContent = q.text;
    $("[data-choices]", panel).replaceChildren(
      ...q.choices.map((/** @type {string} */ text, /** @type {number} */ i) =>
        h(
          "button",
          { type: "button", class: `choice c${i}`, "aria-pressed": "false", dataset: { i }, onclick: () => choose(i) },
          h("span", { class: "key", "aria-hidden": "true" }, String(i + 1)),
          h("span", { class: "text" }, text),
          h("span", { class: "count", "aria-hidden": "true" }),
        ),
      ),
    );
    setFeedback("", []);
    $("[data-q-text]", panel).focus({ preventScroll: false });
  }
  if (game.question.closed) return;
  game.countdown.start(q.deadline_ms, q.time_limit_s, offset, onTimeUp);
  const record = storedAnswers()[answerKey(q.question_id)];
  if (record) showAnswered(record);
  else if (q.answered) {
    lockChoices();
    setFeedback("wait", ["You already answered this question. Waiting for the others…"]);
  }
}

function onTimeUp() {
  const q = game?.question;
  if (!q || storedAnswers()[answerKey(q.question_id)]) return;
  lockChoices();
  if (!game.answering) setFeedback("late", ["Time's up!"]);
  if (!isLive()) showNextButton();
}

function choiceButtons() {
  return [...$("#p-question [data-choices]").children];
}

function lockChoices() {
  for (const b of choiceButtons()) b.disabled = true;
}

/**
 * @param {number} i
 */
async function choose(i) {
  const q = game?.question;
  if (!q || q.closed || game.answering || q.answered || i >= q.choices.length) return;
  if (storedAnswers()[answerKey(q.question_id)] || game.countdown.remainingMs() <= 0) return;
  game.answering = true;
  const buttons = choiceButtons();
  buttons.forEach((b, j) => {
    b.disabled = true;
    b.setAttribute("aria-pressed", String(j === i));
    b.classList.toggle("chosen", j === i);
  });
  setFeedback("wait", ["Answer sent…"]);
  const current = game;
  try {
    const result = await sendAnswer(q.question_id, i);
    if (current !== game) return;
    const record = { choice: i, result };
    rememberAnswer(q.question_id, record);
    showAnswered(record);
    if (!result.held) updateMe({ rank: result.rank, score: result.score });
    refreshMe();
  } catch (err) {
    if (current !== game) return;
    if (err.status === 409) setFeedback("late", ["Too late: this question has closed."]);
    else setFeedback("error", [describeError(err)]);
    if (!isLive()) showNextButton();
  } finally {
    if (current === game) game.answering = false;
  }
}

/**
 * POST the answer; a retry after a lost reply is safe (the first answer counts).
 * @param {string} questionId
 * @param {number} choice
 */
async function sendAnswer(questionId, choice) {
  const path = `/api/quiz/sessions/${encodeURIComponent(game.session.session_id)}/answers`;
  for (let attempt = 0; ; attempt++) {
    try {
      return await api.post(path, { question_id: questionId, choice });
    } catch (err) {
      const transient = err.status === 0 || err.status >= 502;
      if (!transient || attempt >= 3) throw err;
      await new Promise((r) => setTimeout(r, 300 * 2 ** attempt));
    }
  }
}

/** @param {{choice: number, result: any}} answered the choice and the server's reply */
function showAnswered({ choice, result }) {
  const buttons = choiceButtons();
  buttons.forEach((b, j) => {
    b.disabled = true;
    b.setAttribute("aria-pressed", String(j === choice));
    b.classList.toggle("chosen", j === choice);
  });
  if (result.held) {
    // The session holds results until the question closes (hold_results).
    setFeedback("wait", ["Answer locked in.", "Results when the question closes…"]);
    return;
  }
  buttons[choice]?.classList.add(result.correct ? "right" : "wrong");
  const lines = [
    result.correct ? `Correct! +${fmt(result.points)} points` : "Wrong answer: 0 points",
    `Score ${fmt(result.score)} · rank #${result.rank}${result.streak > 1 ? ` · streak ${result.streak}` : ""}`,
  ];
  if (isLive() && !game.question.closed) lines.push("Waiting for the others…");
  setFeedback(result.correct ? "right" : "wrong", lines);
  if (!isLive()) {
    game.countdown.stop();
    showNextButton();
  }
}

/**
 * @param {any} ev
 */
function onQuestionClosed(ev) {
  const q = game.question;
  if (!q || ev.question_id !== q.question_id) return;
  q.closed = true;
  game.countdown.close();
  const buttons = choiceButtons();
  const total = (ev.distribution || []).reduce((/** @type {number} */ a, /** @type {number} */ b) => a + b, 0);
  buttons.forEach((b, j) => {
    b.disabled = true;
    b.classList.toggle("correct", j === ev.answer);
    b.classList.toggle("dim", j !== ev.answer);
    const n = ev.distribution?.[j] ?? 0;
    $(".count", b).textContent = String(n);
    b.style.setProperty("--share", total ? n / total : 0);
    b.setAttribute("aria-label", `${q.choices[j]}${j === ev.answer ? " (right answer)" : ""}, ${plural(n, "answer")}`);
  });
  const record = storedAnswers()[answerKey(q.question_id)];
  if (record?.result.held) revealHeld(q, record, ev);
  else showClosed(q, record, ev);
}

/**
 * @param {any} q
 * @param {any} record
 * @param {any} ev
 */
function showClosed(q, record, ev) {
  const lines = [`Right answer: ${q.choices[ev.answer] ?? "?"}`];
  const correct = record ? (record.result.held ? record.choice === ev.answer : record.result.correct) : false;
  if (record?.result.held) lines.unshift(correct ? "Correct!" : "Wrong answer: 0 points");
  else if (record) {
    const r = record.result;
    lines.unshift(r.correct ? `Correct! +${fmt(r.points)} points` : "Wrong answer: 0 points");
  } else lines.unshift("No answer in time.");
  setFeedback(correct ? "right" : record ? "wrong" : "late", lines);
}

/**
 * A held result: the same answer again (a repeat, never scored twice) now returns the full reply.
 * @param {any} q
 * @param {any} record
 * @param {any} ev
 */
async function revealHeld(q, record, ev) {
  showClosed(q, record, ev);
  const current = game;
  try {
    const result = await sendAnswer(q.question_id, record.choice);
    if (current !== game || result.held) return;
    record.result = result;
    rememberAnswer(q.question_id, record);
    updateMe({ rank: result.rank, score: result.score });
    showClosed(q, record, ev);
  } catch {
    // The board's next `leaderboard` event still shows the score.
  }
}

function showNextButton(label = "Next question") {
  const b = $("#p-next");
  b.textContent = label;
  b.hidden = false;
  b.focus();
}

function showFinished() {
  $(".board-card", game.root).hidden = false;
  game.finished = true;
  game.countdown.stop();
  $("#p-question").hidden = true;
  $("#p-next").hidden = true;
  $("#p-lobby").hidden = true;
  $("[data-done-title]", game.root).textContent = "You finished the quiz!";
  renderPodium($("[data-podium]", game.root), game.board.snapshot?.entries, api.user?.id);
  $("#p-done").hidden = false;
  setFeedback("", []);
  refreshMe();
  $("#p-again").focus();
}

function showEnded() {
  $(".board-card", game.root).hidden = false;
  game.finished = true;
  game.countdown.stop();
  $("#p-question").hidden = true;
  $("#p-lobby").hidden = true;
  $("#p-next").hidden = true;
  $("[data-done-title]", game.root).textContent = "Final results";
  renderPodium($("[data-podium]", game.root), game.board.snapshot?.entries, api.user?.id);
  $("#p-done").hidden = false;
  setFeedback("", []);
  refreshMe();
  announce("The quiz has ended.");
}

// ----------------------------------------------------------------------------- own rank

/** Read this player's rank and score (also outside the top 10). */
async function refreshMe() {
  const current = game;
  const user = api.user;
  if (!current || !user) return;
  const seq = ++current.meSeq;
  try {
    const path = `/api/leaderboard/sessions/${encodeURIComponent(current.session.session_id)}/players/${encodeURIComponent(user.id)}`;
    const me = await api.get(path);
    // Only the newest reply counts: an older one may land later.
    if (current === game && seq === current.meSeq) updateMe(me);
  } catch {
    // The board may not know a player who just joined; the next event fills it in.
  }
}

/**
 * @param {any} patch
 */
function updateMe(patch) {
  game.me = { ...(game.me || {}), ...Object.fromEntries(Object.entries(patch).filter(([, v]) => v != null)) };
  renderMe();
}

function renderMe() {
  const me = game?.me;
  const nick = api.user?.nickname || "You";
  const el = $("[data-me]", $("#p-game"));
  if (!me || !me.rank) {
    el.textContent = nick;
    $("[data-done-me]", $("#p-game")).textContent = "";
    return;
  }
  const of = me.players ? ` of ${me.players}` : "";
  el.replaceChildren(
    h("span", { class: "nick" }, nick),
    h("span", { class: "pill", "data-my-rank": me.rank }, `#${me.rank}${of}`),
    h("span", { class: "pill", "data-my-score": me.score }, `${fmt(me.score)} pts`),
  );
  $("[data-done-me]", $("#p-game")).textContent = `You placed #${me.rank}${of} with ${fmt(me.score)} points.`;
}

// ----------------------------------------------------------------------------- small parts

/**
 * @param {string} kind
 * @param {string[]} lines
 */
function setFeedback(kind, lines) {
  const el = $("#p-feedback");
  el.className = `feedback ${kind}`.trim();
  el.replaceChildren(...lines.map((/** @type {string} */ l, /** @type {number} */ i) => h(i === 0 ? "strong" : "span", {}, l)));
  el.hidden = lines.length === 0;
}

/**
 * @param {string} questionId
 */
function answerKey(questionId) {
  return `${game.session.session_id}:${questionId}`;
}

function storedAnswers() {
  return load(ANSWERS_KEY, {});
}

/**
 * @param {string} questionId
 * @param {any} record
 */
function rememberAnswer(questionId, record) {
  const all = storedAnswers();
  all[answerKey(questionId)] = record;
  const keys = Object.keys(all);
  for (const k of keys.slice(0, Math.max(0, keys.length - MAX_KEPT_ANSWERS))) delete all[k];
  save(ANSWERS_KEY, all);
}

/**
 * Keys 1-6 choose an answer (not while typing in a field).
 * @param {KeyboardEvent} e
 */
function onKey(e) {
  if (!game || $("#p-game").hidden || e.ctrlKey || e.metaKey || e.altKey) return;
  if (/** @type {Element | null} */ (e.target)?.closest?.("input, textarea, select")) return;
  const n = Number(e.key);
  if (Number.isInteger(n) && n >= 1 && n <= 6 && !$("#p-question").hidden) {
    e.preventDefault();
    choose(n - 1);
  }
}
