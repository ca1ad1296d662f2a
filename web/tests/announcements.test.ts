// Unit tests of what the live region says (announcements.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { announcementFor, Announcer, COALESCE_MS } from "../src/announcements.js";

test("steps worth saying are said in short words; the rest is not", () => {
  assert.equal(announcementFor({ seq: 1, kind: "tool", toolId: "a", name: "Bash", summary: "ls", inputJson: "{}" }), "Bash: ls");
  assert.equal(announcementFor({ seq: 2, kind: "finished", state: "SUCCEEDED", result: "", error: "", turns: 1, durationMs: 1 }), "The task finished");
  assert.equal(announcementFor({ seq: 3, kind: "git", message: "Receiving objects", percent: 10 }), "");
  assert.equal(announcementFor({ seq: 4, kind: "state", state: "RUNNING", reason: "", atMs: 0 }), "The agent is working");
});

test("what comes together is said together, a burst summed up", async () => {
  const region = { textContent: "" } as HTMLElement;
  const announcer = new Announcer(region);
  for (const words of ["a", "b", "c", "d", "e"]) announcer.announce(words);
  assert.equal(region.textContent, "", "nothing said at once");
  await new Promise((resolve) => setTimeout(resolve, COALESCE_MS + 50));
  assert.equal(region.textContent, "a. b. and 3 more steps");
  announcer.now("Opened");
  assert.equal(region.textContent, "Opened");
});
