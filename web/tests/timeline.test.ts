// Unit tests of the page's pure logic (run with `npm test`: bundled by esbuild, run by node:test).
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { EventSchema, FileChangeStatus, TaskState, WorkspaceOrigin } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { reconnectDelay } from "../src/reconnect.js";
import { renderMarkdown } from "../src/markdown.js";
import { SETUP_LINES_KEPT, summarizeToolInput, Timeline } from "../src/timeline.js";
import { fieldOfServiceError, validateStartForm } from "../src/validate.js";

const event = (seq: number, payload: any) => create(EventSchema, { taskId: "t", seq: BigInt(seq), payload });

test("a resubscription's overlap never shows an entry twice", () => {
  const timeline = new Timeline();
  const events = [
    event(1, { case: "stateChanged", value: { to: TaskState.PENDING } }),
    event(2, { case: "toolStarted", value: { toolId: "a", name: "Bash", inputJson: '{"command":"ls -1"}' } }),
    event(3, { case: "toolFinished", value: { toolId: "a", output: "README.md", isError: false } }),
    event(4, { case: "agentText", value: { text: "done" } }),
  ];
  for (const e of events) assert.equal(timeline.apply(e), true);
  for (const e of events.slice(1)) assert.equal(timeline.apply(e), false, "a replayed event is ignored");
  assert.deepEqual(timeline.entries.map((e) => e.seq), [1, 2, 4]);
  const tool = timeline.entries[1];
  assert.equal(tool.kind === "tool" && tool.output, "README.md", "the result is attached to its call");
  assert.equal(timeline.lastSeq, 4);
});

test("the final event ends the timeline with usage and state", () => {
  const timeline = new Timeline();
  timeline.apply(event(1, { case: "taskFinished", value: { state: TaskState.CANCELLED, error: "cancelled by request", usage: { inputTokens: 5n, outputTokens: 2n, costUsd: 0.5 } } }));
  assert.equal(timeline.state, "CANCELLED");
  assert.equal(timeline.ended, true);
  assert.deepEqual(timeline.usage, { inputTokens: 5, outputTokens: 2, costUsd: 0.5 });
});

test("the delivered work shows as a diff entry, then the commit and push", () => {
  const timeline = new Timeline();
  timeline.apply(event(1, { case: "diff", value: {
    baseCommit: "abc",
    stats: { filesChanged: 2, insertions: 6n, deletions: 1n },
    files: [
      { path: "main.rs", status: FileChangeStatus.MODIFIED, insertions: 3, deletions: 1, patch: "@@ -1 +1,3 @@" },
      { path: "NOTES.md", status: FileChangeStatus.ADDED, insertions: 3, deletions: 0, patch: "", patchOmitted: true },
    ],
  } }));
  timeline.apply(event(2, { case: "committed", value: { branch: "autopilot/t", commit: "0123456789abcdef" } }));
  timeline.apply(event(3, { case: "branchPushed", value: { branch: "autopilot/t", commit: "0123456789abcdef", remoteUrl: "https://***@example.com/r.git" } }));
  const [diff, committed, pushed] = timeline.entries;
  assert.equal(diff.kind, "diff");
  assert.deepEqual(diff.kind === "diff" && [diff.filesChanged, diff.insertions, diff.deletions], [2, 6, 1]);
  assert.deepEqual(diff.kind === "diff" && diff.files.map((f) => `${f.status} ${f.path}`), ["modified main.rs", "added NOTES.md"]);
  assert.deepEqual(committed.kind === "delivered" && [committed.step, committed.branch], ["committed", "autopilot/t"]);
  assert.equal(pushed.kind === "delivered" && pushed.remoteUrl, "https://***@example.com/r.git");
});

test("tool inputs are summarised on one line", () => {
  assert.equal(summarizeToolInput("Bash", '{"command":"ls -1\\necho hi"}'), "ls -1");
  assert.equal(summarizeToolInput("Write", '{"file_path":"/w/a.md","content":"x"}'), "/w/a.md");
  assert.equal(summarizeToolInput("X", "not json"), "not json");
});

