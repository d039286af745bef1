// Browser scenario (run by tests/test_browser.py): a host and three players
// play a live session to the end in Chromium and see the same leaderboard; one
// player reloads mid-game and continues; then a self-paced public quiz is
// played from the quiz list. Prints one JSON line with what it measured.
//
//   QUIZ_BASE_URL=http://127.0.0.1:PORT node tests/browser/game.mjs

import { readFileSync } from "node:fs";
import {
  BASE_URL,
  DESKTOP,
  PHONE,
  ScenarioError,
  check,
  checkLabels,
  launch,
  openPage,
  readBoard,
  shot,
  unique,
  waitBoards,
} from "./lib.mjs";

// The host advances as soon as everyone answered, so long limits cost nothing
// and keep a slow (shared, loaded) machine from running out of time; only the
// last question is left to run out.
const LIVE = [
  { text: "2 + 2 = ?", choices: ["3", "4", "5", "22"], answer: 1, time: 60 },
  { text: "The largest planet of the Solar System?", choices: ["Mars", "Jupiter", "Venus"], answer: 1, time: 60 },
  { text: "A clear daytime sky is blue.", choices: ["True", "False"], answer: 0, time: 60 },
  { text: "HTTP status for Not Found?", choices: ["200", "301", "404", "500"], answer: 2, time: 8 },
];

// What each player picks per question (null: no answer, let the clock run out).
const PLANS = {
  ada: [1, 1, 0, 2], // all right
  bo: [1, 0, 0, 2], // wrong on question 2
  cy: [0, 1, 1, null], // right only on question 2
};

const SOLO = {
  title: unique("World capitals "),
  public: true,
  questions: [
    { text: "Capital of France?", choices: ["Lyon", "Paris", "Nice"], answer: 1, time_limit_s: 30 },
    { text: "Capital of Japan?", choices: ["Osaka", "Kyoto", "Tokyo", "Sapporo"], answer: 2, time_limit_s: 30 },
    { text: "Capital of Canada?", choices: ["Ottawa", "Toronto"], answer: 0, time_limit_s: 30 },
  ],
};

const summary = { steps: [], board_sync_ms: [], reload_redraw_ms: null };
const t0 = Date.now();
const step = (name) => summary.steps.push([name, Date.now() - t0]);

async function signUpHost(host) {
  await host.goto("/host");
  await host.locator("#h-auth").waitFor();
  await checkLabels(host);
  const username = unique("host_");
  await host.fill("#h-up-user", username);
  await host.fill("#h-up-nick", "Quiz Master");
  await host.fill("#h-up-pass", "correct horse 9");
  await host.click("#h-signup button[type=submit]");
  await host.locator("#h-dash").waitFor();
  return username;
}

/** Write the live quiz in the form: add questions, fill choices, mark the right one. */
async function writeQuizInForm(host, title) {
  const form = host.locator("#h-quiz-form");
  await form.locator("input[name=title]").fill(title);
  for (let i = 0; i < LIVE.length; i++) {
    if (i > 0) await form.locator("[data-add-question]").click();
    const q = form.locator(".q-edit").nth(i);
    await q.locator("[data-q-text]").fill(LIVE[i].text);
    // Every new question starts with four choice fields: drop the extra ones.
    for (let extra = 4 - LIVE[i].choices.length; extra > 0; extra--) {
      await q.locator("[data-remove-choice]").last().click();
    }
    const inputs = q.locator("[data-choice]");
    for (let c = 0; c < LIVE[i].choices.length; c++) await inputs.nth(c).fill(LIVE[i].choices[c]);
    await q.locator(".right-radio").nth(LIVE[i].answer).check();
    await q.locator("[data-q-time]").fill(String(LIVE[i].time));
  }
  await form.locator("button[type=submit]").click();
  await host.locator(`#h-quizzes li:has-text("${title}")`).waitFor();
}

/** Paste the self-paced quiz as JSON. */
async function pasteQuizJson(host, quiz) {
  const form = host.locator("#h-quiz-form");
  await form.locator("label:has-text('Paste JSON')").click();
  await form.locator("textarea[name=json]").fill(JSON.stringify(quiz, null, 2));
  await form.locator("button[type=submit]").click();
  await host.locator(`#h-quizzes li:has-text("${quiz.title}")`).waitFor();
}

async function nickname(page, name) {
  await page.locator("#p-nickname").waitFor();
  await page.fill("#p-nickname", name);
  await page.click("#p-name-form button[type=submit]");
}

async function waitQuestion(page, index) {
  await page.waitForFunction(
    (want) => {
      const panel = document.querySelector("#p-question");
      return panel && !panel.hidden && panel.querySelector("[data-q-index]").textContent.startsWith(`Question ${want} `);
    },
    index + 1,
  );
}

