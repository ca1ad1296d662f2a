// Unit tests of the composer's memory of the last repository (last_repository.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { recallRepository, rememberRepository } from "../src/last_repository.js";

const storage = () => {
  const values = new Map<string, string>();
  return { getItem: (k: string) => values.get(k) ?? null, setItem: (k: string, v: string) => void values.set(k, v), values };
};

test("the last repository and ref come back", () => {
  const s = storage();
  assert.equal(recallRepository(s), undefined);
  rememberRepository(s, { repositoryUrl: "https://example.com/r.git", gitRef: "main" });
  assert.deepEqual(recallRepository(s), { repositoryUrl: "https://example.com/r.git", gitRef: "main" });
});

test("anything else stored there is forgotten, not trusted", () => {
  const s = storage();
  for (const junk of ["{", "42", '{"repositoryUrl": 3}', '{"repositoryUrl": ""}']) {
    s.values.set("autopilot.lastRepository", junk);
    assert.equal(recallRepository(s), undefined, junk);
  }
});
