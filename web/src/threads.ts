// A conversation's turns shown as one thread. A follow-up is a task of its own, newer than its
// parent, so the edge's list (newest first) scatters a conversation's turns among other tasks;
// the page groups them: each thread stands where its newest turn is listed (the conversation
// last spoken to comes first), and inside it the turns read top down, the first prompt first,
// each follow-up under the task it continues. Pure, so it is unit-tested in Node.
//
// The list is paged, so a follow-up's parent may not be listed (yet): the follow-up then starts
// a thread of its own, marked as continuing an earlier task, until "More" brings the parent in.

/** What the grouping needs of a task: its id and the task it follows up (empty: none). */
export interface Threaded {
  taskId: string;
  parentTaskId: string;
}

export interface ThreadRow<T extends Threaded> {
  task: T;
  /** 0 for the first turn of a thread; a follow-up is one deeper than its parent. */
  depth: number;
  /** The id of the thread's first listed turn. */
  rootId: string;
  /** The parent's id when the task follows up one that is not listed (empty otherwise). */
  unlistedParentId: string;
}

/** `tasks` (newest first, as listed) grouped into threads, as the page shows them. */
export function threadRows<T extends Threaded>(tasks: T[]): ThreadRow<T>[] {
  const index = new Map<string, number>();
  tasks.forEach((task, i) => {
    if (!index.has(task.taskId)) index.set(task.taskId, i);
  });
  // A parent counts when it is listed and following parents from the task never comes back to
  // it (ids come from the edge, but a loop must not hang the page).
  const parentOf = (i: number): number | undefined => {
    const parent = index.get(tasks[i].parentTaskId);
    if (parent === undefined || parent === i) return undefined;
    const visited = new Set([i]);
    for (let at: number | undefined = parent; at !== undefined; at = index.get(tasks[at].parentTaskId)) {
      if (visited.has(at)) return at === i ? undefined : parent;
      visited.add(at);
    }
    return parent;
  };
  const parents = tasks.map((_, i) => parentOf(i));
  const children = new Map<number, number[]>();
  parents.forEach((parent, i) => {
    if (parent !== undefined && index.get(tasks[i].taskId) === i) children.set(parent, [...(children.get(parent) ?? []), i]);
  });
  const rootOf = (i: number): number => {
    let at = i;
    for (let parent = parents[at]; parent !== undefined; parent = parents[at]) at = parent;
    return at;
  };

  const rows: ThreadRow<T>[] = [];
  const shown = new Set<number>();
  for (let i = 0; i < tasks.length; i++) {
    if (index.get(tasks[i].taskId) !== i) continue; // listed twice: once is enough
    const root = rootOf(i);
    if (shown.has(root)) continue;
    // Depth first from the thread's first turn; a task's follow-ups oldest first (the list is
    // newest first, so the later in the list, the older).
    const stack: [number, number][] = [[root, 0]];
    while (stack.length > 0) {
      const [at, depth] = stack.pop()!;
      if (shown.has(at)) continue;
      shown.add(at);
      const task = tasks[at];
      const unlisted = parents[at] === undefined && task.parentTaskId !== "" && task.parentTaskId !== task.taskId;
      rows.push({ task, depth, rootId: tasks[root].taskId, unlistedParentId: unlisted ? task.parentTaskId : "" });
      const next = [...(children.get(at) ?? [])].sort((a, b) => a - b); // newest first...
      for (const child of next) stack.push([child, depth + 1]); // ...so the oldest pops first
    }
  }
  return rows;
}

/** The thread `taskId` belongs to, as listed: its turns from the first, in reading order. */
export function threadOf<T extends Threaded>(rows: ThreadRow<T>[], taskId: string): ThreadRow<T>[] {
  const rootId = rows.find((row) => row.task.taskId === taskId)?.rootId;
  return rootId === undefined ? [] : rows.filter((row) => row.rootId === rootId);
}
