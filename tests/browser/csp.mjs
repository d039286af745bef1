// Pages under the gateway's Content-Security-Policy in Chromium: every violation
// the browser reports (blocked URL or "inline"/"eval"), and whether the web client
// boots and creates a guest (fetch through connect-src). Prints one JSON line.

import { BASE_URL, launch, openPage } from "./lib.mjs";

const PAGES = ["/", "/docs/", "/api/quiz/schema"];

const browser = await launch();
const result = {};
try {
  for (const path of PAGES) {
    const page = await openPage(browser, path, { viewport: { width: 1000, height: 800 } });
    await page.addInitScript(() => {
      window.__csp = [];
      document.addEventListener("securitypolicyviolation", (e) =>
        window.__csp.push({ blocked: e.blockedURI, directive: e.violatedDirective }),
      );
    });
    await page.goto(BASE_URL + path, { waitUntil: "load" });
    await page.waitForTimeout(1500);
    const seen = { violations: [], booted: false, guest_created: false };
    if (path === "/") {
      await page.waitForSelector("#p-name:not([hidden])");
      seen.booted = true;
      await page.fill("#p-nickname", "csp check");
      await page.click("#p-name-form button[type=submit]");
      await page.waitForSelector("#p-join:not([hidden])");
      seen.guest_created = true;
    }
    seen.violations = await page.evaluate(() => window.__csp);
    seen.console = page.consoleErrors.filter((e) => /Content Security Policy/i.test(e));
    result[path] = seen;
    await page.context().close();
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(result));
