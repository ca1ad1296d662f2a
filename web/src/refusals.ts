// How a refused start reads, for the start form and the "Ask for changes" box alike: what
// happened and what the user can do, then the edge's own words. The JSON routes answer
// `{"error": {"code", "message"}}` with an HTTP status mapped from the gRPC code; the edge maps
// RESOURCE_EXHAUSTED to 402 whether credits ran out or the task limit was reached, so the code
// and the words tell those apart, not the status. Pure, so it is unit-tested in Node.

export type Asking = "start" | "follow-up";

/** The words of a refused `asking` in `mode`; `status` 0 means the edge was not reached. */
export function refusal(status: number, body: any, mode: "container" | "tunnel", asking: Asking): string {
  const message: string = body?.error?.message ?? `HTTP ${status}`;
  const code: string = body?.error?.code ?? "";
  const followUp = asking === "follow-up";
  if (status === 0) return `The edge could not be reached; try again. (${message})`;
  const exhausted = code === "RESOURCE_EXHAUSTED" || (code === "" && status === 402);
  if (exhausted && (/credit/i.test(message) || code === "")) return `No credits: ${message}`;
  if (exhausted) return `Too many tasks are running: wait for one to end, or cancel one. (${message})`;
  if (code === "UNAVAILABLE" || status === 503)
    return mode === "tunnel" ? `Your machine is not reachable: ${message}` : `The container failed to start: ${message}`;
  if (!followUp) return message;
  switch (code) {
    case "FAILED_PRECONDITION":
      return `This task is still running: wait for it to end, or cancel it, then ask again. (${message})`;
    case "NOT_FOUND":
      return `This task is not known any more, so it cannot be continued. (${message})`;
    case "INVALID_ARGUMENT":
      return `The follow-up was refused: ${message}`;
    default:
      return `The follow-up could not start: ${message}`;
  }
}
