// The page as a workspace, in a real Chromium (run by tests/browser.rs after browser.e2e.mjs, as
// another user, kim): each task's address (opened directly after sign-in in a fresh browser; back
// and forward), controls that match the state, the diff viewer, the keyboard path from the list
// to a follow-up sent, the phone's drawer, dark mode, axe-core on each of those states, and the
// budgets: the page's JavaScript gzipped, and a recorded 5,000-event task drawn and scrollable.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { gzipSync } from "node:zlib";
import {
  ARTIFACTS, EDGE_URL, LONG, PHONE, assertAccessible, finished, launch, openTaskId, seqs, showComposer, showList, signedInPage, waitForAnother, waitForOpen,
} from "./e2e_support.mjs";

const { KIM_TOKEN, READER_TOKEN, REPO_URL, LONG_TASK, LONG_TASK_EVENTS } = process.env;
/** The budgets of issue 26. */
const JS_BUDGET_KB = 150;
const RENDER_BUDGET_MS = 1000;
/** How far past the target a run must be to fail: a regression, not noise. */
const RUNAWAY_FACTOR = 5;
let browser;
let page;
/** Kim's tasks, by name. */
const tasks = {};

before(async () => {
  browser = await launch();
});

after(async () => browser?.close());

/** Starts a task from the New task composer; answers its id once its conversation is open. */
async function startTask(on, prompt) {
  const previous = await openTaskId(on);
  await showComposer(on);
  await on.getByLabel("Repository URL").fill(REPO_URL);
  await on.getByLabel("What should the agent do?").fill(prompt);
  await on.getByRole("button", { name: "Start" }).click();
  return waitForAnother(on, previous);
}

test("the page's JavaScript is within its budget", () => {
  const kb = gzipSync(readFileSync(new URL("../dist/app.js", import.meta.url)), { level: 9 }).length / 1024;
  console.log(`page JS: ${kb.toFixed(1)} KB gzipped (budget ${JS_BUDGET_KB} KB)`);
  assert.ok(kb <= JS_BUDGET_KB, `${kb.toFixed(1)} KB gzipped`);
});

test("sign-in and the New task composer are accessible; the composer remembers the repository", async () => {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const fresh = await context.newPage();
  await fresh.goto(EDGE_URL);
  await fresh.getByLabel("API token").waitFor();
  await assertAccessible(fresh, "sign-in");
  await context.close();
  page = await signedInPage(browser, KIM_TOKEN);
  await page.locator("#start-form").waitFor();
  assert.equal(await page.locator("#task").isHidden(), true, "a new browser opens the composer, no task");
  await assertAccessible(page, "New task composer");
  await page.screenshot({ path: `${ARTIFACTS}/composer.png`, fullPage: true });
});

test("a task's controls match its state; its diff shows in the viewer beside its commit and branch", async () => {
  tasks.edit = await startTask(page, "SCENARIO:edit-and-create improve the code\nand say what you did");
  assert.equal(new URL(page.url()).pathname, `/tasks/${tasks.edit}`, "the task has an address");
  assert.equal(await page.locator("#task-title").textContent(), "SCENARIO:edit-and-create improve the code", "titled by its prompt's first line");
  assert.match(await page.locator("#prompt-text").textContent(), /and say what you did/, "the whole prompt is the user's turn");
  await finished("succeeded", page);
  await page.locator("#cancel").waitFor({ state: "hidden" });
  assert.equal(await page.getByRole("button", { name: "Cancel" }).count(), 0, "no Cancel once the task ended");
  await page.getByLabel("Ask for changes").waitFor();
  const diff = page.locator("#timeline li.entry.diff");
  assert.deepEqual((await diff.locator(".file-path").allTextContents()).sort(), ["NOTES.md", "main.rs"]);
  await diff.locator(".diff-delivery", { hasText: /on branch autopilot\/\S+, commit [0-9a-f]{12}/ }).waitFor();
  // Each file drawn by diff2html, split at this width; unified on request.
  await diff.locator(".d2h-file-side-diff").first().waitFor();
  assert.equal(await diff.locator(".diff-body .d2h-file-wrapper").count(), 2, "every file drawn");
  await diff.getByRole("button", { name: "Unified" }).click();
  await diff.locator(".d2h-file-diff").first().waitFor();
  assert.equal(await diff.locator(".d2h-file-side-diff").count(), 0);
  assert.ok((await diff.locator(".d2h-ins").count()) > 0, "added lines marked");
  // A file closes and opens again.
  const file = diff.locator('.diff-file[data-path="main.rs"]');
  await file.getByRole("button", { name: "Hide" }).click();
  await file.locator(".diff-body").waitFor({ state: "hidden" });
  await file.getByRole("button", { name: "Show" }).click();
  await file.locator(".d2h-file-diff").waitFor();
  await assertAccessible(page, "ended task with its diff");
  await page.screenshot({ path: `${ARTIFACTS}/diff.png`, fullPage: true });
  await page.emulateMedia({ colorScheme: "dark" });
  await assertAccessible(page, "ended task with its diff, dark");
  await page.screenshot({ path: `${ARTIFACTS}/diff-dark.png`, fullPage: true });
  await page.emulateMedia({ colorScheme: "light" });
});

