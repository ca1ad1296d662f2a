// The checks every way of reaching the service must pass (directly, through the edge, over native
// gRPC): run a task to its end, resume from a seq, cancel a running task, refuse bad input.

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

export { AutopilotClient };
