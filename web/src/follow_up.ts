// A follow-up turn: "ask for changes" under an ended task's timeline starts a new task that
// continues the same agent conversation on the same workspace (StartRequest.parentTaskId; the
// repository and ref come from the parent, so the prompt is all the page sends). This file holds
// what the box decides (when it shows, what it sends; a refusal reads as refusals.ts says); pure,
// so it is unit-tested in Node.

import { MAX_PROMPT_BYTES } from "./validate.js";

/** The body of POST /api/{container,tunnel}/start for a follow-up (StartRequest in proto3 JSON). */
export interface FollowUpRequest {
  parentTaskId: string;
  prompt: string;
}

/** Whether the box shows under a timeline: once the task ended (a running parent is refused),
 * and not before its final event arrived (the page would offer what the edge refuses). */
export const canFollowUp = (ended: boolean): boolean => ended;

/** The request to send, or why none is sent. */
export function followUpRequest(parentTaskId: string, prompt: string): { request?: FollowUpRequest; error?: string } {
  if (parentTaskId === "") return { error: "Open a task first." };
  if (prompt.trim() === "") return { error: "Say what to change." };
  if (new TextEncoder().encode(prompt).length > MAX_PROMPT_BYTES) return { error: `At most ${MAX_PROMPT_BYTES} bytes.` };
  return { request: { parentTaskId, prompt } };
}
