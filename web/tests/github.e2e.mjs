// Sign in with GitHub in a real Chromium (run by tests/github/main.rs against the fake GitHub, which
// approves the sign-in as the user the test chose): the button on the sign-in page, the account's
// GitHub in the header, the repository picker offering the private repository, and a task started
// with "Open a pull request" whose heading links to the draft pull request the edge opened.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ARTIFACTS, EDGE_URL, LONG, assertAccessible, finished, launch } from "./e2e_support.mjs";

const { GITHUB_URL, REPO_URL, GITHUB_LOGIN } = process.env;
let browser;

before(async () => {
  browser = await launch();
});

after(async () => browser?.close());

test("a person signs in with GitHub, picks a private repository and gets a draft pull request", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));
  await page.goto(EDGE_URL);
  await page.getByRole("link", { name: "Sign in with GitHub" }).click();
  await page.getByText("Signed in as").waitFor({ timeout: LONG });
  await page.getByText(`GitHub: ${GITHUB_LOGIN}`).waitFor();
  await page.locator(`#github-repositories option[value="${REPO_URL}"]`).waitFor({ state: "attached" });
  await assertAccessible(page, "composer with GitHub connected");

  await page.getByLabel("Repository URL").fill(REPO_URL);
  await page.getByLabel("What should the agent do?").fill("Add notes from the page\nSCENARIO:write-file");
  await page.getByLabel("Open a pull request").check();
  await page.getByRole("button", { name: "Start" }).click();
  await finished("succeeded", page).catch(async (error) => {
    await page.screenshot({ path: `${ARTIFACTS}/github-failed.png`, fullPage: true });
    const said = await page.evaluate(() => ["status", "task-status", "timeline"].map((id) => document.getElementById(id)?.innerText));
    throw new Error(`${error.message}\nthe page said: ${JSON.stringify(said)}`);
  });
  const link = page.getByRole("link", { name: /^Pull request #\d+ \(draft\)$/ });
  await link.waitFor({ timeout: LONG });
  const href = await link.getAttribute("href");
  assert.ok(href.startsWith(`${GITHUB_URL}/`), href);
  await assertAccessible(page, "a task with its pull request");
  await page.screenshot({ path: `${ARTIFACTS}/github-pull-request.png`, fullPage: true });
  console.log(`PULL_REQUEST_URL=${href}`);
  await context.close();
});
