// A follow-up turn: "ask for changes" under an ended task's timeline starts a new task that
// continues the same agent conversation on the same workspace (StartRequest.parentTaskId; the
// repository and ref come from the parent, so the prompt is all the page sends). This file holds
// what the box decides (when it shows, what it sends, how a refusal reads); pure, so it is
// unit-tested in Node.

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

/** A refused follow-up in words: what happened and what the user can do, then the edge's own
 * message. `body` is the JSON error reply (`{"error": {"code", "message"}}`), `status` its HTTP
 * status (0: the edge was not reached). */
export function followUpRefusal(status: number, body: any, mode: "container" | "tunnel"): string {
  const message: string = body?.error?.message ?? `HTTP ${status}`;
  const code: string = body?.error?.code ?? "";
  if (status === 0) return `The edge could not be reached; try again. (${message})`;
  if (status === 402) return `No credits left for a follow-up: ${message}`;
  switch (code) {
    case "FAILED_PRECONDITION":
      return `This task is still running: wait for it to end, or cancel it, then ask again. (${message})`;
    case "NOT_FOUND":
      return `This task is not known any more, so it cannot be continued. (${message})`;
    case "RESOURCE_EXHAUSTED":
      return `Too many tasks are running: wait for one to end, or cancel one. (${message})`;
    case "INVALID_ARGUMENT":
      return `The follow-up was refused: ${message}`;
    case "UNAVAILABLE":
      return mode === "tunnel" ? `Your machine is not reachable: ${message}` : `The container failed to start: ${message}`;
    default:
      return `The follow-up could not start: ${message}`;
  }
}
