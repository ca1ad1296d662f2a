// Unit tests of the page's addresses (routes.ts): a task's URL opens it, anything else is the composer.
import assert from "node:assert/strict";
import { test } from "node:test";
import { pathOf, placeOf, samePlace } from "../src/routes.js";

const id = "0b6f3c1e-8d7a-4e2f-9c1b-2a3d4e5f6a7b";

test("a task's address names its mode and id, and reads back as the same place", () => {
  assert.equal(pathOf({ view: "task", mode: "container", taskId: id }), `/tasks/${id}`);
  assert.equal(pathOf({ view: "task", mode: "tunnel", taskId: id }), `/machine/tasks/${id}`);
  assert.deepEqual(placeOf(`/tasks/${id}`), { view: "task", mode: "container", taskId: id });
  assert.deepEqual(placeOf(`/machine/tasks/${id}/`), { view: "task", mode: "tunnel", taskId: id });
  assert.equal(pathOf({ view: "new" }), "/");
});

test("anything else is the New task composer, never a task with a strange id", () => {
  for (const path of ["/", "", "/tasks/", "/tasks/a/b", "/index.html", "/tasks/%E0%A4%A", "/tasks/a%20b", `/tasks/${"x".repeat(129)}`]) {
    assert.deepEqual(placeOf(path), { view: "new" }, path);
  }
});

test("places compare by what they show", () => {
  assert.ok(samePlace({ view: "new" }, { view: "new" }));
  assert.ok(!samePlace({ view: "task", mode: "container", taskId: id }, { view: "task", mode: "tunnel", taskId: id }));
});
