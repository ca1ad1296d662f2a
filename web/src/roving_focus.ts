// Keyboard navigation of the task lists: one Tab stop for the whole list (roving tabindex), the
// arrow keys move between entries (across both lists, in the order they are drawn), Home and End
// jump to the first and last, Enter opens (the entries are buttons). The arithmetic is pure and
// unit-tested; `enableRovingFocus` wires it to the page.

/** The entry index the key `key` moves to from `index` of `count`; undefined: not a moving key. */
export function movedIndex(key: string, index: number, count: number): number | undefined {
  if (count === 0) return undefined;
  switch (key) {
    case "ArrowDown":
      return Math.min(index + 1, count - 1);
    case "ArrowUp":
      return Math.max(index - 1, 0);
    case "Home":
      return 0;
    case "End":
      return count - 1;
    default:
      return undefined;
  }
}

/** Makes the entries (`selector`, buttons) under `container` one Tab stop moved by the arrows. */
export function enableRovingFocus(container: HTMLElement, selector: string) {
  container.addEventListener("keydown", (event) => {
    const items = [...container.querySelectorAll<HTMLElement>(selector)].filter((item) => item.offsetParent !== null);
    const index = items.indexOf(document.activeElement as HTMLElement);
    if (index < 0) return;
    const next = movedIndex(event.key, index, items.length);
    if (next === undefined) return;
    event.preventDefault();
    focusEntry(items, next);
  });
  container.addEventListener("focusin", (event) => {
    const target = event.target as HTMLElement;
    if (target.matches(selector)) focusEntry([...container.querySelectorAll<HTMLElement>(selector)], undefined, target);
  });
}

/** Makes `items[index]` (or `target`) the list's Tab stop, and focuses it when given by index. */
function focusEntry(items: HTMLElement[], index?: number, target?: HTMLElement) {
  const chosen = target ?? items[index!];
  for (const item of items) item.tabIndex = item === chosen ? 0 : -1;
  if (index !== undefined) chosen.focus();
}

/** After a list was drawn anew: exactly one entry is its Tab stop (the open task's, else the first). */
export function settleTabStop(container: HTMLElement, selector: string, currentSelector: string) {
  const items = [...container.querySelectorAll<HTMLElement>(selector)];
  if (items.length === 0) return;
  const focused = items.find((item) => item === document.activeElement);
  const current = container.querySelector<HTMLElement>(currentSelector);
  const stop = focused ?? current ?? items[0];
  for (const item of items) item.tabIndex = item === stop ? 0 : -1;
}
