// Unit tests of the follow-up box's decisions (follow_up.ts): when it shows and what it sends.
import assert from "node:assert/strict";
import { test } from "node:test";
import { canFollowUp, followUpRequest } from "../src/follow_up.js";

test("the box shows under an ended task only", () => {
  assert.equal(canFollowUp(true), true);
  assert.equal(canFollowUp(false), false);
});

test("a follow-up sends the parent and the prompt, nothing else (the repository is the parent's)", () => {
  assert.deepEqual(followUpRequest("t1", "now also fix the tests\n"), { request: { parentTaskId: "t1", prompt: "now also fix the tests\n" } });
  assert.equal(followUpRequest("t1", "  \n").error, "Say what to change.");
  assert.equal(followUpRequest("", "x").error, "Open a task first.");
  assert.equal(followUpRequest("t1", "é".repeat(50_001)).error, "At most 100000 bytes.", "bytes, as the service counts them");
  assert.ok(followUpRequest("t1", "a".repeat(100_000)).request);
});
