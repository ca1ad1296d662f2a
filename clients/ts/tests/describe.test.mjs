// What a person reads of a task's pull request (`pullRequestText`), pure: from the messages a
// Status through the edge answers, and from the edge's proto3 JSON (default values left out) as
// `POST /api/tasks/{id}/pull-request` answers it. Needs no service.

import assert from "node:assert/strict";
import { test } from "node:test";
import { create, fromJson } from "@bufbuild/protobuf";
import { PullRequestSchema, TaskSchema, pullRequestText } from "../dist/index.js";

test("an opened pull request: its number, whether a draft, its page", () => {
  const draft = create(PullRequestSchema, { number: 7, url: "https://github.com/o/r/pull/7", draft: true });
  assert.equal(pullRequestText(draft), "#7 (draft) https://github.com/o/r/pull/7");
  const ready = create(PullRequestSchema, { number: 8, url: "https://github.com/o/r/pull/8" });
  assert.equal(pullRequestText(ready), "#8 https://github.com/o/r/pull/8");
});

test("a pull request already open for the branch was commented on", () => {
  const adopted = create(PullRequestSchema, { number: 3, url: "https://github.com/o/r/pull/3", draft: true, adopted: true });
  assert.equal(pullRequestText(adopted), "#3 (draft, commented on) https://github.com/o/r/pull/3");
});

test("a pull request GitHub refused: its words", () => {
  const refused = create(PullRequestSchema, { error: "Validation Failed: No commits between main and autopilot/t-1" });
  assert.equal(pullRequestText(refused), "not opened: Validation Failed: No commits between main and autopilot/t-1");
  assert.equal(pullRequestText(create(PullRequestSchema)), "not opened");
});

test("the edge's JSON, as the retry route and a task's delivery carry it", () => {
  const retried = fromJson(PullRequestSchema, { number: 7, url: "https://github.com/o/r/pull/7", draft: true });
  assert.equal(pullRequestText(retried), "#7 (draft) https://github.com/o/r/pull/7");
  const task = fromJson(TaskSchema, {
    taskId: "t-1",
    state: "TASK_STATE_SUCCEEDED",
    delivery: { branch: "autopilot/t-1", pushed: true, pullRequest: { error: "Not Found" } },
  });
  assert.equal(pullRequestText(task.delivery.pullRequest), "not opened: Not Found");
});
