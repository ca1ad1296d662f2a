// Unit tests of the page's task connection against a scripted WebSocket: how it subscribes,
// resumes and gives up, in both modes (run with `npm test`, like timeline.test.ts).
import assert from "node:assert/strict";
import { afterEach, beforeEach, test } from "node:test";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { ClientFrameSchema, ServerFrameSchema, EventSchema } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";
import { TaskConnection, UNAVAILABLE, type LinkState } from "../src/connection.js";

/** A WebSocket the test drives: it records what the page sends and delivers what the test says. */
class ScriptedSocket {
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 3;
  static all: ScriptedSocket[] = [];
  readyState = ScriptedSocket.CONNECTING;
  binaryType = "blob";
  sent: Uint8Array[] = [];
  closedWith?: number;
  onopen: (() => void) | null = null;
  onmessage: ((message: { data: unknown }) => void) | null = null;
  onclose: (() => void) | null = null;
  constructor(readonly url: string) {
    ScriptedSocket.all.push(this);
  }
  send(bytes: Uint8Array) {
    this.sent.push(bytes);
  }
  close(code = 1000) {
    this.closedWith = code;
    this.readyState = ScriptedSocket.CLOSED;
    queueMicrotask(() => this.onclose?.());
  }
  open() {
    this.readyState = ScriptedSocket.OPEN;
    this.onopen?.();
  }
  /** The subscription the page asked for on this socket: its request id and first seq. */
  subscription() {
    const frames = this.sent.map((bytes) => fromBinary(ClientFrameSchema, bytes));
    const request = frames.find((f) => f.request.case === "streamEvents");
    assert.ok(request && request.request.case === "streamEvents", "the page subscribed");
    return { requestId: request.requestId, fromSeq: Number(request.request.value.fromSeq), taskId: request.request.value.taskId };
  }
  deliver(frame: Parameters<typeof create<typeof ServerFrameSchema>>[1]) {
    const bytes = toBinary(ServerFrameSchema, create(ServerFrameSchema, frame));
    this.onmessage?.({ data: bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) });
  }
  event(requestId: string, seq: number) {
    this.deliver({ requestId, frame: { case: "event", value: create(EventSchema, { taskId: "t", seq: BigInt(seq), payload: { case: "agentText", value: { text: `${seq}` } } }) } });
  }
}

const original = { WebSocket: globalThis.WebSocket, fetch: globalThis.fetch };
let tickets: string[] = [];

beforeEach(() => {
  ScriptedSocket.all = [];
  tickets = [];
  (globalThis as any).WebSocket = ScriptedSocket;
  (globalThis as any).fetch = async (url: string) => {
    tickets.push(url);
    return new Response(JSON.stringify({ websocketUrl: `ws://edge/ws/s?ticket=${tickets.length}` }), { status: 200 });
  };
});

afterEach(() => {
  (globalThis as any).WebSocket = original.WebSocket;
  (globalThis as any).fetch = original.fetch;
});

function connection(mode: "container" | "tunnel") {
  const links: { state: LinkState; detail?: string }[] = [];
  const seen: number[] = [];
  let last = 0;
  const conn = new TaskConnection(mode, "s", "t", {
    onEvent: (event) => {
      const seq = Number(event.seq);
      if (seq > last) {
        seen.push(seq);
        last = seq;
      }
      return last;
    },
    onLink: (state, detail) => links.push({ state, detail }),
  });
  return { conn, links, seen };
}

async function nextSocket(count: number): Promise<ScriptedSocket> {
  const deadline = Date.now() + 3000;
  while (ScriptedSocket.all.length < count) {
    assert.ok(Date.now() < deadline, `socket ${count} was never opened`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return ScriptedSocket.all[count - 1];
}

for (const mode of ["container", "tunnel"] as const) {
  test(`${mode} mode: a subscription ended with UNAVAILABLE resubscribes from the last seq`, async () => {
    const { conn, links, seen } = connection(mode);
    await conn.connect("ws://edge/ws/s?ticket=0");
    const first = await nextSocket(1);
    first.open();
    const sub1 = first.subscription();
    assert.deepEqual([sub1.taskId, sub1.fromSeq], ["t", 1]);
    for (const seq of [1, 2, 3]) first.event(sub1.requestId, seq);
    first.deliver({ requestId: sub1.requestId, frame: { case: "error", value: { code: UNAVAILABLE, message: "the agent-service stream broke" } } });
    assert.equal(first.closedWith, 4000, "the broken socket is closed");
    assert.ok(!links.some((l) => l.state === "failed"), `never shown as failed: ${JSON.stringify(links)}`);
    assert.ok(links.some((l) => l.state === "reconnecting" && l.detail?.includes("stream broke")), JSON.stringify(links));

    // A second UNAVAILABLE (the service is still restarting) backs off and tries again.
    const second = await nextSocket(2);
    assert.equal(tickets.length, 1, "a reconnect asks for a fresh ticket");
    assert.equal(tickets[0], `/api/${mode}/ws-ticket`);
    second.open();
    const sub2 = second.subscription();
    assert.equal(sub2.fromSeq, 4, "resumes after the last seq held");
    second.deliver({ requestId: sub2.requestId, frame: { case: "error", value: { code: UNAVAILABLE, message: "could not reach the agent-service" } } });

    const third = await nextSocket(3);
    third.open();
    const sub3 = third.subscription();
    assert.equal(sub3.fromSeq, 4);
    for (const seq of [3, 4, 5]) third.event(sub3.requestId, seq); // an overlap is harmless
    third.deliver({ requestId: sub3.requestId, frame: { case: "endOfStream", value: {} } });
    assert.deepEqual(seen, [1, 2, 3, 4, 5]);
    assert.equal(links.at(-1)?.state, "ended");
    assert.equal(third.closedWith, 1000);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(ScriptedSocket.all.length, 3, "no reconnect after the end");
  });
}

test("other errors fail the stream without retrying", async () => {
  const { conn, links } = connection("container");
  await conn.connect("ws://edge/ws/s?ticket=0");
  const socket = await nextSocket(1);
  socket.open();
  const { requestId } = socket.subscription();
  socket.deliver({ requestId: "someone-else", frame: { case: "error", value: { code: UNAVAILABLE, message: "not ours" } } });
  assert.equal(socket.closedWith, undefined, "another request's error leaves the subscription alone");
  socket.deliver({ requestId, frame: { case: "error", value: { code: 5, message: "no task with id t" } } });
  assert.deepEqual(links.at(-1), { state: "failed", detail: "no task with id t" });
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(ScriptedSocket.all.length, 1);
});

test("a reconnect pending when the connection is closed never opens a socket", async () => {
  const { conn } = connection("container");
  await conn.connect("ws://edge/ws/s?ticket=0");
  const socket = await nextSocket(1);
  socket.open();
  const { requestId } = socket.subscription();
  socket.deliver({ requestId, frame: { case: "error", value: { code: UNAVAILABLE, message: "blip" } } });
  conn.close(); // the person opened another task meanwhile
  await new Promise((resolve) => setTimeout(resolve, 400));
  assert.equal(ScriptedSocket.all.length, 1, "the closed connection stays closed");
  assert.equal(tickets.length, 0);
});
