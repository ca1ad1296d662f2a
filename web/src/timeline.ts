// The task's events folded into a readable timeline: one entry per step, tool results attached
// to their call, usage and state kept current. Pure: no DOM, so it is unit-tested in Node.
// Events are applied by seq; a seq already seen is ignored, so a resubscription after a dropped
// socket can never show an entry twice. An entry that changes (a tool call's output arrives, a
// git progress line is overtaken) is replaced by a new object, never changed in place, so a view
// can tell a changed entry from an unchanged one by identity and redraw only the changed ones.

import type { Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { FileChangeStatus, TaskState, WorkspaceOrigin } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";

export type Entry =
  | { seq: number; kind: "state"; state: string; reason: string; atMs: number }
  | { seq: number; kind: "git"; message: string; percent: number }
  | { seq: number; kind: "ready"; commit: string }
  | { seq: number; kind: "agent"; model: string; sessionId: string }
  | { seq: number; kind: "text"; text: string }
  | { seq: number; kind: "tool"; toolId: string; name: string; summary: string; inputJson: string; output?: string; isError?: boolean }
  | { seq: number; kind: "finished"; state: string; result: string; error: string; turns: number; durationMs: number }
  | { seq: number; kind: "diff"; files: ChangedFile[]; filesChanged: number; insertions: number; deletions: number; truncated: boolean }
  | { seq: number; kind: "delivered"; step: "committed" | "pushed"; branch: string; commit: string; remoteUrl: string }
  | SetupEntry;

/** The environment's setup (or maintenance) script: what it printed as it ran, and how it ended. */
export interface SetupEntry {
  seq: number;
  kind: "setup";
  environment: string;
  maintenance: boolean;
  /** "fresh", "prepared" or "restored". */
  origin: string;
  /** The last lines it printed (at most SETUP_LINES_KEPT), and how many came before them. */
  lines: string[];
  linesDropped: number;
  /** Set once it ended. */
  ended?: { exitCode: number; durationMs: number; timedOut: boolean };
}

/** The lines of a setup's output the timeline keeps (the whole output is the events'). */
export const SETUP_LINES_KEPT = 500;

/** One file of a task's diff, as the page shows it. */
export interface ChangedFile {
  path: string;
  oldPath: string;
  status: string;
  insertions: number;
  deletions: number;
  binary: boolean;
  /** The unified diff; empty when left out of the event (the whole diff is in GetDiff). */
  patch: string;
  /** Whether the patch was left out to keep the event under its cap. */
  patchOmitted: boolean;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

export const stateName = (state: TaskState): string => TaskState[state] ?? "UNSPECIFIED";

/** A model cost as the page shows it, on the timeline and in the task list: "$0.0123". */
export const formatCost = (usd: number): string => `$${usd.toFixed(4)}`;

/** A one-line summary of a tool call's input: the command, the file, or the first value. */
export function summarizeToolInput(name: string, inputJson: string): string {
  let input: Record<string, unknown> = {};
  try {
    input = JSON.parse(inputJson) as Record<string, unknown>;
  } catch {
    return inputJson.slice(0, 120);
  }
  const pick = (key: string) => (typeof input[key] === "string" ? (input[key] as string) : undefined);
  const line =
    pick("command") ?? pick("file_path") ?? pick("path") ?? pick("pattern") ?? pick("url") ?? pick("description") ??
    Object.values(input).find((v): v is string => typeof v === "string") ?? JSON.stringify(input);
  const first = line.split("\n")[0];
  return first.length > 120 ? `${first.slice(0, 119)}…` : first;
}

export class Timeline {
  readonly entries: Entry[] = [];
  private readonly seen = new Set<number>();
  /** Each tool call's place in `entries`, by tool id. */
  private readonly tools = new Map<string, number>();
  /** Where the setup's entry is (one setup per task). */
  private setupAt: number | undefined;
  lastSeq = 0;
  /** Counts the events applied: a view redraws when it changed. */
  version = 0;
  state = "PENDING";
  usage: Usage = { inputTokens: 0, outputTokens: 0, costUsd: 0 };
  startedAtMs?: number;
  private latestMs = 0;
  ended = false;

  /** When the latest event was recorded. */
  lastEventMs(): number {
    return this.latestMs;
  }

  /** Applies one event; false when its seq was already applied (a duplicate). */
  apply(event: Event): boolean {
    const seq = Number(event.seq);
    if (this.seen.has(seq)) return false;
    this.seen.add(seq);
    this.version++;
    this.lastSeq = Math.max(this.lastSeq, seq);
    const atMs = event.time ? Number(event.time.seconds) * 1000 + Math.floor(event.time.nanos / 1e6) : Date.now();
    this.startedAtMs ??= atMs;
    this.latestMs = Math.max(this.latestMs, atMs);
    const payload = event.payload;
    switch (payload.case) {
      case "stateChanged": {
        this.state = stateName(payload.value.to);
        this.entries.push({ seq, kind: "state", state: this.state, reason: payload.value.reason, atMs });
        break;
      }
      case "gitProgress": {
        const last = this.entries[this.entries.length - 1];
        const entry = { seq, kind: "git" as const, message: payload.value.message || payload.value.phase, percent: payload.value.percent };
        // Progress lines replace each other: one line of git progress, not hundreds.
        if (last?.kind === "git") this.entries[this.entries.length - 1] = entry;
        else this.entries.push(entry);
        break;
      }
      case "repositoryReady":
        this.entries.push({ seq, kind: "ready", commit: payload.value.commit });
        break;
      case "agentStarted":
        this.entries.push({ seq, kind: "agent", model: payload.value.model, sessionId: payload.value.sessionId });
        break;
      case "agentText":
        this.entries.push({ seq, kind: "text", text: payload.value.text });
        break;
      case "toolStarted": {
        const { toolId, name, inputJson } = payload.value;
        const entry = { seq, kind: "tool" as const, toolId, name, inputJson, summary: summarizeToolInput(name, inputJson) };
        this.tools.set(toolId, this.entries.length);
        this.entries.push(entry);
        break;
      }
      case "toolFinished": {
        const at = this.tools.get(payload.value.toolId);
        const call = at === undefined ? undefined : this.entries[at];
        if (at !== undefined && call?.kind === "tool") {
          this.entries[at] = { ...call, output: payload.value.output, isError: payload.value.isError };
        }
        break;
      }
      case "usageUpdate":
        if (payload.value.usage) this.setUsage(payload.value.usage);
        break;
      case "taskFinished": {
        const f = payload.value;
        if (f.usage) this.setUsage(f.usage);
        this.state = stateName(f.state);
        this.ended = true;
        const durationMs = f.duration ? Number(f.duration.seconds) * 1000 + Math.floor(f.duration.nanos / 1e6) : 0;
        this.entries.push({ seq, kind: "finished", state: this.state, result: f.result, error: f.error, turns: f.numTurns, durationMs });
        break;
      }
      case "diff": {
        const { stats, files, truncated } = payload.value;
        this.entries.push({
          seq,
          kind: "diff",
          files: files.map((f) => ({
            path: f.path,
            oldPath: f.oldPath,
            status: (FileChangeStatus[f.status] ?? "MODIFIED").toLowerCase(),
            insertions: f.insertions,
            deletions: f.deletions,
            binary: f.binary,
            patch: f.patch,
            patchOmitted: f.patchOmitted,
          })),
          filesChanged: stats?.filesChanged ?? files.length,
          insertions: Number(stats?.insertions ?? 0n),
          deletions: Number(stats?.deletions ?? 0n),
          truncated,
        });
        break;
      }
      case "setupStarted": {
        const { environmentName, maintenance, workspaceOrigin } = payload.value;
        const origin = (WorkspaceOrigin[workspaceOrigin] ?? "FRESH").toLowerCase();
        this.setupAt = this.entries.length;
        this.entries.push({ seq, kind: "setup", environment: environmentName, maintenance, origin, lines: [], linesDropped: 0 });
        break;
      }
      case "setupOutput":
        this.updateSetup((setup) => {
          const lines = [...setup.lines, payload.value.line];
          const dropped = Math.max(0, lines.length - SETUP_LINES_KEPT);
          return { ...setup, lines: lines.slice(dropped), linesDropped: setup.linesDropped + dropped };
        });
        break;
      case "setupFinished": {
        const { exitCode, duration, timedOut } = payload.value;
        const durationMs = duration ? Number(duration.seconds) * 1000 + Math.floor(duration.nanos / 1e6) : 0;
        this.updateSetup((setup) => ({ ...setup, ended: { exitCode, durationMs, timedOut } }));
        break;
      }
      case "committed":
        this.entries.push({ seq, kind: "delivered", step: "committed", branch: payload.value.branch, commit: payload.value.commit, remoteUrl: "" });
        break;
      case "branchPushed": {
        const { branch, commit, remoteUrl } = payload.value;
        this.entries.push({ seq, kind: "delivered", step: "pushed", branch, commit, remoteUrl });
        break;
      }
      default:
        break;
    }
    return true;
  }

  /** Replaces the running setup's entry (entries change by replacement, see the module doc). */
  private updateSetup(change: (setup: SetupEntry) => SetupEntry) {
    const at = this.setupAt;
    const entry = at === undefined ? undefined : this.entries[at];
    if (at !== undefined && entry?.kind === "setup") this.entries[at] = change(entry);
  }

  private setUsage(usage: { inputTokens: bigint; outputTokens: bigint; costUsd: number }) {
    this.usage = { inputTokens: Number(usage.inputTokens), outputTokens: Number(usage.outputTokens), costUsd: usage.costUsd };
  }
}
