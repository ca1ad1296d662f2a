// The checks every way of reaching the service must pass (directly, through the edge, over native
// gRPC): run a task to its end, resume from a seq, cancel a running task, refuse bad input; and
// the task list, a page at a time (`listing`, registered where the service's own list is served).

import assert from "node:assert/strict";
import { AutopilotClient, Code, ConnectError, TaskState, describe } from "../dist/index.js";
import { collect, env } from "./env.mjs";

/** Registers the shared checks for `makeClient` with node:test's `test`. */
export function behaviour(test, makeClient) {
  test("run follows a task to its end, with status and resume", { timeout: 60_000 }, async () => {
    const client = makeClient();
    const events = await collect(
      client.run({ repositoryUrl: env.repository, prompt: "Two steps SCENARIO:many-tools:2", options: { maxTurns: 10 } }),
    );
    assert.deepEqual(events.map((e) => Number(e.seq)), events.map((_, i) => i + 1), "dense seqs from 1");
    const tools = events.filter((e) => e.payload.case === "toolStarted").map((e) => e.payload.value);
    assert.deepEqual(tools.map((t) => t.name), ["Bash", "Bash"]);
    const outputs = events.filter((e) => e.payload.case === "toolFinished").map((e) => e.payload.value.output.trim());
    assert.deepEqual(outputs, ["step 1", "step 2"]);
    const last = events.at(-1);
    assert.equal(last.payload.case, "taskFinished");
    assert.equal(last.payload.value.state, TaskState.SUCCEEDED);
    assert.equal(describe(last), `#${last.seq} finished SUCCEEDED: Ran 2 steps.`);

    const taskId = events[0].taskId;
    const task = await client.status(taskId);
    assert.equal(task.state, TaskState.SUCCEEDED);
    assert.equal(task.lastSeq, BigInt(events.length));
    assert.equal(task.commit, env.mainCommit);
    assert.equal(task.options?.maxTurns, 10);

    const from = events.length - 2;
    const rest = await collect(client.events(taskId, from));
    assert.deepEqual(rest.map((e) => Number(e.seq)), [from, from + 1, from + 2]);
    assert.deepEqual(rest, events.slice(from - 1), "the replay is the same events, each once");
  });

  test("cancel stops a running task", { timeout: 60_000 }, async () => {
    const client = makeClient();
    const started = await client.start({ repositoryUrl: env.repository, prompt: "Slowly SCENARIO:slow-tools:40" });
    assert.equal(started.state, TaskState.PENDING);
    let lastSeen = 0n;
    for await (const event of client.events(started.taskId)) {
      lastSeen = event.seq;
      if (event.payload.case === "toolStarted") break; // leaving the loop ends the stream
    }
    const cancelled = await client.cancel(started.taskId, "changed my mind");
    assert.deepEqual([cancelled.taskId, cancelled.state], [started.taskId, TaskState.CANCELLED]);
    const rest = await collect(client.events(started.taskId, Number(lastSeen) + 1));
    const finished = rest.at(-1).payload;
    assert.equal(finished.case, "taskFinished");
    assert.equal(finished.value.state, TaskState.CANCELLED);
    assert.equal(finished.value.error, "cancelled: changed my mind");
  });

  test("bad input is refused with the code and the field", { timeout: 60_000 }, async () => {
    const client = makeClient();
    await assert.rejects(client.start({ repositoryUrl: env.repository, prompt: "" }), (error) => {
      assert.ok(error instanceof ConnectError, String(error));
      assert.equal(error.code, Code.InvalidArgument);
      assert.match(error.rawMessage, /prompt/);
      return true;
    });
    await assert.rejects(client.status("no-such-task"), (error) => error.code === Code.NotFound);
    await assert.rejects(collect(client.events("no-such-task")), (error) => error.code === Code.NotFound);
  });
}

/** Registers the task list's checks for `makeClient` with node:test's `test`. */
export function listing(test, makeClient) {
  test("listTasks pages the tasks newest first", { timeout: 60_000 }, async () => {
    const client = makeClient();
    const events = await collect(client.run({ repositoryUrl: env.repository, prompt: "Listed\nSCENARIO:answer" }));
    const taskId = events[0].taskId;

    const newest = await client.listTasks(1);
    assert.deepEqual(newest.tasks.map((t) => t.taskId), [taskId]);
    const [summary] = newest.tasks;
    assert.deepEqual([summary.state, summary.title, summary.repositoryUrl], [TaskState.SUCCEEDED, "Listed", env.repository]);
    assert.ok(summary.createTime && summary.endTime, "created and ended");

    const listed = [];
    let token = "";
    do {
      const page = await client.listTasks(2, token);
      listed.push(...page.tasks);
      token = page.nextPageToken;
    } while (token);
    assert.equal(listed[0].taskId, taskId);
    assert.equal(new Set(listed.map((t) => t.taskId)).size, listed.length, "each task once");
    const all = await client.listTasks(100);
    assert.deepEqual(all.tasks.map((t) => t.taskId), listed.map((t) => t.taskId));
    assert.equal(all.nextPageToken, "");

    for (const [pageSize, pageToken, field] of [[101, "", /page_size/], [0, "xyz", /page_token/]]) {
      await assert.rejects(client.listTasks(pageSize, pageToken), (error) => {
        assert.equal(error.code, Code.InvalidArgument);
        assert.match(error.rawMessage, field);
        return true;
      });
    }
  });
}

/** Registers the follow-up check (a task continuing an ended one) where the service is reached directly. */
export function followUps(test, makeClient) {
  test("a follow-up continues an ended task on its branch", { timeout: 60_000 }, async () => {
    const client = makeClient();
    const parent = await collect(client.run({ repositoryUrl: env.repository, prompt: "Write notes\nSCENARIO:write-file" }));
    const parentTaskId = parent[0].taskId;
    const events = await collect(client.run({ parentTaskId, prompt: "Extend them\nSCENARIO:read-and-extend" }));
    const last = events.at(-1);
    assert.equal(last.payload.value.state, TaskState.SUCCEEDED, last.payload.value.error);
    assert.match(last.payload.value.result, /hello from the agent/, "it read the file its parent wrote");
    const task = await client.status(events[0].taskId);
    const parentTask = await client.status(parentTaskId);
    assert.equal(task.parentTaskId, parentTaskId);
    assert.equal(task.delivery?.branch, parentTask.delivery?.branch, "on its parent's branch");
    assert.equal(task.delivery?.baseCommit, parentTask.delivery?.commit, "on top of its parent's commit");
  });
}

export { AutopilotClient };
