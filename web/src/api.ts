// The edge's JSON routes as the page calls them: one fetch wrapper that never throws, and the
// words of an error reply. Every module that talks to the edge over HTTP shares it.

export interface Reply {
  ok: boolean;
  /** The HTTP status; 0 when the edge could not be reached at all. */
  status: number;
  body: any;
}

/** A JSON route of the edge. A state-changing request is sent as JSON, as the edge requires of
 * a request signed in by cookie. A network failure answers status 0. */
export async function api(path: string, init: RequestInit = {}): Promise<Reply> {
  const headers = new Headers(init.headers);
  if ((init.method ?? "GET") !== "GET" && !headers.has("content-type")) headers.set("content-type", "application/json");
  try {
    const reply = await fetch(path, { ...init, headers });
    const body = await reply.json().catch(() => ({}));
    return { ok: reply.ok, status: reply.status, body };
  } catch (error) {
    return { ok: false, status: 0, body: { error: { message: `The edge could not be reached (${error}).` } } };
  }
}

/** The message of an error reply (`{"error": {"code", "message"}}`), or one naming the status. */
export function errorText(body: any, status: number): string {
  return body?.error?.message ?? `The request failed (HTTP ${status}).`;
}
