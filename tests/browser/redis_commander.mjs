// Redis Commander in Chromium (run by tests/test_admin_tools.py): the key tree of the
// stack's Redis lists a session's board key; opening it shows the sorted set with the
// player in it. Prints one JSON line with what the page showed.
//
//   QUIZRT_ADMIN_URL=http://127.0.0.1:PORT/ QUIZRT_KEY='lb:{s:ID}' QUIZRT_MEMBER=USER_ID \
//     node tests/browser/redis_commander.mjs

import { DESKTOP, check, launch, openPage, shot } from "./lib.mjs";

const URL = process.env.QUIZRT_ADMIN_URL;
const KEY = process.env.QUIZRT_KEY;
const MEMBER = process.env.QUIZRT_MEMBER;

const browser = await launch();
try {
  const page = await openPage(browser, "redis-commander", DESKTOP);
  await page.goto(URL);
  // The tree folds keys at ":" (lb -> {s -> ID}); "Refresh + Expand All Nodes" opens it all.
  await page.locator("#keyTree li").first().waitFor();
  await page.click("#keyTreeActions .dropdown-toggle");
  await page.click("#expandAllNodes");
  // A node's id is "R:<host>:<port>:<db>:<key>".
  const leaf = page.locator(`#keyTree li.jstree-leaf[id$=${JSON.stringify(`:${KEY}`)}]`);
  await leaf.waitFor();
  const nodeId = await leaf.getAttribute("id");
  await leaf.locator(":scope > a").click();
  const body = page.locator("#body");
  await body.getByText(`Key: ${KEY}`).waitFor();
  await body.getByText(MEMBER).first().waitFor();
  const details = (await body.innerText()).replace(/\s+/g, " ").trim();
  check(/Sorted Set/.test(details), `the board key is not shown as a sorted set: ${details}`);
  await shot(page, "redis-commander.png");
  check(!page.pageErrors.length, `page errors: ${page.pageErrors.join("; ")}`);
  console.log(JSON.stringify({ node_id: nodeId, details }));
} finally {
  await browser.close();
}
