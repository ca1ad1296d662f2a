// The page's addresses: each task has one (/tasks/<id> for a task in the cloud, /machine/tasks/<id>
// for one that ran on the user's machine), and "/" is the New task composer. The page pushes an
// address when it opens a task, so back and forward move between tasks, and a task's address
// opens it directly (after sign-in). The Worker's assets serve index.html for these paths
// (wrangler.toml: not_found_handling = "single-page-application"). Pure, so it is unit-tested.

import type { Mode } from "./tasks.js";

/** What an address shows. */
export type Place = { view: "new" } | { view: "task"; mode: Mode; taskId: string };

/** A task id as the edge hands them out (UUIDs, or any id of at most 128 safe characters). */
const TASK_ID = /^[A-Za-z0-9._:-]{1,128}$/;

/** The place of `pathname`; an address the page does not know shows the composer. */
export function placeOf(pathname: string): Place {
  const match = /^\/(machine\/)?tasks\/([^/]+)\/?$/.exec(pathname);
  if (match) {
    let taskId = "";
    try {
      taskId = decodeURIComponent(match[2]);
    } catch {
      return { view: "new" };
    }
    if (TASK_ID.test(taskId)) return { view: "task", mode: match[1] ? "tunnel" : "container", taskId };
  }
  return { view: "new" };
}

/** The address of `place`. */
export function pathOf(place: Place): string {
  if (place.view === "new") return "/";
  return `${place.mode === "tunnel" ? "/machine" : ""}/tasks/${encodeURIComponent(place.taskId)}`;
}

/** Whether two places show the same thing. */
export const samePlace = (a: Place, b: Place): boolean => pathOf(a) === pathOf(b);
