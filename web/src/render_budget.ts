// The render budget's check (issue 26: a replayed 5,000-event timeline drawn and scrollable within
// 1 s in Chromium). Through the edge, how fast events reach the page depends on the machine and on
// the test's own instrumentation (playwright-core reports every WebSocket frame), so the browser
// test also hands the page the very frames a socket brought it and times the page's whole part:
// decoding, folding and drawing them as a socket delivers them (a batch per task), to the frame
// after the last draw. The page's `window.autopilot.replayFrames` is this, for tests.

import { fromBinary } from "@bufbuild/protobuf";
import { ServerFrameSchema, type Event } from "../../clients/ts/src/gen/autopilot/v1/autopilot_pb.js";

/** How many frames one task of the replay brings (a socket delivers messages in such bursts). */
const FRAMES_PER_TASK = 50;

/** Yields to the browser (its frames, the draws) for one task: a message, since a chain of
 * `setTimeout(0)` is clamped to 4 ms a step, which would time the clamp, not the page. */
function nextTask(): Promise<void> {
  return new Promise((resolve) => {
    const channel = new MessageChannel();
    channel.port1.onmessage = () => resolve();
    channel.port2.postMessage(null);
  });
}

/** Feeds `frames` (base64 ServerFrames) to `apply` as a socket would; answers the milliseconds
 * until `drawn()` says the whole timeline was drawn, a frame later. */
export async function replayFrames(frames: string[], apply: (event: Event) => void, drawn: () => boolean): Promise<number> {
  const bytes = frames.map((frame) => Uint8Array.from(atob(frame), (c) => c.charCodeAt(0)));
  const began = performance.now();
  for (let i = 0; i < bytes.length; i += FRAMES_PER_TASK) {
    for (const data of bytes.slice(i, i + FRAMES_PER_TASK)) {
      const frame = fromBinary(ServerFrameSchema, data);
      if (frame.frame.case === "event") apply(frame.frame.value);
    }
    await nextTask();
  }
  while (!drawn()) await new Promise((resolve) => requestAnimationFrame(resolve));
  await new Promise((resolve) => requestAnimationFrame(resolve));
  return performance.now() - began;
}
