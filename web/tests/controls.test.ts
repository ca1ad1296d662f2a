// Unit tests of which controls a task shows (controls.ts): Cancel while it runs, follow-up once it ended.
import assert from "node:assert/strict";
import { test } from "node:test";
import { controlsFor } from "../src/controls.js";

test("a running task can be cancelled, not continued", () => {
  for (const state of ["PENDING", "CLONING", "RUNNING"]) assert.deepEqual(controlsFor(state, false), { cancel: true, followUp: false }, state);
});

test("an ended task can be continued, not cancelled", () => {
  for (const state of ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"]) assert.deepEqual(controlsFor(state, true), { cancel: false, followUp: true }, state);
});

test("a final state before the final event: no Cancel, and no follow-up the edge would refuse yet", () => {
  assert.deepEqual(controlsFor("FAILED", false), { cancel: false, followUp: false });
});
