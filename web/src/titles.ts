// How a task is named on the page: by its prompt's first line (what the user asked), the id only
// secondary. The list has the edge's title (the prompt's first line, masked); a task this page
// started also has its whole prompt. Pure, so it is unit-tested.

/** How long a title may be before it is cut (the list is narrow; the full text is the tooltip). */
export const MAX_TITLE_CHARS = 120;

/** The first non-blank line of `text`, trimmed and cut to [`MAX_TITLE_CHARS`]. */
export function firstLine(text: string): string {
  const line = text.split("\n").map((l) => l.trim()).find((l) => l !== "") ?? "";
  return line.length > MAX_TITLE_CHARS ? `${line.slice(0, MAX_TITLE_CHARS - 1)}…` : line;
}

/** The title of task `taskId`: its prompt's first line, else the listed title, else a short id. */
export function taskTitle(taskId: string, prompt?: string, listedTitle?: string): string {
  return firstLine(prompt ?? "") || firstLine(listedTitle ?? "") || `Task ${shortId(taskId)}`;
}

/** The first block of an id (a UUID's 8 hex digits): enough to tell tasks apart at a glance. */
export const shortId = (taskId: string): string => taskId.split("-")[0].slice(0, 12);
