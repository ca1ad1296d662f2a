// Ctrl+Enter (⌘+Enter on a Mac) in a composer's text box sends the composer's form, as in the
// agents' other web clients; plain Enter still makes a new line.

/** Makes Ctrl/Cmd+Enter in `textarea` submit its form (through its submit handler). */
export function sendOnCtrlEnter(textarea: HTMLTextAreaElement) {
  textarea.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || !(event.ctrlKey || event.metaKey)) return;
    event.preventDefault();
    textarea.form?.requestSubmit();
  });
}