test("a running task shows Cancel and no follow-up; its steps are announced politely", async () => {
  tasks.hang = await startTask(page, "SCENARIO:hang wait for me");
  await page.locator("#timeline li.agent").waitFor({ timeout: LONG });
  await page.getByRole("button", { name: "Cancel" }).waitFor();
  assert.equal(await page.locator("#follow-up").isHidden(), true, "no follow-up while it runs");
  assert.equal(await page.locator("#announcer").getAttribute("aria-live"), "polite");
  await page.waitForFunction(() => /agent is working|Cloning/.test(document.getElementById("announcer").textContent), null, { timeout: LONG });
  console.log(`announced: ${await page.locator("#announcer").textContent()}`);
  await assertAccessible(page, "running task");
  await page.screenshot({ path: `${ARTIFACTS}/running.png`, fullPage: true });
  await page.getByRole("button", { name: "Cancel" }).click();
  await finished("cancelled", page);
  await page.locator("#cancel").waitFor({ state: "hidden" });
  await page.getByLabel("Ask for changes").waitFor();
});

test("back and forward move between tasks and the composer; an address opens its task after sign-in", async () => {
  // The history so far: / → edit → / (New task) → hang.
  await page.goBack();
  await page.locator("#start-form").waitFor();
  assert.equal(new URL(page.url()).pathname, "/");
  await page.goBack();
  await waitForOpen(page, tasks.edit);
  await finished("succeeded", page);
  const shown = await seqs(page);
  await page.goForward();
  await page.locator("#start-form").waitFor();
  await page.goForward();
  await waitForOpen(page, tasks.hang);
  await finished("cancelled", page);
  assert.equal(new URL(page.url()).pathname, `/tasks/${tasks.hang}`);

  // A fresh browser, nothing remembered, comes to the task's address: after sign-in, that task.
  const elsewhere = await signedInPage(browser, KIM_TOKEN, { path: `/tasks/${tasks.edit}` });
  await waitForOpen(elsewhere, tasks.edit);
  await finished("succeeded", elsewhere);
  await elsewhere.locator("#task-title", { hasText: /^SCENARIO:edit-and-create improve the code$/ }).waitFor(); // from the list
  assert.deepEqual(await seqs(elsewhere), shown, "the same timeline");
  await elsewhere.screenshot({ path: `${ARTIFACTS}/address-opened.png`, fullPage: true });
  // Its list marks it; an unknown task's address says so in the pane.
  assert.equal(await elsewhere.locator(`#recent-list li[data-task-id="${tasks.edit}"]`).getAttribute("aria-current"), "true");
  await elsewhere.goto(`${EDGE_URL}/tasks/00000000-0000-4000-8000-000000000bad`);
  await elsewhere.locator("#task-status.error", { hasText: "no task with id" }).waitFor({ timeout: LONG });
  await assertAccessible(elsewhere, "an unknown task's address");
  // Only the page's own addresses are the page: an unknown path, even navigated to, is the Worker's JSON 404.
  const nope = await elsewhere.goto(`${EDGE_URL}/api/nope`);
  assert.equal(nope.status(), 404);
  assert.equal((await nope.json()).error?.code, "NOT_FOUND");
  const nowhere = await elsewhere.goto(`${EDGE_URL}/nowhere`);
  assert.equal(nowhere.status(), 404, "a path that is neither the page's nor a file reaches the Worker's route table");
  await elsewhere.context().close();
});

