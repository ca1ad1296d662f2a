// The "Ask for changes" box under an ended task's timeline: it starts a follow-up turn of the
// open task in the task's own mode (POST /api/{container,tunnel}/start with the parent's id and
// the prompt) and hands the new task to the page, which opens its timeline. A refusal is shown
// in words under the box, and the prompt stays for another try. The decisions are follow_up.ts's.

import { api } from "./api.js";
import { $ } from "./dom.js";
import { canFollowUp, followUpRequest } from "./follow_up.js";
import { refusal } from "./refusals.js";
import type { Mode } from "./tasks.js";

/** The task a follow-up continues. */
export interface Parent {
  mode: Mode;
  taskId: string;
}

/** A follow-up the edge started: the Start route's reply and the parent it continues. */
export interface StartedFollowUp {
  mode: Mode;
  parentTaskId: string;
  taskId: string;
  sessionId: string;
  websocketUrl: string;
  /** What the user asked: the new turn's title and the user's turn in its conversation. */
  prompt: string;
}

export class FollowUpForm {
  private parent: Parent | undefined;
  /** Numbers the parents shown, so a reply for a task no longer open is not acted on. */
  private shown = 0;

  /** `started` gets each follow-up the edge started, and whether its parent is still the task
   * shown (if not, the user moved on meanwhile: the page lists the new task, it does not open it). */
  constructor(private readonly started: (task: StartedFollowUp, stillShown: boolean) => void) {
    $("follow-up").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.send();
    });
  }

  /** Shows the box for `parent` once it ended; hides it otherwise (another task, or running). */
  show(parent: Parent | undefined, ended: boolean) {
    const visible = parent !== undefined && canFollowUp(ended);
    if (parent?.taskId !== this.parent?.taskId) {
      this.shown++;
      $<HTMLTextAreaElement>("follow-up-prompt").value = "";
      this.say("");
    }
    this.parent = parent;
    $("follow-up").hidden = !visible;
  }

  private say(text: string) {
    $("follow-up-error").textContent = text;
    $("follow-up-prompt").setAttribute("aria-invalid", text ? "true" : "false");
  }

  private async send() {
    const parent = this.parent;
    if (!parent) return;
    const prompt = $<HTMLTextAreaElement>("follow-up-prompt").value;
    const { request, error } = followUpRequest(parent.taskId, prompt);
    if (!request) {
      this.say(error ?? "");
      $("follow-up-prompt").focus();
      return;
    }
    const mine = this.shown;
    const button = $<HTMLButtonElement>("follow-up-send");
    button.disabled = true;
    this.say("");
    const { ok, status, body } = await api(`/api/${parent.mode}/start`, { method: "POST", body: JSON.stringify(request) });
    button.disabled = false;
    const stillShown = mine === this.shown;
    if (!ok) {
      if (stillShown) this.say(refusal(status, body, parent.mode, "follow-up"));
      return;
    }
    if (stillShown) $<HTMLTextAreaElement>("follow-up-prompt").value = "";
    const task = { mode: parent.mode, parentTaskId: parent.taskId, taskId: body.taskId, sessionId: body.sessionId, websocketUrl: body.websocketUrl, prompt };
    this.started(task, stillShown);
  }
}
