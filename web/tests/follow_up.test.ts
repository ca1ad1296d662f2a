// Unit tests of the follow-up box's decisions (follow_up.ts): when it shows, what it sends, and
// how each refusal reads.
import assert from "node:assert/strict";
import { test } from "node:test";
import { canFollowUp, followUpRefusal, followUpRequest } from "../src/follow_up.js";

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

const refusal = (code: string, message: string) => ({ error: { code, message } });

test("each refusal says what happened and what to do, with the edge's words", () => {
  assert.match(followUpRefusal(400, refusal("FAILED_PRECONDITION", "task t1 is still running"), "container"), /^This task is still running: wait for it to end, or cancel it.*\(task t1 is still running\)$/);
  assert.match(followUpRefusal(404, refusal("NOT_FOUND", "no task with id t1"), "container"), /not known any more.*no task with id t1/);
  const busy = "3 tasks are running, the limit; wait for one to end or cancel one";
  assert.match(followUpRefusal(429, refusal("RESOURCE_EXHAUSTED", busy), "container"), new RegExp(`^Too many tasks are running.*${busy}`));
  assert.equal(followUpRefusal(400, refusal("INVALID_ARGUMENT", "repository_url differs from the parent's"), "container"), "The follow-up was refused: repository_url differs from the parent's");
  assert.equal(followUpRefusal(402, refusal("RESOURCE_EXHAUSTED", "insufficient credits"), "container"), "No credits left for a follow-up: insufficient credits");
  assert.equal(followUpRefusal(503, refusal("UNAVAILABLE", "no machine"), "tunnel"), "Your machine is not reachable: no machine");
  assert.equal(followUpRefusal(503, refusal("UNAVAILABLE", "boom"), "container"), "The container failed to start: boom");
  assert.match(followUpRefusal(0, { error: { message: "The edge could not be reached (TypeError)." } }, "container"), /^The edge could not be reached; try again/);
  assert.equal(followUpRefusal(500, {}, "container"), "The follow-up could not start: HTTP 500");
});
