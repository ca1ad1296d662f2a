// The README's "start a task and print its events" example, run exactly as written: directly
// against the agent-service, and through the edge with a token.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { env } from "./env.mjs";

const packageDir = fileURLToPath(new URL("..", import.meta.url));

async function example() {
  const readme = await readFile(join(packageDir, "README.md"), "utf8");
  const block = readme.match(/```js\n([\s\S]*?)```/);
  assert.ok(block, "README.md has a ```js block");
  assert.equal(block[1].trim().split("\n").length, 3, "the example is three lines");
  return block[1];
}

/** Runs the example as a user would: saved as a file, `node example.mjs <repository>`. */
async function runExample(extraEnv) {
  // Inside the package, so `@autopilot/client` resolves to it as it would once installed.
  const dir = await mkdtemp(join(packageDir, ".readme-example-"));
  try {
    await writeFile(join(dir, "example.mjs"), await example());
    const { stdout } = await promisify(execFile)("node", [join(dir, "example.mjs"), env.repository], {
      env: { PATH: process.env.PATH, ...extraEnv },
      timeout: 120_000,
    });
    return stdout.trim().split("\n");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test("the README example, directly", async () => {
  const lines = await runExample({ AUTOPILOT_URL: env.serviceUrl });
  assert.match(lines[0], /^#1 state /);
  assert.match(lines.at(-1), /^#\d+ finished SUCCEEDED: All done: nothing needed changing\.$/);
});

test("the README example, through the edge with a token", async () => {
  const lines = await runExample({ AUTOPILOT_URL: env.edgeUrl, AUTOPILOT_TOKEN: env.edgeToken });
  assert.match(lines[0], /^#1 state /);
  assert.match(lines.at(-1), /^#\d+ finished SUCCEEDED: All done: nothing needed changing\.$/);
});