test("the keyboard alone: from the list to a follow-up sent", async () => {
  await page.goto(`${EDGE_URL}/`);
  await page.locator("#start-form").waitFor();
  await page.locator("#recent-list li").first().waitFor();
  // Tab into the list (one stop), then arrows to the task, Enter opens it.
  for (let i = 0; i < 10 && !(await page.evaluate(() => document.activeElement?.classList.contains("task-title"))); i++) await page.keyboard.press("Tab");
  assert.ok(await page.evaluate(() => document.activeElement?.classList.contains("task-title")), "Tab reaches the list");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none", "focus is visible");
  const ids = await page.$$eval("#recent-list li", (items) => items.map((item) => item.dataset.taskId));
  let at = await page.evaluate(() => document.activeElement.closest("li").dataset.taskId);
  await page.keyboard.press("Home");
  for (let i = 0; i < ids.length && at !== tasks.edit; i++) {
    await page.keyboard.press("ArrowDown");
    at = await page.evaluate(() => document.activeElement.closest("li").dataset.taskId);
  }
  assert.equal(at, tasks.edit, "the arrows reach the task");
  await page.keyboard.press("Enter");
  await waitForOpen(page, tasks.edit);
  await finished("succeeded", page);
  let tabs = 0;
  for (; tabs < 60 && (await page.evaluate(() => document.activeElement?.id)) !== "follow-up-prompt"; tabs++) await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement?.id), "follow-up-prompt", "Tab reaches the follow-up composer");
  console.log(`keyboard: ${tabs} Tab presses from the list to the follow-up composer`);
  await page.keyboard.type("SCENARIO:answer and now in short");
  await page.keyboard.press("Control+Enter");
  const followUp = await waitForAnother(page, tasks.edit);
  await finished("succeeded", page);
  assert.equal(await page.locator("#task-parent-link").textContent(), "SCENARIO:edit-and-create improve the code");
  await page.locator(`#recent-list li[data-task-id="${followUp}"][data-parent-id="${tasks.edit}"]`).waitFor({ timeout: LONG });
  await assertAccessible(page, "a follow-up in its thread");
  await page.screenshot({ path: `${ARTIFACTS}/keyboard-follow-up.png`, fullPage: true });
});

test("at phone width the list is a drawer", async () => {
  await page.setViewportSize(PHONE);
  await page.locator("#sidebar").waitFor({ state: "hidden" });
  await showList(page);
  await page.locator("#recent-list li").first().waitFor();
  await assertAccessible(page, "phone, the list's drawer open");
  await page.screenshot({ path: `${ARTIFACTS}/phone-drawer.png` });
  await page.locator(`#recent-list li[data-task-id="${tasks.hang}"] .task-title`).click();
  await waitForOpen(page, tasks.hang);
  await page.locator("#sidebar").waitFor({ state: "hidden" });
  await finished("cancelled", page);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `no horizontal scrolling on a phone (overflow ${overflow}px)`);
  await assertAccessible(page, "phone, a task open");
  await page.screenshot({ path: `${ARTIFACTS}/phone-task.png`, fullPage: true });
  await page.setViewportSize({ width: 1100, height: 900 });
});

/** Opens the long task by its address in a fresh browser; answers the page's figures, and the
 * binary frames its socket brought. */
