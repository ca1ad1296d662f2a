// What the browser scripts share (browser.e2e.mjs, workspace.e2e.mjs): Chromium launched as the
// machine allows, a page signed in through the form, the timeline's waits, the list's drawer on a
// phone, and axe-core's check of a state (no serious or critical violation).
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

export const { EDGE_URL, CHROMIUM, ARTIFACTS } = process.env;
export const LONG = 60_000;
export const DESKTOP = { width: 1100, height: 900 };
export const PHONE = { width: 390, height: 844 };
/** The widest viewport (48rem) at which the list is a drawer (styles.css, drawer.ts). */
const PHONE_MAX_WIDTH = 768;
const AXE = createRequire(import.meta.url).resolve("axe-core/axe.min.js");

export function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}

/** A fresh browser context at `path` of the site, signed in through the form with `token`;
 * `prepare` gets the page before it loads anything. */
export async function signedInPage(browser, token, { viewport = DESKTOP, path = "/", prepare = () => {} } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.on("pageerror", (error) => console.error("page error:", error));
  prepare(page);
  await page.goto(`${EDGE_URL}${path}`);
  await page.getByLabel("API token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("Signed in as").waitFor();
  return page;
}

export const finished = (state, on) => on.locator(`#timeline li.entry.finished.final-${state}`).waitFor({ timeout: LONG });

/** The seqs of the timeline's own entries (a diff's file list nests more elements). */
export const seqs = (on) => on.$$eval("#timeline > li", (items) => items.map((item) => Number(item.dataset.seq)));

/** The id of the task whose conversation is open. */
export const openTaskId = (on) => on.locator("#task-id").textContent();

/** Waits until the open task is `taskId`. */
export const waitForOpen = (on, taskId) => on.waitForFunction((id) => document.getElementById("task-id").textContent === id && !document.getElementById("task").hidden, taskId);

/** Waits until the open task is another than `taskId`; answers its id. */
export async function waitForAnother(on, taskId) {
  await on.waitForFunction((old) => {
    const id = document.getElementById("task-id").textContent;
    return id && id !== old && !document.getElementById("task").hidden;
  }, taskId);
  return openTaskId(on);
}

/** On a phone the task list is a drawer: opens it (nothing to do at desktop width). The toggle
 * shows once the page has seen the width change (a media query's change event), so it is waited for. */
export async function showList(on) {
  if (on.viewportSize().width > PHONE_MAX_WIDTH) return;
  const toggle = on.getByRole("button", { name: "Tasks" });
  await toggle.waitFor();
  if ((await toggle.getAttribute("aria-expanded")) !== "true") await toggle.click();
  await on.locator("#sidebar").waitFor();
}

/** Shows the New task composer (the open task, if any, is left by its address). */
export async function showComposer(on) {
  if (await on.locator("#start-form").isVisible()) return;
  await showList(on);
  await on.getByRole("button", { name: "New task" }).click();
  await on.locator("#start-form").waitFor();
}

/** Runs axe-core on the page as it is: fails on any serious or critical violation. */
export async function assertAccessible(on, state) {
  if (!(await on.evaluate(() => Boolean(window.axe)))) await on.addScriptTag({ path: AXE });
  const { violations } = await on.evaluate(() => window.axe.run(document, { resultTypes: ["violations"] }));
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  const described = (list) => list.map((v) => `${v.impact} ${v.id}: ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(" ")).join(", ")}`);
  console.log(`axe, ${state}: ${violations.length} violation(s), ${bad.length} serious or critical${violations.length ? `\n  ${described(violations).join("\n  ")}` : ""}`);
  assert.deepEqual(described(bad), [], `${state}: no serious or critical accessibility violation`);
}
