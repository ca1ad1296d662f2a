import assert from "node:assert/strict";
import { test } from "node:test";
import { pullRequestLine } from "../src/github.js";
import { validateStartForm } from "../src/validate.js";

test("a pull request line links to it, says a draft and an adopted one, or quotes GitHub's refusal", () => {
  const url = "https://github.com/octo/app/pull/7";
  assert.deepEqual(pullRequestLine({ number: 7, url, draft: true }), { kind: "link", text: "Pull request #7 (draft)", url });
  assert.deepEqual(pullRequestLine({ number: 7, url, adopted: true }), { kind: "link", text: "Pull request #7 · commented on", url });
  assert.deepEqual(pullRequestLine({ error: "GitHub refused: Resource not accessible by integration" }), {
    kind: "refused",
    text: "No pull request: GitHub refused: Resource not accessible by integration",
  });
  assert.equal(pullRequestLine({}).text, "No pull request: it was not opened");
});

test("asking for a pull request pushes the branch and asks the edge to open one", () => {
  const form = { repositoryUrl: "http://127.0.0.1:9/octo/app", gitRef: "", prompt: "fix it", model: "", maxTurns: "", maxBudgetUsd: "" };
  assert.equal(validateStartForm(form).request?.delivery, undefined, "nothing asked, nothing sent");
  assert.deepEqual(validateStartForm({ ...form, pullRequest: true }).request?.delivery, { push: true, pullRequest: { open: true } });
  assert.deepEqual(validateStartForm(form).errors, {}, "a local GitHub's http:// URL passes; the service decides");
});