/** Answer with a tap, or with the number key when `keyboard`; returns the feedback headline. */
async function answer(page, choice, { keyboard = false } = {}) {
  if (keyboard) await page.keyboard.press(String(choice + 1));
  else await page.locator("#p-question [data-choices] button").nth(choice).click();
  const strong = page.locator("#p-feedback.right strong, #p-feedback.wrong strong");
  await strong.waitFor();
  return strong.textContent();
}

const myScore = (page) => page.locator("[data-my-score]").getAttribute("data-my-score").then(Number);
const myRank = (page) => page.locator("[data-my-rank]").getAttribute("data-my-rank").then(Number);

async function main() {
  check(BASE_URL, "QUIZ_BASE_URL is not set");
  const browser = await launch();
  const pages = [];
  try {
    // ------------------------------------------------------------------ host writes a quiz
    const host = await openPage(browser, "host", DESKTOP);
    pages.push(host);
    const hostUser = await signUpHost(host);
    await checkLabels(host);
    step("host signed up");
    const liveTitle = "General knowledge";
    await writeQuizInForm(host, liveTitle);
    step("live quiz written in the form");
    await checkLabels(host);
    await pasteQuizJson(host, SOLO);
    step("public quiz pasted as JSON");

    await host.locator(`#h-quizzes li:has-text("${liveTitle}") button`).click();
    await host.locator("#h-session").waitFor();
    const code = (await host.locator("[data-code]").textContent()).trim();
    check(/^\S{4,12}$/.test(code), `no join code on the host page: ${JSON.stringify(code)}`);
    await host.waitForFunction(() => document.querySelector("#net")?.dataset.state === "connected");
    step("live session open, host in the room");

    // ------------------------------------------------------------------ players join
    // Nicknames need not be unique (every guest is a user of their own).
    const names = { ada: "Ada", bo: "Bo", cy: "Cy" };
    const players = {};
    for (const key of Object.keys(names)) {
      players[key] = await openPage(browser, key, PHONE);
      pages.push(players[key]);
    }
    step("three player pages open");
    // Ada follows the join link; Bo and Cy type the code.
    await players.ada.goto(`/join/${code}`);
    step("first player page loaded");
    await nickname(players.ada, names.ada);
    await players.ada.locator("#p-game").waitFor();
    step("first player joined the session");
    await players.ada.locator("#p-lobby").waitFor();
    step("first player in the lobby");
    await Promise.all(
      ["bo", "cy"].map(async (key) => {
        const p = players[key];
        await p.goto("/");
        await nickname(p, names[key]);
        await p.locator("#p-code").waitFor();
        await p.fill("#p-code", code);
        await p.click("#p-join-form button[type=submit]");
      }),
    );
    for (const p of Object.values(players)) await p.locator("#p-lobby").waitFor();
    await checkLabels(players.bo);
    await host.waitForFunction(() => document.querySelector("[data-h-players]").textContent === "3");
    // The host sees who arrived: everyone is on the board with 0 points.
    await waitBoards([[host, "#h-session"]], Object.values(names).map((n) => `${n}:0`));
    step("three players in the lobby");
    await shot(host, "host-lobby.png");
    await shot(players.ada, "player-lobby.png");

    // ------------------------------------------------------------------ the live game
    const scores = { ada: 0, bo: 0, cy: 0 };
    const all = Object.values(players);
    const boardPages = [[host, "#h-session"], ...all.map((p) => [p, "#p-game"])];
    const expectedBoard = () =>
      Object.keys(scores)
        .map((k) => [names[k], scores[k]])
        .sort((a, b) => b[1] - a[1])
        .map(([n, s]) => `${n}:${s}`);

    for (let qi = 0; qi < LIVE.length; qi++) {
      if (qi === 0) {
        // Cy's network drops while the first question opens: the event is missed.
        await players.cy.context().setOffline(true);
        await players.cy.waitForFunction(() => document.querySelector("#net")?.dataset.state !== "connected");
        await host.locator("#h-advance").click();
        await Promise.all([players.ada, players.bo].map((p) => waitQuestion(p, qi)));
        check(await players.cy.locator("#p-question").isHidden(), "an offline page got the question");
        // Back online: socket.io reconnects, re-joins, and the ack + GET question redraw it.
        const back = Date.now();
        await players.cy.context().setOffline(false);
        await waitQuestion(players.cy, qi);
        summary.offline_recovery_ms = Date.now() - back;
        step("Cy's network dropped and came back");
      } else await host.locator("#h-advance").click();
      await Promise.all(all.map((p) => waitQuestion(p, qi)));
      await host.locator("#h-question [data-q-text]", { hasText: LIVE[qi].text }).waitFor();

      if (qi === 2) {
        // Cy reloads before answering: the open question comes back with its clock.
        await players.cy.reload();
        await waitQuestion(players.cy, qi);
      }

      const answering = Object.keys(players).filter((k) => PLANS[k][qi] !== null);
      const results = await Promise.all(
        answering.map((k) => answer(players[k], PLANS[k][qi], { keyboard: k === "bo" })),
      );
      answering.forEach((k, i) => {
        const right = PLANS[k][qi] === LIVE[qi].answer;
        check(
          results[i].startsWith(right ? "Correct!" : "Wrong"),
          `${k} question ${qi + 1}: feedback ${JSON.stringify(results[i])}`,
        );
      });
      for (const k of answering) scores[k] = await myScore(players[k]);
      summary.board_sync_ms.push(await waitBoards(boardPages, expectedBoard()));
      step(`question ${qi + 1} answered, boards agree`);

      if (qi === 0) await shot(players.ada, "player-answered.png", "player.png");
      if (qi === 1) {
        // Bo reloads after answering, with an access token the servers refuse (as
        // if it expired): the page renews it with the refresh token, reconnects,
        // and redraws the same question, its own answer and the board.
        const refused = await players.bo.evaluate(() => {
          const auth = JSON.parse(localStorage.getItem("quizrt.player.auth"));
          const old = auth.access_token;
          auth.access_token = `${old.slice(0, -8)}AAAAAAAA`;
          localStorage.setItem("quizrt.player.auth", JSON.stringify(auth));
          return auth.access_token;
        });
        const started = Date.now();
        await players.bo.reload();
        await waitQuestion(players.bo, qi);
        await players.bo.locator("#p-feedback.wrong strong").waitFor();
        await waitBoards([[players.bo, "#p-game"]], expectedBoard());
        summary.reload_redraw_ms = Date.now() - started;
        check((await myScore(players.bo)) === scores.bo, "Bo's score changed across the reload");
        const renewed = await players.bo.evaluate(() => JSON.parse(localStorage.getItem("quizrt.player.auth")).access_token);
        check(renewed !== refused, "Bo's refused access token was not renewed");
        step("Bo reloaded and was redrawn");
      }
      if (qi === 2) {
        // The host reloads: question, clock, players and board come back from the join ack.
        await host.reload();
        await host.locator("#h-question [data-q-text]", { hasText: LIVE[qi].text }).waitFor();
        await host.locator("#h-advance", { hasText: "Next question" }).waitFor();
        await waitBoards([[host, "#h-session"]], expectedBoard());
        check((await host.locator("[data-h-players]").textContent()) === "3", "host lost the player count on reload");
        step("host reloaded and was redrawn");
      }
      if (qi === 1) {
        // The host sees how question 1 was answered while question 2 runs.
        await host.locator("#h-closed", { hasText: "Answers to question 1" }).waitFor();
        await shot(host, "host-question.png", "host.png");
      }
    }

    // The last question runs out for Cy: everyone sees it close with the right answer.
    await Promise.all(
      all.map((p) => p.locator("#p-feedback", { hasText: `Right answer: ${LIVE[3].choices[2]}` }).waitFor()),
    );
    await players.cy.locator("#p-feedback", { hasText: "No answer in time" }).waitFor();
    await host.locator("#h-closed", { hasText: `Answers to question ${LIVE.length}` }).waitFor();
    const dist = await host.$$eval("#h-closed [data-distribution] .n", (els) => els.map((e) => Number(e.textContent)));
    check(JSON.stringify(dist) === JSON.stringify([0, 0, 2, 0]), `last distribution on the host: ${dist}`);
    // Each bar's length is its share of the answers (set through the CSSOM: the page's CSP refuses style attributes).
    const shares = await host.$$eval("#h-closed [data-distribution] li", (els) =>
      els.map((e) => Number(getComputedStyle(e).getPropertyValue("--share").trim())),
    );
    check(JSON.stringify(shares) === JSON.stringify([0, 0, 1, 0]), `distribution bar shares on the host: ${shares}`);
    await shot(players.cy, "player-closed.png");
    await shot(host, "host-closed.png");
    step("last question closed by its deadline");

    await host.locator("#h-advance", { hasText: "Finish" }).click();
    await host.locator("#h-podium").waitFor();
    for (const p of all) await p.locator("#p-done", { hasText: "Final results" }).waitFor();
    await waitBoards(boardPages, expectedBoard());
    const finalBoard = await readBoard(host, "#h-session");
    const podium = await host.$$eval("#h-podium [data-podium] .name", (els) => els.map((e) => e.textContent));
    check(podium[0] === names.ada, `podium winner ${podium[0]}, want ${names.ada}`);
    const order = finalBoard.map((s) => s.split(":")[0]);
    for (const [k, p] of Object.entries(players)) {
      const rank = await myRank(p);
      check(rank === order.indexOf(names[k]) + 1, `${k} sees own rank ${rank}, board says ${order.indexOf(names[k]) + 1}`);
    }
    check(order.join() === [names.ada, names.bo, names.cy].join(), `final order ${order}`);
    await shot(host, "host-podium.png");
    await shot(players.bo, "player-podium.png");
    step("podium on every page");

    const [download] = await Promise.all([host.waitForEvent("download"), host.click("#h-csv")]);
    const csv = readFileSync(await download.path(), "utf8");
    const lines = csv.trim().split(/\r?\n/);
    check(lines.length === 4, `results CSV has ${lines.length} lines, want a header and 3 players:\n${csv}`);
    check(lines[1].includes(names.ada), `first CSV row is not the winner: ${lines[1]}`);
    summary.csv_header = lines[0];
    step("results CSV downloaded");

    // The same host signs in elsewhere (a projector) from a session link: the
    // ended session is redrawn from the room's join ack.
    const opened = await host.evaluate(() => JSON.parse(localStorage.getItem("quizrt.host.session")));
    const projector = await openPage(browser, "projector", DESKTOP);
    pages.push(projector);
    await projector.goto(`/host?session=${opened.id}&code=${opened.code}&quiz=${opened.quiz_id}`);
    await projector.fill("#h-in-user", hostUser);
    await projector.fill("#h-in-pass", "correct horse 9");
    await projector.click("#h-signin button[type=submit]");
    await projector.locator("#h-podium").waitFor();
    await projector.locator("#h-s-title", { hasText: liveTitle }).waitFor();
    await waitBoards([[projector, "#h-session"]], expectedBoard());
    await projector.context().close();
    step("host signed in elsewhere from the session link");

    // ------------------------------------------------------------------ self-paced from the list
    const solo = await openPage(browser, "solo", PHONE);
    pages.push(solo);
    await solo.goto("/");
    await nickname(solo, "Sam");
    const play = solo.getByRole("button", { name: `Play ${SOLO.title}` });
    for (let tries = 0; !(await play.isVisible()); tries++) {
      // The quiz list is cached by nginx for a moment.
      check(tries < 20, "the public quiz does not appear in the list");
      await solo.waitForTimeout(300);
      await solo.click("#p-public-refresh");
    }
    await checkLabels(solo);
    await play.click();
    for (let qi = 0; qi < SOLO.questions.length; qi++) {
      await waitQuestion(solo, qi);
      const text = await answer(solo, SOLO.questions[qi].answer, { keyboard: qi % 2 === 1 });
      check(text.startsWith("Correct!"), `self-paced question ${qi + 1}: ${text}`);
      if (qi === 0) {
        await checkLabels(solo);
        await shot(solo, "solo-answered.png");
      }
      await solo.keyboard.press("Enter"); // the focused "Next question" button
    }
    await solo.locator("#p-done", { hasText: "You finished" }).waitFor();
    check((await myRank(solo)) === 1, "the only self-paced player is not ranked #1");
    summary.solo_score = await myScore(solo);
    // Each right answer earns at least half its 1000 points, plus streak bonuses 100 + 200.
    check(summary.solo_score >= 1800, `self-paced score ${summary.solo_score} for three right answers`);
    await shot(solo, "solo-finished.png");
    step("self-paced quiz played from the list");

    summary.final_board = finalBoard;
    summary.console_errors = pages.flatMap((p) => p.consoleErrors).filter((e) => !/status of 409/.test(e));
    const thrown = pages.flatMap((p) => p.pageErrors);
    check(!thrown.length, `uncaught errors in pages:\n${thrown.join("\n")}`);
    const refused = summary.console_errors.filter((e) => /Content Security Policy/i.test(e));
    check(!refused.length, `the page's CSP refused something:\n${refused.join("\n")}`);
    summary.total_ms = Date.now() - t0;
    console.log(JSON.stringify(summary));
  } catch (err) {
    for (const p of pages) {
      await shot(p, `failed-${p.quizName}.png`).catch(() => {});
    }
    const thrown = pages.flatMap((p) => p.pageErrors);
    const logs = pages.flatMap((p) => p.consoleErrors);
    console.error(`FAILED after ${Date.now() - t0} ms: ${err instanceof ScenarioError ? err.message : err.stack}`);
    console.error(`steps: ${JSON.stringify(summary.steps)}`);
    if (thrown.length) console.error(`page errors:\n${thrown.join("\n")}`);
    if (logs.length) console.error(`console errors:\n${logs.slice(-30).join("\n")}`);
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

await main();
