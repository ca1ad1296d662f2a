// At phone width the task list is a drawer: the "Tasks" button in the header opens it over the
// open task, and opening a task, the backdrop or Escape closes it. At desktop width the list is
// always the left pane and the button is hidden.

import { $ } from "./dom.js";

/** The width at and under which the list is a drawer (styles.css uses the same). */
const PHONE = "(max-width: 48rem)";

export class Drawer {
  private readonly phone = window.matchMedia(PHONE);

  constructor() {
    $("drawer-toggle").addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    $("drawer-backdrop").addEventListener("click", () => this.close());
    document.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.isOpen) {
        this.close();
        $("drawer-toggle").focus();
      }
    });
    this.phone.addEventListener("change", () => this.fit());
    this.fit();
  }

  get isOpen(): boolean {
    return document.body.classList.contains("drawer-open");
  }

  open() {
    document.body.classList.add("drawer-open");
    $("drawer-toggle").setAttribute("aria-expanded", "true");
    $("drawer-backdrop").hidden = false;
    // The keyboard goes where the drawer opened: the list's current entry, or New task.
    const stop = document.querySelector<HTMLElement>('#sidebar .task-title[tabindex="0"]') ?? $("new-task");
    stop.focus();
  }

  close() {
    document.body.classList.remove("drawer-open");
    $("drawer-toggle").setAttribute("aria-expanded", "false");
    $("drawer-backdrop").hidden = true;
  }

  /** The toggle shows at phone width only; a drawer left open on a wider screen closes. */
  private fit() {
    $("drawer-toggle").hidden = !this.phone.matches;
    if (!this.phone.matches) this.close();
  }
}
