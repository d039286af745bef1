// Shared parts of the browser scenarios: launching Debian's Chromium through
// playwright-core (installed in web/node_modules), page helpers, screenshots.

import { mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
export const ROOT = resolve(HERE, "..", "..");
// playwright-core is a devDependency of web/; resolve it from there.
const require = createRequire(join(ROOT, "web", "package.json"));
const { chromium } = require("playwright-core");

export const BASE_URL = (process.env.QUIZ_BASE_URL || "").replace(/\/+$/, "");
export const SHOTS = process.env.QUIZRT_SCREENSHOTS || join(ROOT, "reports", "screenshots");
export const DOCS_SHOTS = process.env.QUIZRT_DOCS_SCREENSHOTS ? join(ROOT, "docs", "screenshots") : null;
const CHROMIUM = process.env.QUIZRT_CHROMIUM || "/usr/bin/chromium";

export const PHONE = { viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 1 };
export const DESKTOP = { viewport: { width: 1200, height: 860 }, deviceScaleFactor: 1 };

/** Launch headless Chromium. Playwright gives every launch a fresh temporary profile (--user-data-dir). */
export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-dev-shm-usage",
    ],
  });
}

export class ScenarioError extends Error {}

/** Throw a ScenarioError with `message` unless `cond`. */
export function check(cond, message) {
  if (!cond) throw new ScenarioError(message);
}

/**
 * A page in a fresh browser context, with its uncaught errors collected: a
 * scenario fails if any page threw.
 */
export async function openPage(browser, name, device) {
  const context = await browser.newContext({ ...device, baseURL: BASE_URL, acceptDownloads: true });
  const page = await context.newPage();
  // Generous: several test stacks may share two cores; a healthy run waits far less.
  page.setDefaultTimeout(Number(process.env.QUIZRT_STEP_TIMEOUT_MS || 30000));
  page.setDefaultNavigationTimeout(60000);
  page.quizName = name;
  page.pageErrors = [];
  page.consoleErrors = [];
  page.on("pageerror", (err) => page.pageErrors.push(`${name}: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error") page.consoleErrors.push(`${name}: ${msg.text()}`);
  });
  return page;
}

/** Save a screenshot as reports/screenshots/<file> (and docs/screenshots/<docsName> when asked). */
export async function shot(page, file, docsName = null) {
  mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: join(SHOTS, file), fullPage: false, animations: "disabled", caret: "hide" });
  if (DOCS_SHOTS && docsName) {
    mkdirSync(DOCS_SHOTS, { recursive: true });
    await page.screenshot({ path: join(DOCS_SHOTS, docsName), fullPage: true, animations: "disabled", caret: "hide" });
  }
}

/** The visible leaderboard of a page: ["nickname:score", ...] in rank order. */
export function readBoard(page, root) {
  return page.$$eval(`${root} [data-board] li[data-user]`, (lis) =>
    lis.map((li) => `${li.querySelector(".name").firstChild.textContent}:${li.dataset.score}`),
  );
}

/**
 * Wait until every page shows the same leaderboard, holding exactly the
 * `expected` "nickname:score" entries in score order (players with equal
 * scores may come in either order: who reached the score first ranks higher).
 * Returns the ms it took.
 */
export async function waitBoards(pages, expected, timeoutMs = 10000) {
  const started = Date.now();
  const want = JSON.stringify([...expected].sort());
  const ordered = (b) => b.every((e, i) => i === 0 || Number(b[i - 1].split(":").pop()) >= Number(e.split(":").pop()));
  let seen = [];
  while (Date.now() - started < timeoutMs) {
    seen = await Promise.all(pages.map(([page, root]) => readBoard(page, root)));
    const first = JSON.stringify(seen[0]);
    if (
      seen.every((b) => JSON.stringify(b) === first) &&
      JSON.stringify([...seen[0]].sort()) === want &&
      ordered(seen[0])
    )
      return Date.now() - started;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new ScenarioError(
    `leaderboards differ after ${timeoutMs} ms: want ${JSON.stringify(expected)}; seen ${pages
      .map(([p], i) => `${p.quizName}=${JSON.stringify(seen[i])}`)
      .join(" ")}`,
  );
}

export const unique = (prefix) => `${prefix}${Math.random().toString(36).slice(2, 7)}`;

/** Fail when a visible form field has no label or a visible button has no name. */
export async function checkLabels(page) {
  const missing = await page.evaluate(() => {
    const visible = (el) => el.offsetParent !== null || el.getClientRects().length > 0;
    const named = (el) =>
      (el.labels && el.labels.length > 0) || el.getAttribute("aria-label") || el.getAttribute("aria-labelledby");
    const bad = [];
    for (const el of document.querySelectorAll("input, textarea, select")) {
      if (el.type !== "hidden" && visible(el) && !named(el)) bad.push(el.outerHTML.slice(0, 120));
    }
    for (const el of document.querySelectorAll("button")) {
      if (visible(el) && !el.textContent.trim() && !el.getAttribute("aria-label")) bad.push(el.outerHTML.slice(0, 120));
    }
    return bad;
  });
  check(!missing.length, `${page.quizName}: unlabelled controls:\n${missing.join("\n")}`);
}