test("agent markdown cannot inject HTML or script links", () => {
  const html = renderMarkdown('**hi** <img src=x onerror="alert(1)"> <script>alert(1)</script> [x](javascript:alert(1))');
  assert.match(html, /<strong>hi<\/strong>/);
  assert.doesNotMatch(html, /<img|<script|href="javascript/);
});

test("the form is validated as the contract does", () => {
  const form = { repositoryUrl: "https://github.com/a/b.git", gitRef: "", prompt: "fix it", model: "", maxTurns: "", maxBudgetUsd: "" };
  assert.deepEqual(validateStartForm(form).request, { repositoryUrl: "https://github.com/a/b.git", prompt: "fix it" });
  const bad = validateStartForm({ ...form, repositoryUrl: "ext::sh -c x", prompt: " ", model: "a b", maxTurns: "-1", maxBudgetUsd: "x", gitRef: "--x" });
  assert.deepEqual(Object.keys(bad.errors).sort(), ["gitRef", "maxBudgetUsd", "maxTurns", "model", "prompt", "repositoryUrl"]);
  assert.equal(validateStartForm({ ...form, maxTurns: "5", maxBudgetUsd: "1.5" }).request?.options?.maxTurns, 5);
  assert.equal(fieldOfServiceError("repository_url is not a supported repository URL"), "repositoryUrl");
});

test("reconnects back off from a quick first try to a ceiling", () => {
  assert.equal(reconnectDelay(0, () => 0), 250);
  assert.equal(reconnectDelay(3, () => 0), 2000);
  assert.equal(reconnectDelay(20, () => 0), 8000);
  assert.ok(reconnectDelay(0, () => 1) < 250);
});

test("a changed entry is a new object, an unchanged one stays the same (views redraw by identity)", () => {
  const timeline = new Timeline();
  timeline.apply(event(1, { case: "agentText", value: { text: "hi" } }));
  timeline.apply(event(2, { case: "toolStarted", value: { toolId: "a", name: "Bash", inputJson: '{"command":"ls"}' } }));
  const [text, call] = timeline.entries;
  const version = timeline.version;
  timeline.apply(event(3, { case: "toolFinished", value: { toolId: "a", output: "x", isError: true } }));
  assert.equal(timeline.entries[0], text);
  assert.notEqual(timeline.entries[1], call);
  assert.equal(call.kind === "tool" && call.output, undefined, "the old object is left as it was");
  const done = timeline.entries[1];
  assert.deepEqual(done.kind === "tool" && [done.output, done.isError], ["x", true]);
  assert.equal(timeline.version, version + 1);
});

test("a setup's output gathers in one entry, replaced as it grows, with how it ended", () => {
  const timeline = new Timeline();
  timeline.apply(event(1, { case: "stateChanged", value: { to: TaskState.SETTING_UP } }));
  timeline.apply(event(2, { case: "setupStarted", value: { environmentName: "web", maintenance: true, workspaceOrigin: WorkspaceOrigin.PREPARED } }));
  const started = timeline.entries[1];
  timeline.apply(event(3, { case: "setupOutput", value: { line: "npm ci" } }));
  timeline.apply(event(4, { case: "setupOutput", value: { line: "added 3 packages" } }));
  timeline.apply(event(5, { case: "setupFinished", value: { exitCode: 0, duration: { seconds: 2n, nanos: 500_000_000 }, timedOut: false } }));
  assert.equal(timeline.state, "SETTING_UP");
  assert.equal(timeline.entries.length, 2, "one entry for the whole script");
  const setup = timeline.entries[1];
  assert.notEqual(setup, started, "a changed entry is a new object");
  assert.deepEqual(setup.kind === "setup" && [setup.environment, setup.maintenance, setup.origin, setup.lines, setup.ended], [
    "web", true, "prepared", ["npm ci", "added 3 packages"], { exitCode: 0, durationMs: 2500, timedOut: false },
  ]);
  const long = new Timeline();
  long.apply(event(1, { case: "setupStarted", value: { environmentName: "web" } }));
  for (let i = 0; i < SETUP_LINES_KEPT + 7; i++) long.apply(event(i + 2, { case: "setupOutput", value: { line: `line ${i}` } }));
  const kept = long.entries[0];
  assert.deepEqual(kept.kind === "setup" && [kept.lines.length, kept.linesDropped, kept.lines[0]], [SETUP_LINES_KEPT, 7, "line 7"]);
});
