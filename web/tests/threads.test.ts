// Unit tests of the grouping of a conversation's turns into threads (threads.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { threadOf, threadRows, type Threaded } from "../src/threads.js";

/** Tasks as listed (newest first), each "id" or "id<parent". */
const listed = (...specs: string[]): Threaded[] =>
  specs.map((spec) => {
    const [taskId, parentTaskId = ""] = spec.split("<");
    return { taskId, parentTaskId };
  });
const shape = (tasks: Threaded[]) => threadRows(tasks).map((row) => `${"  ".repeat(row.depth)}${row.task.taskId}`);

test("tasks without follow-ups keep the list's order, each a thread of its own", () => {
  assert.deepEqual(shape(listed("c", "b", "a")), ["c", "b", "a"]);
  assert.deepEqual(threadRows(listed("c", "b")).map((r) => [r.rootId, r.depth, r.unlistedParentId]), [["c", 0, ""], ["b", 0, ""]]);
  assert.deepEqual(threadRows([]), []);
});

test("a conversation reads top down under its first turn, standing where its newest turn is listed", () => {
  // a, then x, then a's follow-up b, then b's follow-up c: the thread a-b-c was spoken to last.
  assert.deepEqual(shape(listed("c<b", "b<a", "x", "a")), ["a", "  b", "    c", "x"]);
  // x was started after the conversation's last turn: it comes first.
  assert.deepEqual(shape(listed("x", "c<b", "b<a", "a")), ["x", "a", "  b", "    c"]);
  const rows = threadRows(listed("c<b", "b<a", "x", "a"));
  assert.deepEqual(rows.map((r) => r.rootId), ["a", "a", "a", "x"]);
});

test("two follow-ups of one task both sit under it, the older first", () => {
  assert.deepEqual(shape(listed("b2<a", "b1<a", "a")), ["a", "  b1", "  b2"]);
  assert.deepEqual(shape(listed("c<b1", "b2<a", "b1<a", "a")), ["a", "  b1", "    c", "  b2"]);
});

test("a follow-up whose parent is not listed (yet) starts a thread, marked; More brings the parent in", () => {
  const firstPage = threadRows(listed("b<a", "x"));
  assert.deepEqual(firstPage.map((r) => [r.task.taskId, r.depth, r.unlistedParentId]), [["b", 0, "a"], ["x", 0, ""]]);
  assert.deepEqual(shape(listed("b<a", "x", "a")), ["a", "  b", "x"], "once listed, the parent heads the thread");
});

test("a task listed twice shows once; ids that loop or name themselves do not hang the page", () => {
  assert.deepEqual(shape(listed("b<a", "a", "b<a")), ["a", "  b"]);
  assert.deepEqual(shape(listed("a<a")), ["a"]);
  assert.deepEqual(threadRows(listed("a<a"))[0].unlistedParentId, "", "its own parent is no parent");
  const loop = shape(listed("a<b", "b<a", "c<a"));
  assert.equal(loop.length, 3, `every task once: ${loop}`);
  assert.deepEqual([...loop].map((s) => s.trim()).sort(), ["a", "b", "c"]);
});

test("the thread of a task: its turns in reading order, whichever turn is asked about", () => {
  const rows = threadRows(listed("c<b", "y", "b<a", "x", "a"));
  for (const id of ["a", "b", "c"]) assert.deepEqual(threadOf(rows, id).map((r) => r.task.taskId), ["a", "b", "c"]);
  assert.deepEqual(threadOf(rows, "y").map((r) => r.task.taskId), ["y"]);
  assert.deepEqual(threadOf(rows, "nope"), []);
});
