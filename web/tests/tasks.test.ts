// Unit tests of the task list's pure logic (tasks.ts): the edge's JSON page, each entry's text,
// paging and refreshing.
import assert from "node:assert/strict";
import { test } from "node:test";
import { anyRunning, describeTask, parentOf, elapsedOf, formatElapsed, MAX_PAGE_SIZE, PAGE_SIZE, pageQuery, parseTaskPage, TaskList, type TaskPage } from "../src/tasks.js";

const at = (iso: string) => Date.parse(iso);
const utc = (ms: number) => new Date(ms).toISOString();

/** A page as GET /api/tasks answers it (ListTasksResponse in proto3 JSON). */
const reply = {
  tasks: [
    {
      taskId: "t3",
      state: "TASK_STATE_RUNNING",
      repositoryUrl: "https://example.com/app.git",
      title: "Fix the flaky test",
      createTime: "2025-03-04T10:00:00Z",
    },
    {
      taskId: "t2",
      state: "TASK_STATE_SUCCEEDED",
      repositoryUrl: "https://example.com/app.git",
      gitRef: "main",
      title: "",
      createTime: "2025-03-04T09:00:00.250Z",
      endTime: "2025-03-04T09:05:00Z",
      usage: { inputTokens: "1200", outputTokens: "300", costUsd: 0.01234 },
      branch: "autopilot/t2",
      commit: "0123456789abcdef0123456789abcdef01234567",
      aFieldFromANewerEdge: true,
    },
    { taskId: "t1", state: "TASK_STATE_FAILED", repositoryUrl: "https://***@example.com/secret.git", title: "Old one", createTime: "2025-03-03T08:00:00Z" },
  ],
  nextPageToken: "abc+/=",
};

test("a page of the edge's list is read from its proto3 JSON, newest first, unknown fields skipped", () => {
  const page = parseTaskPage(reply);
  assert.deepEqual(page.tasks.map((t) => t.taskId), ["t3", "t2", "t1"]);
  assert.equal(page.nextPageToken, "abc+/=");
  assert.equal(page.tasks[1].usage?.costUsd, 0.01234);
  assert.equal(parseTaskPage({}).nextPageToken, "", "the last page has no token");
  assert.deepEqual(parseTaskPage({ tasks: [] }).tasks, []);
  assert.throws(() => parseTaskPage({ tasks: "nope" }), "a malformed reply is an error, not an empty list");
});

test("an entry shows the title (or the repository), the state, the cost and when it was created", () => {
  const [running, succeeded, failed] = parseTaskPage(reply).tasks;
  const ended = describeTask(succeeded, undefined, utc);
  assert.equal(ended.title, "https://example.com/app.git", "no title: the repository");
  assert.equal(ended.state, "SUCCEEDED");
  assert.equal(ended.stateLabel, "Succeeded");
  assert.equal(ended.ended, true);
  assert.equal(ended.cost, "$0.0123", "formatted as the timeline does");
  assert.equal(ended.createdMs, at("2025-03-04T09:00:00.250Z"));
  assert.equal(ended.created, "2025-03-04T09:00:00.250Z");
  assert.equal(ended.repository, "https://example.com/app.git @ main");

  const live = describeTask(running, undefined, utc);
  assert.deepEqual([live.title, live.state, live.stateLabel, live.ended], ["Fix the flaky test", "RUNNING", "Running", false]);
  assert.equal(live.cost, "", "a running task's cost is not known yet");

  const old = describeTask(failed, undefined, utc);
  assert.deepEqual([old.stateLabel, old.cost], ["Failed", "$0.0000"], "an ended task without usage cost nothing");
  assert.equal(old.repository, "https://***@example.com/secret.git", "as the edge masked it");
});

test("what the page saw of a task it followed shows until the list says the task ended", () => {
  const [running, succeeded] = parseTaskPage(reply).tasks;
  const followed = describeTask(running, { state: "CANCELLED", costUsd: 0.5 }, utc);
  assert.deepEqual([followed.state, followed.stateLabel, followed.ended, followed.cost], ["CANCELLED", "Cancelled", true, "$0.5000"]);
  const stillRunning = describeTask(running, { state: "RUNNING", costUsd: 0.002 }, utc);
  assert.deepEqual([stillRunning.stateLabel, stillRunning.cost], ["Running", "$0.0020"]);
  const archived = describeTask(succeeded, { state: "RUNNING", costUsd: 0 }, utc);
  assert.deepEqual([archived.state, archived.cost], ["SUCCEEDED", "$0.0123"], "the edge's end wins");
});

test("an entry without a creation time or a title still reads", () => {
  const [summary] = parseTaskPage({ tasks: [{ taskId: "x", repositoryUrl: "/srv/repo", title: "  " }] }).tasks;
  const entry = describeTask(summary, undefined, utc);
  assert.deepEqual([entry.title, entry.created, entry.state, entry.stateLabel], ["/srv/repo", "", "UNSPECIFIED", "UNSPECIFIED"]);
});

const page = (ids: string[], nextPageToken = ""): TaskPage =>
  parseTaskPage({ tasks: ids.map((taskId) => ({ taskId, state: "TASK_STATE_SUCCEEDED" })), nextPageToken });

