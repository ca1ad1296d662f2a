// Unit tests of how a task is named (titles.ts): its prompt's first line, the id only as a last resort.
import assert from "node:assert/strict";
import { test } from "node:test";
import { firstLine, shortId, taskTitle } from "../src/titles.js";

test("the title is the prompt's first non-blank line", () => {
  assert.equal(taskTitle("t", "\n  Fix the tests  \nthen more"), "Fix the tests");
  assert.equal(taskTitle("t", undefined, "Listed title"), "Listed title");
  assert.equal(taskTitle("t", "   ", "Listed title"), "Listed title", "a blank prompt falls back to the list");
});

test("without a prompt or a title, a short id", () => {
  assert.equal(taskTitle("0b6f3c1e-8d7a-4e2f"), "Task 0b6f3c1e");
  assert.equal(shortId("abc"), "abc");
});

test("a long first line is cut", () => {
  const line = firstLine("x".repeat(500));
  assert.equal(line.length, 120);
  assert.ok(line.endsWith("…"));
});
