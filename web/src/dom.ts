// The two DOM helpers every view of the page uses: look an element up by id, and make one with
// a class and text (text, never HTML: what the agent or the edge says is shown, not run).

export const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;

export function element(tag: string, className: string, text?: string): HTMLElement {
  const node = document.createElement(tag);
  node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}
