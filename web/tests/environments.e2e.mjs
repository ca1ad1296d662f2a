// Environments in a real Chromium (run by tests/environments.rs): a person opens the Environments
// panel, saves one for the repository, starts a task on it, and watches the setup's output and its
// exit in the timeline before the agent's steps.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ARTIFACTS, assertAccessible, finished, launch, showComposer, signedInPage } from "./e2e_support.mjs";

const { TOKEN, REPO_URL } = process.env;
let browser;

before(async () => {
  browser = await launch();
});

after(async () => browser?.close());

test("a person saves an environment and watches its setup run in the timeline", async () => {
  const page = await signedInPage(browser, TOKEN);
  await page.getByRole("button", { name: "Environments" }).click();
  await page.getByRole("heading", { name: "Environments" }).waitFor();
  await page.getByLabel("Name", { exact: true }).fill("page-env");
  await page.getByLabel(/^Repositories/).fill(REPO_URL);
  await page.getByLabel(/^Setup script/).fill("echo from the page setup\necho \"PAGE_VAR is $PAGE_VAR\"");
  await page.getByLabel(/^Variables/).fill("PAGE_VAR=42");
  await page.getByLabel(/^Secrets/).fill("PAGE_SECRET=a-page-secret-value");
  await page.getByRole("button", { name: "Save" }).click();
  await page.getByText("Saved page-env (revision 1)").waitFor();
  assert.equal(await page.getByLabel(/^Secrets/).inputValue(), "PAGE_SECRET", "a secret shows by name only");
  await assertAccessible(page, "environments panel");

  await showComposer(page);
  await page.getByLabel("Repository URL").fill(REPO_URL);
  await page.getByLabel("What should the agent do?").fill("SCENARIO:answer hello");
  await page.getByLabel("Environment", { exact: true }).selectOption("page-env");
  await page.getByRole("button", { name: "Start" }).click();
  await finished("succeeded", page);
  const setup = page.locator("#timeline li.entry.setup");
  await setup.getByText("Setup script of page-env").waitFor();
  await setup.getByText("exited 0 after").waitFor();
  const output = await setup.locator(".setup-output").textContent();
  assert.match(output, /from the page setup\nPAGE_VAR is 42/);
  const order = await page.$$eval("#timeline > li", (items) => items.map((item) => item.className));
  assert.ok(order.findIndex((c) => c.includes("setup")) < order.findIndex((c) => c.includes("agent")), order.join(" | "));
  await assertAccessible(page, "a task with its setup");
  await page.screenshot({ path: `${ARTIFACTS}/environment-setup.png`, fullPage: true });
});
