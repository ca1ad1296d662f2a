// One task's live stream over the WebSocket bridge: subscribes from the next seq it needs,
// reconnects with backoff when the socket drops (asking for a fresh single-use ticket), and
// resubscribes from the last seq it has, so the timeline never misses or repeats an event. A
// subscription the edge ends with UNAVAILABLE is treated the same way, in every mode: the
// service restarted or the network blipped (container and local mode), or the user's machine
// dropped off while its task goes on (tunnel mode). Resubscribing from the last seq recovers
// everything once the service answers again; only other errors fail the stream.

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, type Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { reconnectDelay } from "./reconnect.js";

export type LinkState = "connecting" | "live" | "reconnecting" | "ended" | "failed";

export interface ConnectionHandlers {
  /** Applies an event; answers the last seq now held (the next subscription starts after it). */
  onEvent(event: Event): number;
  onLink(state: LinkState, detail?: string): void;
  onReply?(kind: string, message: string): void;
}

/** gRPC's UNAVAILABLE: the service (or, in tunnel mode, the user's machine) cannot be reached
 * right now; the same request may succeed later. */
export const UNAVAILABLE = 14;

let nextRequestId = 1;
const requestId = (prefix: string) => `${prefix}-${nextRequestId++}`;

export class TaskConnection {
  private socket?: WebSocket;
  private attempt = 0;
  private closedByUs = false;
  private subscription = "";
  /** Frames waiting for the socket to open (e.g. a cancel clicked while reconnecting). */
  private pending: Uint8Array[] = [];
  lastSeq = 0;

  constructor(
    private readonly mode: "container" | "tunnel",
    private readonly sessionId: string,
    private readonly taskId: string,
    private readonly handlers: ConnectionHandlers,
  ) {}

  /** Connects with `url` (which carries a ticket) or, without one, asks for a fresh ticket. */
  async connect(url?: string): Promise<void> {
    // A reconnect scheduled before close() (another task opened meanwhile) must not come back.
    if (this.closedByUs) return;
    this.handlers.onLink(this.attempt === 0 ? "connecting" : "reconnecting");
    try {
      const socketUrl = url ?? (await this.freshTicketUrl());
      if (this.closedByUs) return;
      this.open(socketUrl);
    } catch (error) {
      this.scheduleReconnect(String(error));
    }
  }

  private async freshTicketUrl(): Promise<string> {
    const reply = await fetch(`/api/${this.mode}/ws-ticket`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ sessionId: this.sessionId }),
    });
    const body = await reply.json();
    if (!reply.ok) throw new Error(body?.error?.message ?? `HTTP ${reply.status}`);
    return body.websocketUrl as string;
  }

  private open(url: string) {
    const socket = new WebSocket(url);
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    socket.onopen = () => {
      this.subscription = requestId("events");
      const frame = create(ClientFrameSchema, {
        requestId: this.subscription,
        request: { case: "streamEvents", value: { taskId: this.taskId, fromSeq: BigInt(this.lastSeq + 1) } },
      });
      socket.send(toBinary(ClientFrameSchema, frame));
      for (const queued of this.pending.splice(0)) socket.send(queued);
      this.handlers.onLink("live");
    };
    socket.onmessage = (message) => {
      if (!(message.data instanceof ArrayBuffer)) return;
      const frame = fromBinary(ServerFrameSchema, new Uint8Array(message.data));
      switch (frame.frame.case) {
        case "event":
          this.attempt = 0; // the stream flows again: the next drop starts the backoff afresh
          this.lastSeq = this.handlers.onEvent(frame.frame.value);
          break;
        case "endOfStream":
          if (frame.requestId === this.subscription) {
            this.closedByUs = true;
            this.handlers.onLink("ended");
            socket.close(1000, "task ended");
          }
          break;
        case "error": {
          const { code, message } = frame.frame.value;
          const ours = frame.requestId === this.subscription;
          if (ours && code === UNAVAILABLE) {
            // Passes by itself: reconnect with backoff and resubscribe from the last seq held.
            this.abandon(socket, "service unavailable");
            this.scheduleReconnect(message);
            break;
          }
          this.handlers.onReply?.("error", message);
          if (ours) this.handlers.onLink("failed", message);
          break;
        }
        case "cancel":
          this.handlers.onReply?.("cancel", "cancel requested");
          break;
        default:
          break;
      }
    };
    socket.onclose = () => {
      if (this.socket === socket && !this.closedByUs) this.scheduleReconnect("the connection dropped");
    };
  }

  /** Stops listening to `socket` and closes it; its late frames and close are ignored. */
  private abandon(socket: WebSocket, reason: string) {
    if (this.socket === socket) this.socket = undefined;
    socket.onmessage = null;
    socket.onclose = null;
    socket.close(4000, reason);
  }

  private scheduleReconnect(detail: string) {
    this.handlers.onLink("reconnecting", detail);
    const delay = reconnectDelay(this.attempt++);
    setTimeout(() => void this.connect(), delay);
  }

  /** Asks the service to cancel the task; the stream then ends with its final event. */
  cancel() {
    const frame = create(ClientFrameSchema, {
      requestId: requestId("cancel"),
      request: { case: "cancel", value: { taskId: this.taskId, reason: "" } },
    });
    const bytes = toBinary(ClientFrameSchema, frame);
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(bytes);
    else this.pending.push(bytes);
  }

  /** Closes the socket as a network failure would (used to check that the page recovers). */
  drop() {
    this.socket?.close(4000, "dropped on purpose");
  }

  /** Stops following the task. */
  close() {
    this.closedByUs = true;
    this.socket?.close(1000, "closed");
  }
}