test("More appends the next page; a task listed twice (the list moved meanwhile) shows once", () => {
  const list = new TaskList();
  assert.equal(list.loaded, false, "before the first page, 'no tasks' is not known");
  list.replace(page(["e", "d", "c"], "t1"));
  assert.equal(list.loaded, true);
  assert.equal(list.hasMore, true);
  list.append(page(["c", "b", "a"]));
  assert.deepEqual(list.tasks.map((t) => t.taskId), ["e", "d", "c", "b", "a"]);
  assert.equal(list.hasMore, false);
  assert.equal(list.get("b")?.taskId, "b");
  assert.equal(list.get("z"), undefined);
});

test("a refresh asks for as many tasks as are shown, within the edge's page sizes", () => {
  const list = new TaskList();
  assert.equal(list.refreshSize(), PAGE_SIZE);
  list.replace(page(Array.from({ length: 12 }, (_, i) => `t${i}`), "more"));
  assert.equal(list.refreshSize(), 12);
  list.replace(page(Array.from({ length: 150 }, (_, i) => `t${i}`)));
  assert.equal(list.refreshSize(), MAX_PAGE_SIZE);
  list.replace(page(["new", "t0"], "n"));
  assert.deepEqual(list.tasks.map((t) => t.taskId), ["new", "t0"], "a refresh replaces the list");
  list.clear();
  assert.deepEqual([list.tasks.length, list.hasMore, list.loaded], [0, false, false]);
});

test("a page's query carries its size and the edge's token, encoded, on its mode's route", () => {
  assert.equal(pageQuery("container", 5), "/api/tasks?pageSize=5");
  assert.equal(pageQuery("container", 5, "abc+/="), "/api/tasks?pageSize=5&pageToken=abc%2B%2F%3D");
  assert.equal(pageQuery("tunnel", 5), "/api/tunnel/tasks?pageSize=5", "tunnel tasks: the relay's list");
  assert.equal(pageQuery("tunnel", 20, "x"), "/api/tunnel/tasks?pageSize=20&pageToken=x");
});

test("elapsed time reads at a glance at every scale", () => {
  assert.deepEqual([0, 420, 9_949, 10_000, 42_700, 59_999].map(formatElapsed), ["0.0 s", "0.4 s", "9.9 s", "10 s", "42 s", "59 s"]);
  assert.deepEqual([60_000, 185_000, 3_599_000, 3_600_000, 7_620_000].map(formatElapsed), ["1 min 00 s", "3 min 05 s", "59 min 59 s", "1 h 00 min", "2 h 07 min"]);
  assert.equal(formatElapsed(-5), "0.0 s", "a clock a little behind the edge's is not negative");
});

test("a running task shows how long it has run; an ended one how long it took", () => {
  const [running, succeeded, failed] = parseTaskPage(reply).tasks;
  const now = at("2025-03-04T10:00:42Z");
  assert.equal(elapsedOf(describeTask(running), now), "42 s");
  assert.equal(elapsedOf(describeTask(succeeded), now), "4 min 59 s", "from creation to its end, whatever the time now");
  assert.equal(elapsedOf(describeTask(failed), now), "", "an end the edge does not say is not made up");
  assert.equal(elapsedOf(describeTask(running, { state: "SUCCEEDED", costUsd: 0 }), now), "", "ended as seen here; its end time is not known yet");
  const [undated] = parseTaskPage({ tasks: [{ taskId: "u", state: "TASK_STATE_RUNNING" }] }).tasks;
  assert.equal(elapsedOf(describeTask(undated), now), "");
});

test("the list is polled while any task in it runs, as far as the list or the page knows", () => {
  const [running, succeeded] = parseTaskPage(reply).tasks;
  assert.equal(anyRunning([succeeded], new Map()), false);
  assert.equal(anyRunning([succeeded, running], new Map()), true);
  assert.equal(anyRunning([running], new Map([["t3", { state: "CANCELLED", costUsd: 0 }]])), false, "followed to its end here");
  assert.equal(anyRunning([], new Map()), false);
});

test("a follow-up's summary names its parent; other tasks and unlisted ones name none", () => {
  const [child, root] = parseTaskPage({ tasks: [{ taskId: "b", parentTaskId: "a" }, { taskId: "a" }] }).tasks;
  assert.equal(parentOf(child), "a");
  assert.equal(parentOf(root), "");
  assert.equal(parentOf(undefined), "");
});

test("a refresh brings newer tasks in and keeps the older ones More had listed, with their token", () => {
  const list = new TaskList();
  list.refresh(page(["e", "d"], "after-d"));
  list.append(page(["c", "b"], "after-b"));
  // Two tasks started since: the refresh (as large as what is shown) ends at c, past which b went.
  list.refresh(page(["g", "f", "e", "d"], "after-d2"));
  assert.deepEqual(list.tasks.map((t) => t.taskId), ["g", "f", "e", "d", "c", "b"]);
  assert.equal(list.nextPageToken, "after-b", "More goes on after the last task shown");
  // Nothing new: the same tasks, the page's own token.
  list.refresh(page(["g", "f", "e", "d", "c", "b"], "after-b2"));
  assert.equal(list.nextPageToken, "after-b2");
  // A page that reaches the end is the whole list: a task pruned meanwhile goes.
  list.refresh(page(["g", "f", "e", "d", "c"]));
  assert.deepEqual(list.tasks.map((t) => t.taskId), ["g", "f", "e", "d", "c"]);
  assert.equal(list.hasMore, false);
});