async function openLongTask() {
  const frames = [];
  const capture = (page) => page.on("websocket", (socket) => socket.on("framereceived", ({ payload }) => typeof payload !== "string" && frames.push(payload.toString("base64"))));
  const reader = await signedInPage(browser, READER_TOKEN, { path: `/tasks/${LONG_TASK}`, prepare: capture });
  await finished("succeeded", reader).catch(async (error) => {
    const shown = await reader.evaluate(() => `link ${document.getElementById("link").dataset.state}, ${document.querySelectorAll("#timeline > li").length} entries, "${document.getElementById("task-status").textContent}"`);
    throw new Error(`the long task did not finish on the page (${shown}): ${error}`);
  });
  await reader.waitForFunction(() => window.autopilot.render.ms > 0);
  const figures = await reader.evaluate(() => window.autopilot.render);
  figures.entries = await reader.locator("#timeline > li").count();
  return { ...figures, reader, frames };
}

/** Scrolls the page to the top and back to the end, each in a frame; answers how long it took. */
const scrollEndToEnd = (reader) =>
  reader.evaluate(async () => {
    const began = performance.now();
    const frame = () => new Promise((resolve) => requestAnimationFrame(resolve));
    window.scrollTo(0, 0);
    await frame();
    const top = window.scrollY;
    window.scrollTo(0, document.documentElement.scrollHeight);
    await frame();
    if (top !== 0 || window.scrollY === 0) throw new Error(`not scrollable: ${top} → ${window.scrollY}`);
    return performance.now() - began;
  });

const described = (f) => `${Math.round(f.ms)} ms from the open to the whole timeline drawn (${f.entries} entries; first event at ${Math.round(f.firstEventMs)} ms, last at ${Math.round(f.lastEventMs)} ms; ${f.draws} draws took ${Math.round(f.drawMs)} ms, folding the events ${Math.round(f.applyMs)} ms)`;

test(`a replayed ${LONG_TASK_EVENTS}-event timeline is drawn whole and scrollable (target: within ${RENDER_BUDGET_MS} ms)`, async () => {
  // The recorded task becomes the reader's right before its first pass (tests/browser.rs): the
  // first browser to open it follows it from the service, which the edge archives as it goes.
  const adopted = await fetch(`${process.env.CONTROL_URL}/adopt-long-task`, { method: "POST" });
  assert.equal(adopted.status, 200, await adopted.text());
  const first = await openLongTask();
  console.log(`first pass of ${first.events} events, followed from the service through the edge: ${described(first)}`);
  await first.reader.context().close();
  // Replayed from the edge's archive, in another browser: end to end, then the page's own part
  // (render_budget.ts): the frames its socket brought, decoded, folded and drawn afresh.
  const replay = await openLongTask();
  assert.equal(replay.events, Number(LONG_TASK_EVENTS), "every event arrived");
  console.log(`replay of ${replay.events} events from the edge's archive: ${described(replay)}`);
  const ms = await replay.reader.evaluate((frames) => window.autopilot.replayFrames(frames), replay.frames);
  const scrollMs = await scrollEndToEnd(replay.reader);
  const drawn = await replay.reader.locator("#timeline > li").count();
  console.log(`render ${LONG_TASK_EVENTS} events: ${Math.round(ms)} ms (${replay.frames.length} frames decoded, folded and drawn: ${drawn} entries), then scrolled end to end in ${Math.round(scrollMs)} ms`);
  assert.equal(drawn, replay.entries, "the same timeline");
  // The target is a figure this prints, not a pass/fail line: on a machine as noisy as CI's (two
  // cores, a build beside it) one run can take a fifth longer. Only a drawing gone quadratic
  // (several times the target) fails it.
  const total = Math.round(ms + scrollMs);
  console.log(`drawn and scrolled in ${total} ms: ${total <= RENDER_BUDGET_MS ? "within" : "OVER"} the ${RENDER_BUDGET_MS} ms target`);
  assert.ok(total <= RENDER_BUDGET_MS * RUNAWAY_FACTOR, `drawn and scrolled in ${total} ms, ${RUNAWAY_FACTOR}x the target or more`);
  await replay.reader.screenshot({ path: `${ARTIFACTS}/long-timeline.png` });
  await replay.reader.context().close();
});
