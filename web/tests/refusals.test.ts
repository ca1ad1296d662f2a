// Unit tests of how a refused start or follow-up reads (refusals.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { refusal } from "../src/refusals.js";

const body = (code: string, message: string) => ({ error: { code, message } });
const LIMIT = "3 tasks are running, the limit; wait for one to end or cancel one";

test("out of credits and at the task limit are told apart by the words, not the status (both 402)", () => {
  assert.equal(refusal(402, body("RESOURCE_EXHAUSTED", "insufficient credits: the balance is 0"), "container", "start"), "No credits: insufficient credits: the balance is 0");
  assert.equal(refusal(402, body("RESOURCE_EXHAUSTED", LIMIT), "container", "start"), `Too many tasks are running: wait for one to end, or cancel one. (${LIMIT})`);
  assert.equal(refusal(429, body("RESOURCE_EXHAUSTED", LIMIT), "tunnel", "follow-up"), `Too many tasks are running: wait for one to end, or cancel one. (${LIMIT})`);
  assert.equal(refusal(402, {}, "container", "start"), "No credits: HTTP 402", "a bare 402 is about credits");
});

test("an unreachable service or machine says which", () => {
  assert.equal(refusal(503, body("UNAVAILABLE", "no machine"), "tunnel", "start"), "Your machine is not reachable: no machine");
  assert.equal(refusal(503, body("UNAVAILABLE", "boom"), "container", "follow-up"), "The container failed to start: boom");
  assert.match(refusal(0, { error: { message: "The edge could not be reached (TypeError)." } }, "container", "start"), /^The edge could not be reached; try again/);
});

test("a start's other refusals are the edge's words (the form shows field errors beside their fields)", () => {
  assert.equal(refusal(400, body("INVALID_ARGUMENT", "prompt must not be empty"), "container", "start"), "prompt must not be empty");
  assert.equal(refusal(409, body("FAILED_PRECONDITION", "task t1 is running"), "container", "start"), "task t1 is running");
  assert.equal(refusal(500, {}, "container", "start"), "HTTP 500");
});

test("a follow-up's refusals say what happened to the task and what to do", () => {
  assert.match(refusal(409, body("FAILED_PRECONDITION", "task t1 is still running"), "container", "follow-up"), /^This task is still running: wait for it to end, or cancel it.*\(task t1 is still running\)$/);
  assert.match(refusal(404, body("NOT_FOUND", "no task with id t1"), "container", "follow-up"), /not known any more.*no task with id t1/);
  assert.equal(refusal(400, body("INVALID_ARGUMENT", "repository_url differs from the parent's"), "container", "follow-up"), "The follow-up was refused: repository_url differs from the parent's");
  assert.equal(refusal(500, {}, "container", "follow-up"), "The follow-up could not start: HTTP 500");
});
