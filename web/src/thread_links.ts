// The open timeline's place in its conversation: "A follow-up of <the turn before>" above it, and
// "Continued in <the turns after>" for the follow-ups listed as continuing it; each opens that
// turn's timeline. The parent is known from the list, or from the page itself when it started the
// follow-up (before the list has it).

import { $, element } from "./dom.js";
import type { TaskListView } from "./list_view.js";
import { parentOf } from "./tasks.js";

/** The open task: its id, and its parent when the page knows it without the list. */
export interface OpenTurn {
  taskId: string;
  parentTaskId?: string;
}

/** Shows the links of `open` (none: hides them); `go` opens a turn. */
export function renderThreadLinks(open: OpenTurn | undefined, view: TaskListView | undefined, go: (taskId: string) => void) {
  const parentId = open ? open.parentTaskId || parentOf(view?.list.get(open.taskId)) : "";
  $("task-parent").hidden = !parentId;
  if (parentId) {
    const link = $("task-parent-link");
    link.textContent = view?.titleOf(parentId) ?? `task ${parentId}`;
    link.onclick = () => go(parentId);
  }
  // The list is newest first: its follow-ups read oldest first.
  const children = open && view ? view.list.tasks.filter((t) => parentOf(t) === open.taskId).reverse() : [];
  $("task-children").hidden = children.length === 0;
  // The lists are drawn again every few seconds while a task runs: links unchanged stay (and
  // so does the keyboard's place on one).
  const holder = $("task-children-links");
  const key = JSON.stringify(children.map((child) => [child.taskId, view?.titleOf(child.taskId)]));
  if (holder.dataset.key === key) return;
  holder.dataset.key = key;
  const links = children.map((child, i) => {
    const link = element("button", "link", view?.titleOf(child.taskId) ?? child.taskId) as HTMLButtonElement;
    link.type = "button";
    link.onclick = () => go(child.taskId);
    return i === 0 ? [link] : [", ", link];
  });
  holder.replaceChildren(...links.flat());
}
