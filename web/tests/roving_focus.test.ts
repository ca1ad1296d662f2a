// Unit tests of the task lists' arrow-key moves (roving_focus.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { movedIndex } from "../src/roving_focus.js";

test("the arrows move one entry and stop at the ends; Home and End jump", () => {
  assert.equal(movedIndex("ArrowDown", 0, 3), 1);
  assert.equal(movedIndex("ArrowDown", 2, 3), 2);
  assert.equal(movedIndex("ArrowUp", 0, 3), 0);
  assert.equal(movedIndex("ArrowUp", 2, 3), 1);
  assert.equal(movedIndex("Home", 2, 3), 0);
  assert.equal(movedIndex("End", 0, 3), 2);
});

test("other keys (Enter opens) and empty lists move nothing", () => {
  assert.equal(movedIndex("Enter", 1, 3), undefined);
  assert.equal(movedIndex("a", 1, 3), undefined);
  assert.equal(movedIndex("ArrowDown", 0, 0), undefined);
});
