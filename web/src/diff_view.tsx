// The diff viewer: what a task changed, file by file, drawn by diff2html (a well-kept diff
// renderer: unified or side-by-side, word-level changes marked, syntax highlighted through
// highlight.js) under a header of our own per file (status, path, line counts) and, above them,
// the totals, the unified/split switch and the commit and branch the changes were delivered on.
// A large file starts collapsed and is drawn only when opened; a binary file is named, not drawn;
// a patch left out of the event (its cap) says so.

import { Diff2HtmlUI } from "diff2html/lib-esm/ui/js/diff2html-ui-base.js";
import { ColorSchemeType } from "diff2html/lib-esm/types.js";
import { useEffect, useRef, useState } from "preact/hooks";
import { hljs } from "./highlight.js";
import type { ChangedFile, Entry } from "./timeline.js";

/** A file with more changed lines than this starts collapsed (drawing it would bury the rest). */
export const COLLAPSE_OVER_LINES = 400;

export type DiffFormat = "line-by-line" | "side-by-side";

type DiffEntry = Entry & { kind: "diff" };

/** Where the changes went: the commit on the task's branch, once delivered. */
export interface DeliveredTo {
  branch: string;
  commit: string;
  pushedTo: string;
}

export function DiffView({ entry, delivered }: { entry: DiffEntry; delivered?: DeliveredTo }) {
  // Side by side needs room: a phone starts unified.
  const [format, setFormat] = useState<DiffFormat>(() => (window.matchMedia?.("(min-width: 64rem)").matches ? "side-by-side" : "line-by-line"));
  const { filesChanged, insertions, deletions } = entry;
  const files = `${filesChanged} file${filesChanged === 1 ? "" : "s"}`;
  return (
    <>
      <div class="diff-head">
        <strong class="label">{filesChanged === 0 ? "No files changed" : `Changed ${files} (+${insertions} −${deletions})`}</strong>
        {delivered && (
          <span class="diff-delivery">
            {" "}on branch <code class="branch">{delivered.branch}</code>, commit <code>{delivered.commit.slice(0, 12)}</code>
            {delivered.pushedTo && ` (pushed to ${delivered.pushedTo})`}
          </span>
        )}
        {entry.files.length > 0 && (
          <span class="diff-format" role="group" aria-label="Diff layout">
            <FormatButton format={format} value="line-by-line" label="Unified" set={setFormat} />
            <FormatButton format={format} value="side-by-side" label="Split" set={setFormat} />
          </span>
        )}
      </div>
      <div class="diff-files">
        {entry.files.map((file) => (
          <DiffFile key={file.path} file={file} format={format} />
        ))}
      </div>
      {entry.truncated && <p class="help">Only part of the diff is shown; the whole diff is kept with the task.</p>}
    </>
  );
}

function FormatButton({ format, value, label, set }: { format: DiffFormat; value: DiffFormat; label: string; set: (f: DiffFormat) => void }) {
  return (
    <button type="button" class="secondary small" aria-pressed={format === value} onClick={() => set(value)}>
      {label}
    </button>
  );
}

function DiffFile({ file, format }: { file: ChangedFile; format: DiffFormat }) {
  const drawable = !file.binary && file.patch !== "";
  const large = file.insertions + file.deletions > COLLAPSE_OVER_LINES;
  const [open, setOpen] = useState(drawable && !large);
  const body = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!open || !drawable || !body.current) return;
    const ui = new Diff2HtmlUI(
      body.current,
      file.patch,
      { outputFormat: format, drawFileList: false, matching: "lines", highlight: true, fileContentToggle: false, stickyFileHeaders: false, synchronisedScroll: true, colorScheme: ColorSchemeType.AUTO },
      hljs,
    );
    ui.draw();
    ui.highlightCode();
    // diff2html's panes scroll sideways when a line is long: each is a named region the keyboard
    // can reach and scroll, as a scrollable region must be.
    const panes = body.current.querySelectorAll<HTMLElement>(".d2h-file-side-diff, .d2h-file-diff");
    panes.forEach((pane, i) => {
      pane.tabIndex = 0;
      pane.setAttribute("role", "region");
      pane.setAttribute("aria-label", panes.length === 2 ? `${file.path}, ${i === 0 ? "before" : "after"}` : `${file.path}, changes`);
    });
  }, [open, format, file.patch]);
  const path = file.oldPath && file.oldPath !== file.path ? `${file.oldPath} → ${file.path}` : file.path;
  const id = `diff-${file.path.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  return (
    <section class="diff-file" data-path={file.path} aria-label={path}>
      <div class="diff-file-head">
        <span class={`file-status ${file.status}`}>{file.status}</span>
        <code class="file-path">{path}</code>
        <span class="file-counts">{file.binary ? "binary" : `+${file.insertions} −${file.deletions}`}</span>
        {drawable && (
          <button type="button" class="secondary small" aria-expanded={open} aria-controls={id} onClick={() => setOpen(!open)}>
            {open ? "Hide" : large ? `Show (${file.insertions + file.deletions} lines)` : "Show"}
          </button>
        )}
      </div>
      {file.binary && <p class="help">Binary file: not shown.</p>}
      {!file.binary && !drawable && <p class="help">This file's patch is too large to show here.</p>}
      {drawable && <div id={id} class="diff-body" ref={body} hidden={!open} />}
    </section>
  );
}
