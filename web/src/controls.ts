// Which of a task's controls show, from what the page knows of the task: Cancel only while it
// runs, the follow-up composer only once it ended (the edge refuses a follow-up of a running
// task). A control that would only be refused is not offered at all. Pure, so it is unit-tested.

import { isFinal } from "./tasks.js";

export interface TaskControls {
  /** The Cancel button. */
  cancel: boolean;
  /** The "Ask for changes" composer under the conversation. */
  followUp: boolean;
}

/** The controls of a task in `state` (the timeline's state name); `ended`: its final event came. */
export function controlsFor(state: string, ended: boolean): TaskControls {
  const over = ended || isFinal(state);
  return { cancel: !over, followUp: ended };
}
